#!/usr/bin/env node
// What leave-one-image-out calibration costs a fit, measured side by side:
//   node bench/calibration_cost.mjs <dataset> [coreset ratio] [repeats]
// Fits ../shared/datasets/<dataset>/train/good with mobilenet_v1 and the default preprocessing,
// once with `calibration: false` and once with the default calibration, alternating, each fit in
// its own child process (for its own peak RSS), `repeats` times. Prints one JSON line per fit and
// a summary with the predicted work: the leave-one-out search is one k-NN search per calibration
// image, 2 · L · M · D flops (L patches per image, M bank rows, D = 1024).
import { execFileSync } from 'node:child_process';
import { appendFileSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const [dataset, ratio = '0.1', repeats = '2', child] = process.argv.slice(2);

if (child) {
  const { Engine } = await import(path.join(root, 'dist/index.js'));
  const dir = path.resolve(root, '../shared/datasets', dataset, 'train/good');
  const train = readdirSync(dir).sort().map((f) => path.join(dir, f));
  const engine = await Engine.create({
    head: false, backbone: path.resolve(root, '../shared/backbones/mobilenet_v1_imagenet.pt'), coreset: { ratio: Number(ratio) },
    ...(child === 'off' ? { calibration: false } : {}),
  });
  let calibrateStart = 0;
  const fit = await engine.fit(train, { onProgress: (p) => { if (p.stage === 'calibrate' && !calibrateStart) calibrateStart = performance.now(); } });
  const end = performance.now();
  const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  console.log(JSON.stringify({
    dataset, coreset_ratio: Number(ratio), calibration: child, images: fit.images, patches: fit.patches, bank_rows: fit.bankRows,
    calibration_images: fit.calibrationImages, fit_seconds: fit.seconds,
    // From the first calibration image scored to the end of the fit: the search itself, after the bank is built.
    calibrate_seconds: calibrateStart ? (end - calibrateStart) / 1000 : 0,
    peak_rss_mb: hwm ? Math.round(Number(hwm[1]) / 1024) : null, threshold: engine.info.calibration?.threshold ?? null,
  }));
  process.exit(0);
}

const rows = [];
for (let r = 0; r < Number(repeats); r++)
  for (const mode of ['off', 'loo']) {
    const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), dataset, ratio, repeats, mode], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    const row = JSON.parse(out.trim().split('\n').at(-1));
    rows.push(row);
    console.log(JSON.stringify(row));
    appendFileSync(path.join(root, `bench/results/calibration_cost_${dataset}.jsonl`), `${JSON.stringify({ ...row, date: new Date().toISOString().slice(0, 10), load: (await import('node:os')).loadavg()[0] })}\n`);
  }
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const of = (mode, k) => median(rows.filter((x) => x.calibration === mode).map((x) => x[k]));
const loo = rows.find((x) => x.calibration === 'loo');
const L = loo.patches / loo.images;
const gflop = (2 * L * loo.bank_rows * 1024 * loo.calibration_images) / 1e9;
console.log(JSON.stringify({
  dataset, coreset_ratio: Number(ratio), fit_seconds_off: of('off', 'fit_seconds'), fit_seconds_loo: of('loo', 'fit_seconds'),
  calibrate_seconds: of('loo', 'calibrate_seconds'), predicted_gflop: gflop, peak_rss_mb_off: of('off', 'peak_rss_mb'), peak_rss_mb_loo: of('loo', 'peak_rss_mb'),
}));
