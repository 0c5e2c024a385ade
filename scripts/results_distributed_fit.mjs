#!/usr/bin/env node
// The distributed fit against single-machine fits of the same images (docs/results.md,
// "Distributed fit", issue 29). Starts redis-server on a free loopback port and two
// `reconpatch worker` processes (one thread each: the two cores) on a temporary model store; per
// dataset and seed: the single-machine default fit (unbounded, leave-one-out calibration), the
// single-machine fit with the distributed fit's budget (merge and reduce, 10% held out), and the
// distributed fit (shards on the workers, merge, publish), each scored on the whole test set.
// One JSON line per run in docs/results/distributed_fit.jsonl; a row already there is not run again.
//   node scripts/results_distributed_fit.mjs run [--datasets metal_plate,magnetic_tile] [--seeds 0,1,2] [--head]
//   node scripts/results_distributed_fit.mjs render
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const shared = path.resolve(root, '../shared');
const jsonl = path.join(root, 'docs/results/distributed_fit.jsonl');
const doc = path.join(root, 'docs/results.md');
const args = process.argv.slice(2);
const opt = (name, d) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : d; };
const readRows = () => (existsSync(jsonl) ? readFileSync(jsonl, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : []);

// Per dataset: the budget and shards of the distributed fit (stated with the design in docs/results.md).
const PLANS = {
  metal_plate: { coreset: 0.1, maxStagedPatches: 16_384, shards: 2 },
  magnetic_tile: { coreset: 0.01, maxStagedPatches: 32_768, shards: 6 },
};

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
  });
}

function waitFor(child, text, what) {
  let log = '';
  return new Promise((resolve, reject) => {
    const on = (d) => { log += d.toString(); if (log.includes(text)) resolve(log); };
    child.stdout?.on('data', on);
    child.stderr?.on('data', on);
    child.once('exit', (code) => reject(new Error(`${what} exited with ${code}:\n${log}`)));
  });
}

async function run() {
  const dist = (f) => import(pathToFileURL(path.join(root, 'dist', f)).href);
  const { Engine } = await dist('index.js');
  const { FleetClient } = await dist('fleet/index.js');
  const { readMvtecDataset } = await dist('eval/dataset.js');
  const { auroc } = await dist('eval/metrics.js');
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'reconpatch-dist-fit-'));
  const port = await freePort();
  const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', tmp], { stdio: ['ignore', 'pipe', 'pipe'] });
  await waitFor(redis, 'Ready to accept connections', 'redis-server');
  const url = `redis://127.0.0.1:${port}`;
  const storeDir = path.join(tmp, 'store');
  mkdirSync(storeDir);
  const workers = [0, 1].map(() => spawn(process.execPath, [path.join(root, 'dist/cli/main.js'), 'worker', '--redis', url, '--store', storeDir, '--threads', '1'], { stdio: ['ignore', 'ignore', 'pipe'] }));
  await Promise.all(workers.map((w) => waitFor(w, ' ready on queue ', 'worker')));
  const client = new FleetClient({ redis: url });
  const head = args.includes('--head');
  try {
    for (const seed of opt('seeds', '0,1,2').split(',').map(Number))
      for (const category of opt('datasets', 'metal_plate,magnetic_tile').split(',')) {
        if (readRows().some((r) => r.dataset === category && r.seed === seed && r.head === head)) continue;
        const plan = PLANS[category];
        const ds = await readMvtecDataset(path.join(shared, 'datasets'), category);
        const labels = ds.test.map((t) => t.label);
        const engine = { backbone: path.join(shared, 'backbones', 'mobilenet_v1_imagenet.pt'), head, seed, coreset: { ratio: plan.coreset } };
        const evaluate = async (model) => {
          const rs = await model.scoreMany(ds.test.map((t) => t.path));
          const flagged = rs.map((r) => r.isAnomaly === true);
          const defects = labels.filter(Boolean).length;
          return {
            auroc: auroc(rs.map((r) => r.score), labels), threshold: model.info.calibration?.threshold ?? null,
            recall: flagged.filter((f, i) => f && labels[i]).length / defects,
            falseAlarms: flagged.filter((f, i) => f && !labels[i]).length, good: labels.length - defects,
            bankRows: model.info.bankRows,
          };
        };
        const single = async (fitOptions) => {
          const e = await Engine.create({ ...engine, threads: 2 });
          const t0 = performance.now();
          await e.fit(ds.train, fitOptions);
          const seconds = (performance.now() - t0) / 1000;
          const r = { ...(await evaluate(e)), fitSeconds: seconds };
          await e.dispose();
          return r;
        };
        const row = { dataset: category, seed, head, trainImages: ds.train.length, ...plan };
        row.singleDefault = await single({});
        row.singleBudget = await single({ maxStagedPatches: plan.maxStagedPatches });
        const t0 = performance.now();
        const r = await client.fit(ds.train, { modelId: `${category}-${seed}`, engine, shards: plan.shards, maxStagedPatches: plan.maxStagedPatches });
        const wall = (performance.now() - t0) / 1000;
        const published = await Engine.load(path.join(storeDir, `${category}-${seed}`, 'versions', `${r.version}.rcp`), { threads: 2 });
        row.distributed = { ...(await evaluate(published)), fitSeconds: wall, mergeSeconds: r.seconds, shardSeconds: r.shards.map((s) => s.seconds), shardRows: r.shards.map((s) => s.rows), shardPatches: r.shards.map((s) => s.patches) };
        await published.dispose();
        row.date = new Date().toISOString();
        row.command = `node scripts/results_distributed_fit.mjs run --datasets ${category} --seeds ${seed}${head ? ' --head' : ''}`;
        appendFileSync(jsonl, `${JSON.stringify(row)}\n`);
        console.error(`${category} seed ${seed}: default ${row.singleDefault.auroc.toFixed(4)}, budget ${row.singleBudget.auroc.toFixed(4)}, distributed ${row.distributed.auroc.toFixed(4)}`);
      }
  } finally {
    await client.close();
    for (const w of workers) w.kill('SIGTERM');
    redis.kill();
    setTimeout(() => rmSync(tmp, { recursive: true, force: true }), 1000);
  }
}

function render() {
  const rows = readRows();
  const f = (x) => x.toFixed(4);
  const lines = ['| dataset | head | seed | AUROC: default / budget / distributed | threshold: default / budget / distributed | recall at threshold (d / b / dist) | false alarms (good) | fit s (d / b / dist wall) | bank rows (d / b / dist) |', '|---|---|---|---|---|---|---|---|---|'];
  for (const r of rows) {
    const [d, b, x] = [r.singleDefault, r.singleBudget, r.distributed];
    lines.push(`| ${r.dataset} | ${r.head ? 'on' : 'off'} | ${r.seed} | ${f(d.auroc)} / ${f(b.auroc)} / ${f(x.auroc)} | ${d.threshold.toFixed(3)} / ${b.threshold.toFixed(3)} / ${x.threshold.toFixed(3)} | ` +
      `${d.recall.toFixed(3)} / ${b.recall.toFixed(3)} / ${x.recall.toFixed(3)} | ${d.falseAlarms} / ${b.falseAlarms} / ${x.falseAlarms} (of ${d.good}) | ${d.fitSeconds.toFixed(1)} / ${b.fitSeconds.toFixed(1)} / ${x.fitSeconds.toFixed(1)} | ${d.bankRows} / ${b.bankRows} / ${x.bankRows} |`);
  }
  const text = readFileSync(doc, 'utf8');
  const begin = '<!-- distributed-fit:begin -->';
  const end = '<!-- distributed-fit:end -->';
  if (!text.includes(begin)) throw new Error(`docs/results.md has no ${begin} marker`);
  writeFileSync(doc, text.replace(new RegExp(`${begin}[\\s\\S]*${end}`), `${begin}\n${lines.join('\n')}\n${end}`));
}

if (args[0] === 'run') await run();
else if (args[0] === 'render') render();
else {
  console.error('usage: node scripts/results_distributed_fit.mjs run [--datasets ...] [--seeds ...] [--head] | render');
  process.exit(2);
}
