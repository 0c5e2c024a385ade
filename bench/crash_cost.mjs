#!/usr/bin/env node
// What crash reports cost (issue 22): metal_plate fit time and per-image score time with several
// addon binaries / settings side by side, each rep in a fresh process, variants interleaved
// (A B C A B C ...) so the machine's drift hits all alike.
//   node bench/crash_cost.mjs [--reps=5] [--single-thread] [--variant=name:<addon.node>[:ENV=value,...]] ...
// Each child reports wall time and CPU time (user + system, all threads). --single-thread runs one
// thread everywhere (engine, OpenMP, OpenBLAS): no spinning pool threads, so CPU time is the work
// itself and stays comparable on a machine busy with other jobs.
// Default variants: this build with the handler (build/Release) and with RECONPATCH_CRASH_HANDLER=0.
// Add e.g. a build of the commit before (no handler, no call table) and a frame-pointer build
// (-DRECONPATCH_FRAME_POINTERS=ON); bench/NOTES.md, "Crash handler", has the commands.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const shared = path.resolve(root, '../shared');

if (process.argv[2] === '--child') {
  const { Engine } = await import(path.join(root, 'dist/index.js'));
  const ls = (d) => readdirSync(d).sort().map((f) => path.join(d, f));
  const base = path.join(shared, 'datasets/metal_plate');
  const train = ls(path.join(base, 'train/good'));
  const test = [...ls(path.join(base, 'test/good')), ...ls(path.join(base, 'test/defect'))].slice(0, 25);
  const threads = process.env.OMP_NUM_THREADS === '1' ? 1 : 0;
  const engine = await Engine.create({ head: false, backbone: path.join(shared, 'backbones/mobilenet_v1_imagenet.pt'), resizeMode: 'squash', resize: 256, crop: 224, coreset: { ratio: 0.1 }, calibration: false, threads });
  const cpu = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  };
  let t = performance.now();
  let c = cpu();
  await engine.fit(train);
  const fitS = (performance.now() - t) / 1000;
  const fitCpuS = cpu() - c;
  await engine.score(test[0]); // warm-up
  t = performance.now();
  c = cpu();
  for (const p of test.slice(1)) await engine.score(p);
  const scoreMs = (performance.now() - t) / (test.length - 1);
  const scoreCpuMs = ((cpu() - c) * 1000) / (test.length - 1);
  console.log(JSON.stringify({ fitS, fitCpuS, scoreMs, scoreCpuMs }));
  process.exit(0);
}

if (!existsSync(path.join(shared, 'datasets/metal_plate'))) {
  console.error(`crash_cost: ../shared is absent (${shared}): nothing to measure`);
  process.exit(2);
}
const reps = Number(process.argv.find((a) => a.startsWith('--reps='))?.slice(7) ?? 5);
const single = process.argv.includes('--single-thread') ? { OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1' } : {};
const given = process.argv.filter((a) => a.startsWith('--variant=')).map((a) => {
  const [name, file, env = ''] = a.slice(10).split(':');
  return { name, file: path.resolve(file), env: Object.fromEntries(env.split(',').filter(Boolean).map((kv) => kv.split('='))) };
});
const own = path.join(root, 'build/Release/reconpatch.node');
const variants = given.length ? given : [
  { name: 'handler on', file: own, env: {} },
  { name: 'handler off', file: own, env: { RECONPATCH_CRASH_HANDLER: '0' } },
];
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const runs = Object.fromEntries(variants.map((v) => [v.name, []]));
for (let r = 0; r < reps; r++) {
  for (const v of variants) {
    const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child'], { env: { ...process.env, RECONPATCH_ADDON: v.file, ...single, ...v.env }, encoding: 'utf8' });
    const m = JSON.parse(out.trim().split('\n').pop());
    runs[v.name].push(m);
    console.error(`rep ${r + 1} ${v.name}: fit ${m.fitS.toFixed(2)} s (CPU ${m.fitCpuS.toFixed(2)} s), score ${m.scoreMs.toFixed(1)} ms/image (CPU ${m.scoreCpuMs.toFixed(1)} ms)`);
  }
}
const ref = variants[0].name;
const keys = ['fitS', 'fitCpuS', 'scoreMs', 'scoreCpuMs'];
const summary = variants.map((v) => ({
  variant: v.name, addon: path.relative(root, v.file), env: v.env,
  median: Object.fromEntries(keys.map((k) => [k, median(runs[v.name].map((m) => m[k]))])),
  runs: runs[v.name],
}));
for (const s of summary) s.vs_first = Object.fromEntries(keys.map((k) => [k, s.median[k] / summary[0].median[k]]));
for (const s of summary) console.error(`${s.variant}: ${keys.map((k) => `${k} ${s.median[k].toFixed(2)} (x${s.vs_first[k].toFixed(3)})`).join(', ')}`);
console.log(JSON.stringify({ date: new Date().toISOString(), reps, singleThread: Object.keys(single).length > 0, loadAverage: os.loadavg(), reference: ref, summary }, null, 1));
