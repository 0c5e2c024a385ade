#!/usr/bin/env node
// What a working resolution costs (issue 33, docs/results.md "Resolution and tiling"): per resize,
// fit on a dataset's train/good with the product's defaults (mobilenet_v1, head on, calibration
// on) and score test images one call at a time from their paths, with the engine's stages timed:
//   node bench/resolution.mjs [--category screw] [--resizes 256,auto] [--images 40] [--out file.json]
// A resize is a number, 'auto', or '<n>/t<size>' (tiles of that size). Run it on a quiet machine:
// the ratios between resizes are the figures, measured minutes apart in one run.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { benchDataset } from './dataset.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// The stage timer is in the test addon only (lib/native.ts): ask for it before the addon loads.
process.env.RECONPATCH_TEST_PROBES = '1';
const { Engine } = await import(path.join(root, 'dist/index.js'));
const { native } = await import(path.join(root, 'dist/native.js'));
const internals = native().internals;

const args = process.argv.slice(2);
const opt = (name, d) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : d; };
const category = opt('category', 'screw');
const { mobilenet, train, test: allTest } = benchDataset(root, category);
// Spread evenly over the test set's folders.
const count = Math.min(Number(opt('images', '40')), allTest.length);
const test = Array.from({ length: count }, (_, i) => allTest[Math.floor((i * allTest.length) / count)]);
const round2 = (x) => Math.round(x * 100) / 100;

function resizeOptions(spec) {
  const [resize, tiles] = String(spec).split('/t');
  return { resize: resize === 'auto' ? 'auto' : Number(resize), ...(tiles ? { tiles: { size: Number(tiles) } } : {}) };
}

async function measure(spec) {
  const engine = await Engine.create({ backbone: mobilenet, ...resizeOptions(spec) });
  internals.startStageTimer();
  const t0 = performance.now();
  const fit = await engine.fit(train);
  const fitSeconds = (performance.now() - t0) / 1000;
  const fitStages = {};
  for (const t of internals.readStageTimes()) fitStages[`${t.operation}/${t.stage}`] = round2(t.ms / 1000);
  await engine.score(test[0]);
  internals.readStageTimes();
  let ms = 0;
  for (const f of test) {
    const t = performance.now();
    await engine.score(f);
    ms += performance.now() - t;
  }
  const stages = {};
  for (const t of internals.readStageTimes().filter((x) => x.operation === 'score')) stages[t.stage] = round2(t.ms / test.length);
  await engine.dispose();
  return {
    resize: spec, fit_seconds: round2(fitSeconds), images: fit.images, patches_per_image: Math.round(fit.patches / fit.images), bank_rows: fit.bankRows,
    fit_stages_seconds: fitStages, score_ms_per_image: round2(ms / test.length), native_stages_ms: stages,
    peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
  };
}

if (args[0] === '--one') {
  console.log(JSON.stringify(await measure(args[1])));
  process.exit(0);
}
const out = {
  date: new Date().toISOString(), category, train_images: train.length, test_images: test.length,
  machine: { cores: os.availableParallelism(), cpu: os.cpus()[0]?.model, load_average_start: os.loadavg(), gemm_gflops: round2(internals.gemmGflops(1024, 5, os.availableParallelism())) },
  rows: [],
};
// Each resize in a process of its own, so that its peak RSS is its own.
for (const spec of opt('resizes', '256,auto').split(',')) {
  const child = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--one', spec, ...args], { encoding: 'utf8', maxBuffer: 1 << 24 });
  const row = JSON.parse(child.trim().split('\n').at(-1));
  console.error(JSON.stringify(row));
  out.rows.push(row);
}
out.machine.load_average_end = os.loadavg();
const file = opt('out', null);
if (file) writeFileSync(file, `${JSON.stringify(out, null, 1)}\n`);
console.log(JSON.stringify(out));
