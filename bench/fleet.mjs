#!/usr/bin/env node
// The fleet's cost (issue 29, item 5): frames/s and p50/p95 latency for an in-process engine vs
// 1 and 2 `reconpatch worker` processes on a local Redis, the queue's overhead per frame (a
// frame's round trip minus the worker's scoring time, one frame in flight) and the cost of a
// model switch (the first job after a publish). metal_plate, mobilenet_v1; frames inline (PNG).
//   node bench/fleet.mjs [--frames=48] [--callers=8] [--concurrency=1] [--threads=<cores/workers/concurrency>] [--out=<file.json>]
// --concurrency and --threads are passed to every worker (default: the worker's own sizing).
// Needs redis-server on PATH, ../shared, and a built dist/ (npm run build:ts).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const shared = path.resolve(root, '../shared');
const dataset = path.join(shared, 'datasets/metal_plate');
const cli = path.join(root, 'dist/cli/main.js');
const arg = (name, fallback) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
const N = Number(arg('frames', 48));
const CALLERS = Number(arg('callers', 8));
const CONCURRENCY = Number(arg('concurrency', 1));
const THREADS = arg('threads', undefined);
const log = (s) => process.stderr.write(`${s}\n`);

const { Engine } = await import(path.join(root, 'dist/index.js'));
const { DirectoryModelStore, FleetClient } = await import(path.join(root, 'dist/fleet/index.js'));

const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]; };
const summary = (ms, wallMs) => ({ fps: +(ms.length / (wallMs / 1000)).toFixed(2), p50: +pct(ms, 50).toFixed(1), p95: +pct(ms, 95).toFixed(1) });

async function freePort() {
  return new Promise((resolve) => { const s = net.createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); }); });
}

async function startRedis(dir) {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => { out += d; if (out.includes('Ready to accept connections')) resolve(); });
    child.once('exit', (c) => reject(new Error(`redis-server exited ${c}`)));
  });
  return { url: `redis://127.0.0.1:${port}`, child };
}

async function startWorker(redis, store, threads) {
  const child = spawn(process.execPath, [cli, 'worker', '--redis', redis, '--store', store, '--threads', String(threads), '--concurrency', String(CONCURRENCY)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => { err += d; });
  while (!err.includes(' ready on queue ')) {
    if (child.exitCode !== null) throw new Error(`worker exited: ${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return child;
}

async function stop(children) {
  await Promise.all(children.map((c) => new Promise((r) => { c.once('exit', r); c.kill('SIGTERM'); })));
}

/** `callers` loops, each taking the next frame and timing its round trip. */
async function pool(frames, callers, scoreOne) {
  const ms = [];
  const extra = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: callers }, async () => {
    while (next < frames.length) {
      const f = frames[next++];
      const t = performance.now();
      const x = await scoreOne(f);
      ms.push(performance.now() - t);
      extra.push(x);
    }
  }));
  return { ms, extra, wall: performance.now() - t0 };
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'reconpatch-bench-fleet-'));
const redis = await startRedis(dir);
const results = { machine: { cores: os.availableParallelism(), load: os.loadavg()[0] }, frames: N, callers: CALLERS, workerConcurrency: CONCURRENCY };
try {
  const ls = (d) => readdirSync(d).sort().map((f) => path.join(d, f));
  const train = ls(path.join(dataset, 'train/good'));
  const test = [...ls(path.join(dataset, 'test/good')), ...ls(path.join(dataset, 'test/defect'))];
  const framePaths = Array.from({ length: N }, (_, i) => test[(i * 7) % test.length]);
  const frames = framePaths.map((f) => readFileSync(f));
  log(`fit: ${train.length} images`);
  const engine = await Engine.create({
    head: false, backbone: path.join(shared, 'backbones/mobilenet_v1_imagenet.pt'), resizeMode: 'squash', resize: 256, crop: 224, coreset: { ratio: 0.1 }, seed: 1,
  });
  await engine.fit(train, { modelId: 'metal_plate' });
  const modelFile = path.join(dir, 'metal_plate.rcp');
  await engine.save(modelFile);
  await engine.dispose();
  const store = new DirectoryModelStore(path.join(dir, 'store'));
  await store.publish(modelFile);

  // In-process: one engine with both cores, one caller and CALLERS callers.
  const local = await Engine.load(modelFile);
  await local.score(frames[0]);
  const seq = await pool(frames, 1, (f) => local.score(f));
  const par = await pool(frames, CALLERS, (f) => local.score(f));
  results.inProcess = { one: summary(seq.ms, seq.wall), concurrent: summary(par.ms, par.wall) };
  await local.dispose();
  log(`in-process: ${JSON.stringify(results.inProcess)}`);

  for (const workers of [1, 2]) {
    const threads = THREADS ? Number(THREADS) : Math.max(1, Math.floor(os.availableParallelism() / workers / CONCURRENCY));
    const children = [];
    for (let i = 0; i < workers; i++) children.push(await startWorker(redis.url, path.join(dir, 'store'), threads));
    const client = new FleetClient({ redis: redis.url });
    const tCold = performance.now();
    await Promise.all(frames.slice(0, 4 * workers).map((f) => client.score(f, { model: 'metal_plate' }))); // every worker loads the model
    const cold = performance.now() - tCold;
    const one = await pool(frames, 1, (f) => client.score(f, { model: 'metal_plate' }));
    const overhead = one.ms.map((ms, i) => ms - one.extra[i].scoreMs);
    // The same frames by reference (a path the worker reads): what the inline payload costs.
    const ref = await pool(framePaths, 1, (f) => client.score(f, { model: 'metal_plate', files: 'reference' }));
    const overheadRef = ref.ms.map((ms, i) => ms - ref.extra[i].scoreMs);
    // The queue alone: a 16-byte frame that is not an image comes back at once with ERR_INVALID_IMAGE.
    const junk = Array.from({ length: 24 }, () => Buffer.from('not an image, 16'));
    const empty = await pool(junk, 1, (f) => client.score(f, { model: 'metal_plate' }));
    const many = await pool(frames, CALLERS, (f) => client.score(f, { model: 'metal_plate' }));
    const r = {
      threadsEach: threads, firstJobsMs: +cold.toFixed(0),
      one: summary(one.ms, one.wall), concurrent: summary(many.ms, many.wall),
      scoreMsP50: +pct(one.extra.map((v) => v.scoreMs), 50).toFixed(1),
      queueOverheadMs: { p50: +pct(overhead, 50).toFixed(2), p95: +pct(overhead, 95).toFixed(2) },
      byReference: { ...summary(ref.ms, ref.wall), overheadP50: +pct(overheadRef, 50).toFixed(2) },
      emptyRoundTripMs: { p50: +pct(empty.ms, 50).toFixed(2), p95: +pct(empty.ms, 95).toFixed(2) },
      workersUsed: new Set(many.extra.map((v) => v.worker)).size,
      errors: [...one.extra, ...ref.extra, ...many.extra].filter((v) => v.error).length + empty.extra.filter((v) => v.error?.code !== 'ERR_INVALID_IMAGE').length,
    };
    if (workers === 1) {
      // A model switch: publish a new version (a new threshold) and time the next frames.
      const m = await Engine.load(modelFile);
      await m.setThreshold(m.info.calibration.threshold * 1.1);
      const v2 = await store.publish(await m.saveBytes());
      await m.dispose();
      const t = performance.now();
      const first = await client.score(frames[1], { model: 'metal_plate' });
      const switchMs = performance.now() - t;
      const after = await pool(frames.slice(0, 8), 1, (f) => client.score(f, { model: 'metal_plate' }));
      r.modelSwitch = { firstJobMs: +switchMs.toFixed(0), steadyP50: +pct(after.ms, 50).toFixed(1), newVersion: first.modelVersion === v2.version };
      await store.rollback('metal_plate');
    }
    await client.close();
    await stop(children);
    results[`workers${workers}`] = r;
    log(`${workers} worker(s): ${JSON.stringify(r)}`);
  }
} finally {
  redis.child.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
}
results.machine.loadAfter = os.loadavg()[0];
const out = arg('out', path.join(root, `bench/results/fleet_${new Date().toISOString().slice(0, 10)}.json`));
writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
process.stdout.write(`${JSON.stringify(results)}\n`);
