#!/usr/bin/env node
// Stress hunt for native crashes (issue 22): whole public-API evaluations on metal_plate, 2-4
// processes at once, each exiting right after its last score, for a bounded time. Reports every
// process that died by a signal, exited non-zero, stalled or printed a sanitizer report, with its
// crash report (native/addon/crash_handler.cc) and the end of its stderr.
//   node bench/stress.mjs [--minutes=60] [--procs=2,3,4] [--timeout=30] [--out=<file.json>]
// Each wave starts P processes at once (P cycles through --procs): the issue's configuration
// (mobilenet_v1, head, seed 1, one by one, process.exit) and the next P-1 of its neighbours:
// both shared backbones x head on/off x seeds 0-5 x scoring one by one / scoreMany / concurrent
// score() calls x process.exit() / natural exit. No new wave starts after --minutes; a process
// running longer than --timeout minutes is killed and reported as a stall.
// Under a sanitizer build, set the environment for this command (it passes to every process):
// README "Sanitizer builds".
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const shared = path.resolve(root, '../shared');
const dataset = path.join(shared, 'datasets/metal_plate');
const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;

// One evaluation: fit on train/good, score every test image, print one JSON line, exit.
async function child(cfg) {
  const { Engine } = await import(path.join(root, 'dist/index.js'));
  const { auroc } = await import(path.join(root, 'dist/metrics.js'));
  const ls = (d) => readdirSync(d).sort().map((f) => path.join(d, f));
  const train = ls(path.join(dataset, 'train/good'));
  const test = readdirSync(path.join(dataset, 'test')).sort().flatMap((d) => ls(path.join(dataset, 'test', d)).map((p) => ({ p, label: d === 'good' ? 0 : 1 })));
  const t0 = performance.now();
  const engine = await Engine.create({
    backbone: path.join(shared, 'backbones', `${cfg.backbone}.pt`),
    resizeMode: 'squash', resize: 256, crop: 224, coreset: { ratio: 0.1 }, head: cfg.head, seed: cfg.seed,
  });
  await engine.fit(train);
  const t1 = performance.now();
  let scores;
  if (cfg.scoring === 'one-by-one') {
    scores = [];
    for (const x of test) scores.push((await engine.score(x.p)).score);
  } else if (cfg.scoring === 'scoreMany') {
    scores = (await engine.scoreMany(test.map((x) => x.p))).map((r) => r.score);
  } else {
    scores = (await Promise.all(test.map((x) => engine.score(x.p)))).map((r) => r.score); // batched by the engine
  }
  const line = { auroc: auroc(scores, test.map((x) => x.label)), fit_s: (t1 - t0) / 1000, score_s: (performance.now() - t1) / 1000 };
  process.stdout.write(`${JSON.stringify(line)}\n`);
  if (cfg.exit === 'process.exit') process.exit(0); // right after the last score: no finalizers run
}

function configs() {
  const out = [];
  for (const backbone of ['mobilenet_v1_imagenet', 'darknet_tiny_imagenet'])
    for (const head of [true, false])
      for (let seed = 0; seed < 6; seed++)
        for (const scoring of ['one-by-one', 'scoreMany', 'concurrent'])
          for (const exit of ['process.exit', 'natural']) out.push({ backbone, head, seed, scoring, exit });
  return out;
}
const issueConfig = { backbone: 'mobilenet_v1_imagenet', head: true, seed: 1, scoring: 'one-by-one', exit: 'process.exit' };
const key = (c) => `${c.backbone.split('_')[0]} head=${c.head ? 1 : 0} seed=${c.seed} ${c.scoring} ${c.exit}`;

function runChild(cfg, timeoutMs) {
  return new Promise((resolve) => {
    const started = performance.now();
    const p = spawn(process.execPath, [fileURLToPath(import.meta.url), '--child', JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr = (stderr + d).slice(-200_000)));
    let stalled = false;
    const timer = setTimeout(() => {
      stalled = true;
      p.kill('SIGKILL');
    }, timeoutMs);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      const seconds = (performance.now() - started) / 1000;
      let result;
      try {
        result = JSON.parse(stdout.trim().split('\n').pop());
      } catch {
        result = undefined;
      }
      const report = /==== reconpatch crash report ====[\s\S]*?==== end of crash report ====/.exec(stderr)?.[0];
      const sanitizer = /(ERROR: (Address|Leak|Thread)Sanitizer[\s\S]*|runtime error:[^\n]*)/.exec(stderr)?.[0]?.slice(0, 20_000);
      const outcome = stalled ? 'stall' : signal ? 'signal' : code !== 0 ? 'exit-code' : sanitizer ? 'sanitizer' : !result ? 'no-result' : 'ok';
      resolve({ cfg, outcome, code, signal, seconds, result, report, sanitizer, stderrTail: outcome === 'ok' ? undefined : stderr.slice(-4000) });
    });
  });
}

async function parent() {
  if (!existsSync(dataset) || !existsSync(path.join(shared, 'backbones/mobilenet_v1_imagenet.pt'))) {
    console.error(`stress: ../shared (metal_plate, backbones) is absent at ${shared}: nothing to run`);
    process.exit(2);
  }
  const minutes = Number(arg('minutes', '60'));
  const procs = arg('procs', '2,3,4').split(',').map(Number);
  const timeoutMs = Number(arg('timeout', '30')) * 60_000;
  const outFile = arg('out', path.join(root, 'bench/results', `stress_${new Date().toISOString().slice(0, 16).replace(/[:T]/g, '-')}.json`));
  // Neighbours in a fixed shuffled order (seeded), cycled; the issue's configuration in every wave.
  const all = configs().filter((c) => key(c) !== key(issueConfig));
  let s = 22;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [all[i], all[j]] = [all[j], all[i]];
  }
  const env = Object.entries(process.env).filter(([k]) => /^(RECONPATCH_|LD_PRELOAD|ASAN_|UBSAN_|OMP_|OPENBLAS_)/.test(k));
  const summary = {
    date: new Date().toISOString(), machine: { cores: os.availableParallelism(), cpu: os.cpus()[0]?.model }, env: Object.fromEntries(env),
    minutes, procs, waves: 0, runs: 0, seconds: 0, byOutcome: {}, byProcs: {}, byConfig: {}, problems: [], aurocMismatch: [],
  };
  const started = Date.now();
  let next = 0;
  const save = () => {
    summary.seconds = (Date.now() - started) / 1000;
    mkdirSync(path.dirname(outFile), { recursive: true });
    writeFileSync(outFile, `${JSON.stringify(summary, null, 1)}\n`);
  };
  console.error(`stress: ${minutes} min, ${procs.join('/')} processes per wave, ${all.length + 1} configurations; results -> ${path.relative(root, outFile)}`);
  while (Date.now() - started < minutes * 60_000) {
    const P = procs[summary.waves % procs.length];
    const wave = [issueConfig];
    while (wave.length < P) wave.push(all[next++ % all.length]);
    const results = await Promise.all(wave.map((c) => runChild(c, timeoutMs)));
    summary.waves++;
    for (const r of results) {
      summary.runs++;
      summary.byOutcome[r.outcome] = (summary.byOutcome[r.outcome] ?? 0) + 1;
      summary.byProcs[P] = (summary.byProcs[P] ?? 0) + 1;
      const k = key(r.cfg);
      const entry = (summary.byConfig[k] ??= { runs: 0, ok: 0, auroc: [], seconds: [] });
      entry.runs++;
      entry.seconds.push(Math.round(r.seconds));
      if (r.outcome === 'ok') {
        entry.ok++;
        entry.auroc.push(Number(r.result.auroc.toFixed(6)));
        if (new Set(entry.auroc).size > 1 && !summary.aurocMismatch.includes(k)) summary.aurocMismatch.push(k);
      } else {
        summary.problems.push({ wave: summary.waves, procs: P, ...r });
      }
      console.error(`stress: wave ${summary.waves} (${P} at once) ${k}: ${r.outcome}${r.signal ? ` ${r.signal}` : ''}${r.code ? ` code ${r.code}` : ''} in ${r.seconds.toFixed(0)} s${r.result ? `, AUROC ${r.result.auroc.toFixed(4)}` : ''}`);
      if (r.report) console.error(r.report);
      else if (r.outcome !== 'ok') console.error(r.stderrTail);
    }
    save();
  }
  save();
  const problems = summary.runs - (summary.byOutcome.ok ?? 0);
  console.error(`stress: ${summary.runs} runs in ${summary.waves} waves, ${(summary.seconds / 60).toFixed(1)} min: ${JSON.stringify(summary.byOutcome)}; ${problems} problem(s); AUROC differed between runs of: ${summary.aurocMismatch.join('; ') || 'none'}`);
  process.exit(problems ? 1 : 0);
}

if (process.argv[2] === '--child') await child(JSON.parse(process.argv[3]));
else await parent();
