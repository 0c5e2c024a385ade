#!/usr/bin/env node
// Fit and per-image score against the PatchCore reference, in one run, with where our time goes:
//   node bench/vs_reference.mjs [--category metal_plate] [--coreset 0.1] [--rounds 2] [--no-reference] [--out file.json]
// Each round fits ../shared/datasets/<category>/train/good with mobilenet_v1 (head off,
// calibration on: the defaults a PatchCore user gets) and scores every test image one call at a
// time from its path, first at the reference's preprocessing (squash 256, crop 224), then at the
// product's default, and runs the reference (../shared/peer, a child process) between them, so
// each ratio compares runs minutes apart on the same machine. Per stage: the engine's own stage
// names (core/call_record.h) timed by the test addon's stage timer; the JS side is what is left
// of a call (decode with sharp measured apart, on the same images).
import { spawnSync } from 'node:child_process';
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
const { resolveInput, toRawFrame } = await import(path.join(root, 'dist/io/images.js'));
const internals = native().internals;

const args = process.argv.slice(2);
const opt = (name, d) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : d; };
const category = opt('category', 'metal_plate');
const coreset = Number(opt('coreset', '0.1'));
const rounds = Number(opt('rounds', '2'));
const { shared, mobilenet, train, test } = benchDataset(root, category);
const cores = os.availableParallelism();
const PREPROCESSING = {
  reference: { resizeMode: 'squash', resize: 256, crop: 224 },
  product: {},
};

const round2 = (x) => Math.round(x * 100) / 100;
/** Stage times of one operation, ms per call. */
function perCall(times, operation, calls) {
  const out = {};
  for (const t of times.filter((x) => x.operation === operation)) out[t.stage] = round2(t.ms / calls);
  return out;
}

async function ours(preprocessing) {
  const engine = await Engine.create({ head: false, backbone: mobilenet, coreset: { ratio: coreset }, ...PREPROCESSING[preprocessing] });
  internals.startStageTimer();
  const t0 = performance.now();
  const fit = await engine.fit(train);
  const fitSeconds = (performance.now() - t0) / 1000;
  const fitTimes = internals.readStageTimes();
  const fitStages = {};
  for (const t of fitTimes) fitStages[`${t.operation}/${t.stage}`] = round2(t.ms / 1000);
  // Scoring, one call per image from its path (what an API user does), then the same images
  // decoded apart and scored as raw frames: decode and the native call, per stage.
  await engine.score(test[0]);
  internals.readStageTimes();
  let scoreMs = 0;
  const scores = [];
  for (const f of test) {
    const t = performance.now();
    scores.push((await engine.score(f)).score);
    scoreMs += performance.now() - t;
  }
  const scoreTimes = internals.readStageTimes();
  const policy = { ...resolveInput(undefined), resizes: [] };
  let decodeMs = 0;
  let rawMs = 0;
  for (const f of test) {
    let t = performance.now();
    const frame = await toRawFrame(f, 0, policy);
    decodeMs += performance.now() - t;
    t = performance.now();
    await engine.score(frame);
    rawMs += performance.now() - t;
  }
  internals.readStageTimes();
  const n = test.length;
  const stages = perCall(scoreTimes, 'score', n);
  const nativeMs = Object.values(stages).reduce((a, b) => a + b, 0);
  const info = engine.info;
  engine.dispose?.();
  return {
    preprocessing, fit_seconds: round2(fitSeconds), images: fit.images, patches_per_image: fit.patches / fit.images, bank_rows: fit.bankRows,
    threshold: info.calibration?.threshold ?? null, fit_stages_seconds: fitStages,
    score_ms_per_image: round2(scoreMs / n), decode_ms_per_image: round2(decodeMs / n), raw_score_ms_per_image: round2(rawMs / n),
    native_ms_per_image: round2(nativeMs), js_ms_per_image: round2(scoreMs / n - nativeMs), native_stages_ms: stages,
    scores_head: scores.slice(0, 3),
  };
}

function reference() {
  const py = spawnSync('/usr/bin/python3', [path.join(shared, 'peer/run_patchcore.py'), '--root', path.join(shared, 'datasets'), '--category', category,
    '--backbone', 'mobilenet_v1_imagenet', '--coreset', String(coreset), '--threads', String(cores)], { encoding: 'utf8', maxBuffer: 1 << 24 });
  const line = py.stdout?.trim().split('\n').filter((l) => l.startsWith('{')).at(-1);
  if (py.status !== 0 || !line) return { error: `the reference did not run: ${(py.stderr || py.error?.message || '').trim().split('\n').at(-1)}` };
  const r = JSON.parse(line);
  return { fit_seconds: r.fit_seconds, coreset_seconds: r.coreset_seconds, score_ms_per_image: round2(1000 * r.score_seconds_per_image), image_auroc: r.image_auroc, bank_rows: r.bank_size };
}

const out = {
  date: new Date().toISOString(), category, coreset, test_images: test.length, train_images: train.length,
  machine: { cores, cpu: os.cpus()[0]?.model, load_average_start: os.loadavg(), gemm_gflops: round2(internals.gemmGflops(1024, 5, cores)) },
  rounds: [],
};
for (let r = 0; r < rounds; r++) {
  const row = { ours_reference_preprocessing: await ours('reference') };
  console.error(`round ${r}: ours (reference preprocessing) ${JSON.stringify(row.ours_reference_preprocessing)}`);
  if (!args.includes('--no-reference')) {
    row.reference = reference();
    console.error(`round ${r}: reference ${JSON.stringify(row.reference)}`);
    if (!row.reference.error) {
      row.fit_ratio = round2(row.reference.fit_seconds / row.ours_reference_preprocessing.fit_seconds);
      row.score_ratio = round2(row.reference.score_ms_per_image / row.ours_reference_preprocessing.score_ms_per_image);
    }
  }
  row.ours_product_preprocessing = await ours('product');
  console.error(`round ${r}: ours (product preprocessing) ${JSON.stringify(row.ours_product_preprocessing)}`);
  out.rounds.push(row);
}
out.machine.load_average_end = os.loadavg();
const file = opt('out', null);
if (file) writeFileSync(file, `${JSON.stringify(out, null, 1)}\n`);
console.log(JSON.stringify(out));
