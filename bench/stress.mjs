#!/usr/bin/env node
// Stress hunt for native crashes (issue 22): whole public-API evaluations on metal_plate, 2-4
// processes at once, each exiting right after its last score, for a bounded time. Reports every
// process that died by a signal, exited non-zero, stalled or printed a sanitizer report, with its
// crash report (native/addon/crash_handler.cc) and the end of its stderr.
//   node bench/stress.mjs [--minutes=60] [--procs=2,3,4] [--phase=10] [--timeout=30] [--out=<file.json>]
// Keeps P evaluations running at once, starting the next as soon as one ends; P cycles through
// --procs every --phase minutes. Whenever the issue's configuration (mobilenet_v1, head, seed 1,
// one by one, process.exit) is not running it is started next, otherwise the next of its
// neighbours: both shared backbones x head on/off x seeds 0-5 x scoring one by one / scoreMany /
// concurrent score() calls x process.exit() / natural exit. Nothing starts after --minutes; a
// process running longer than --timeout minutes is killed and reported as a stall.
// --mode=exit hammers the exit path instead (OpenMP / OpenBLAS thread pools against N-API
// finalizers and static destructors): short runs on small raw frames (random_cnn or mobilenet_v1,
// head on/off) that end with process.exit() right after a score, process.exit() while a fit or a
// score is running, a natural exit, or a worker thread terminated in the middle of its scoring.
// Under a sanitizer build, set the environment for this command (it passes to every process):
// CONTRIBUTING.md "Sanitizer builds".
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

// --mode=exit: fit on 8 small frames, then end the process in one of several ways (see the top).
async function exitChild(cfg) {
  const { Engine } = await import(path.join(root, 'dist/index.js'));
  let s = cfg.seed + 1;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const frame = () => ({ data: Uint8Array.from({ length: 96 * 96 * 3 }, () => Math.floor(rand() * 256)), width: 96, height: 96, channels: 3 });
  const frames = Array.from({ length: 8 }, frame);
  const delay = Math.floor(rand() * 300);
  const options = { backbone: cfg.backbone === 'random_cnn' ? 'random_cnn' : path.join(shared, 'backbones', `${cfg.backbone}.pt`), resize: null, crop: null, coreset: { ratio: 0.25 }, calibration: false, head: cfg.head ? { iterations: 5, batch: 256 } : false, seed: cfg.seed };
  const mark = () => process.stdout.write(`${JSON.stringify({ ending: cfg.ending, delay })}\n`);
  if (cfg.ending === 'worker-terminate') {
    const { Worker } = await import('node:worker_threads');
    const w = new Worker(`import(${JSON.stringify(path.join(root, 'dist/index.js'))}).then(async ({ Engine }) => {
      const { workerData: { options, frames } } = await import('node:worker_threads');
      const engine = await Engine.create(options);
      await engine.fit(frames);
      for (;;) await engine.scoreMany(frames);
    });`, { eval: true, workerData: { options, frames } });
    await new Promise((resolve) => setTimeout(resolve, 1500 + 10 * delay));
    mark();
    await w.terminate();
    return;
  }
  const engine = await Engine.create(options);
  if (cfg.ending === 'exit-during-fit') {
    void engine.fit(frames).catch(() => {});
    setTimeout(() => (mark(), process.exit(0)), delay);
    return;
  }
  await engine.fit(frames);
  if (cfg.ending === 'exit-during-score') {
    void engine.scoreMany(frames).catch(() => {});
    setTimeout(() => (mark(), process.exit(0)), delay / 3);
    return;
  }
  await engine.score(frames[0]);
  mark();
  if (cfg.ending === 'exit-after-score') process.exit(0);
}

function exitConfigs() {
  const out = [];
  for (const backbone of ['random_cnn', 'mobilenet_v1_imagenet'])
    for (const head of [false, true])
      for (const ending of ['exit-after-score', 'exit-during-score', 'exit-during-fit', 'natural', 'worker-terminate'])
        for (let seed = 0; seed < 6; seed++) out.push({ mode: 'exit', backbone, head, ending, seed });
  return out;
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
const key = (c) => `${c.backbone.split('_')[0]} head=${c.head ? 1 : 0} seed=${c.seed} ${c.mode === 'exit' ? c.ending : `${c.scoring} ${c.exit}`}`;

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
      if (result && cfg.mode === 'exit') result = undefined; // a marker only: the run reached its ending
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
  const phaseMs = Number(arg('phase', '10')) * 60_000;
  const timeoutMs = Number(arg('timeout', '30')) * 60_000;
  const outFile = arg('out', path.join(root, 'bench/results', `stress_${new Date().toISOString().slice(0, 16).replace(/[:T]/g, '-')}.json`));
  // Neighbours in a fixed shuffled order (seeded), cycled.
  const exitMode = arg('mode', 'eval') === 'exit';
  const first = exitMode ? undefined : issueConfig; // started whenever it is not running
  const all = exitMode ? exitConfigs() : configs().filter((c) => key(c) !== key(issueConfig));
  let s = 22;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [all[i], all[j]] = [all[j], all[i]];
  }
  const env = Object.entries(process.env).filter(([k]) => /^(RECONPATCH_|LD_PRELOAD|ASAN_|UBSAN_|OMP_|OPENBLAS_)/.test(k));
  const summary = {
    date: new Date().toISOString(), machine: { cores: os.availableParallelism(), cpu: os.cpus()[0]?.model }, env: Object.fromEntries(env),
    minutes, procs, phaseMinutes: phaseMs / 60_000, runs: 0, seconds: 0, byOutcome: {}, byProcs: {}, byConfig: {}, problems: [], aurocMismatch: [], loadAverage: [],
  };
  const started = Date.now();
  const save = () => {
    summary.seconds = (Date.now() - started) / 1000;
    mkdirSync(path.dirname(outFile), { recursive: true });
    writeFileSync(outFile, `${JSON.stringify(summary, null, 1)}\n`);
  };
  const record = (r, P) => {
    summary.runs++;
    summary.byOutcome[r.outcome] = (summary.byOutcome[r.outcome] ?? 0) + 1;
    summary.byProcs[P] = (summary.byProcs[P] ?? 0) + 1;
    const k = key(r.cfg);
    const entry = (summary.byConfig[k] ??= { runs: 0, ok: 0, auroc: [], seconds: [] });
    entry.runs++;
    entry.seconds.push(Math.round(r.seconds));
    if (r.outcome === 'ok') {
      entry.ok++;
      if (r.result) {
        entry.auroc.push(Number(r.result.auroc.toFixed(6)));
        if (new Set(entry.auroc).size > 1 && !summary.aurocMismatch.includes(k)) summary.aurocMismatch.push(k);
      }
    } else {
      summary.problems.push({ procs: P, ...r });
    }
    const at = ((Date.now() - started) / 60_000).toFixed(1);
    console.error(`stress: ${at} min, run ${summary.runs} (${P} at once) ${k}: ${r.outcome}${r.signal ? ` ${r.signal}` : ''}${r.code ? ` code ${r.code}` : ''} in ${r.seconds.toFixed(0)} s${r.result ? `, AUROC ${r.result.auroc.toFixed(4)}` : ''}`);
    if (r.report) console.error(r.report);
    else if (r.outcome !== 'ok') console.error(r.stderrTail);
    save();
  };
  console.error(`stress: ${minutes} min, ${procs.join('/')} processes at once (${phaseMs / 60_000} min each), ${all.length + (first ? 1 : 0)} configurations; results -> ${outFile}`);
  const running = new Map(); // promise -> config
  let next = 0;
  const loadTimer = setInterval(() => summary.loadAverage.push(Number(os.loadavg()[0].toFixed(2))), 60_000);
  while (Date.now() - started < minutes * 60_000) {
    const P = procs[Math.floor((Date.now() - started) / phaseMs) % procs.length];
    while (running.size < P) {
      const firstRunning = !first || [...running.values()].some((c) => c === first);
      const cfg = firstRunning ? all[next++ % all.length] : first;
      const p = runChild(cfg, timeoutMs).then((r) => {
        running.delete(p);
        record(r, P);
      });
      running.set(p, cfg);
    }
    // Wake when a process ends, or at least every 30 s to follow the phase.
    await Promise.race([...running.keys(), new Promise((resolve) => setTimeout(resolve, 30_000))]);
  }
  await Promise.all(running.keys());
  clearInterval(loadTimer);
  save();
  const problems = summary.runs - (summary.byOutcome.ok ?? 0);
  console.error(`stress: ${summary.runs} runs, ${(summary.seconds / 60).toFixed(1)} min: ${JSON.stringify(summary.byOutcome)}; ${problems} problem(s); AUROC differed between runs of: ${summary.aurocMismatch.join('; ') || 'none'}`);
  process.exit(problems ? 1 : 0);
}

if (process.argv[2] === '--child') {
  const cfg = JSON.parse(process.argv[3]);
  await (cfg.mode === 'exit' ? exitChild(cfg) : child(cfg));
}
else await parent();
