#!/usr/bin/env node
// Decisions at the default threshold (issue 16; docs/results.md, "Decisions at the default
// threshold"): recall (defective test images flagged) and false-alarm rate (good test images
// flagged) at the threshold a fit sets by itself, before and after issue 16, with mobilenet_v1:
//   before  the old defaults: shorter side 256, centre crop 224; 10% of the training images (at
//           least 3) held out of the bank, threshold = mean + 3 std of their scores (std floored at
//           2% of the mean), as main computed it before issue 16
//   after   the new defaults: the whole image at about 256 x 256 pixels (aspect kept, no crop);
//           every training image in the bank, up to 100 of them scored leave-one-image-out,
//           threshold = the 99% quantile of a Gumbel fitted to those scores' quartiles
//   crop    the old preprocessing (shorter side 256, crop 224) with the new calibration: which of
//           the two changes moved the numbers (not run by default: --configs before,after,crop)
// Test labels only measure the decision; they set nothing. Each run is a process of its own;
// rows go to docs/results/decide.jsonl.
//   node scripts/results_decide.mjs [--seeds 0,1,2] [--only metal_plate] [--configs before,after] [--train-limit N]
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const shared = path.resolve(root, '../shared');
const out = path.join(root, 'docs/results/decide.jsonl');
const args = process.argv.slice(2);
const opt = (name, d) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : d; };

// magnetic_tile: the first 200 training images, as the other magnetic_tile rows of docs/results.md.
const TRAIN_LIMIT = { metal_plate: 0, magnetic_tile: 200 };

if (args[0] === '--run') {
  const { category, config, seed, trainLimit } = JSON.parse(args[1]);
  const { Engine } = await import(pathToFileURL(path.join(root, 'dist/index.js')).href);
  const { readMvtecDataset, auroc } = await import(pathToFileURL(path.join(root, 'dist/eval/index.js')).href);
  const data = await readMvtecDataset(path.join(shared, 'datasets'), category);
  const train = trainLimit ? data.train.slice(0, trainLimit) : data.train;
  const backbone = path.join(shared, 'backbones/mobilenet_v1_imagenet.pt');
  const old = { resizeMode: 'shorter', resize: 256, crop: 224 };
  const options = config === 'before'
    ? { head: false, backbone, ...old, seed, calibration: { holdout: 0.1, minImages: 3 } }
    : config === 'crop' ? { head: false, backbone, ...old, seed } : { head: false, backbone, seed };
  const engine = await Engine.create(options);
  const fit = await engine.fit(train);
  const c = fit.calibration;
  let threshold = c.threshold;
  if (config === 'before') {
    // main's rule before issue 16 (lib/calibration.ts at 6477f9d), on the same held-out scores.
    const s = c.evidence.map((e) => e.score);
    const mean = s.reduce((a, b) => a + b, 0) / s.length;
    const std = Math.max(Math.sqrt(s.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(s.length - 1, 1)), 0.02 * Math.abs(mean));
    threshold = mean + 3 * std;
  }
  const started = performance.now();
  const results = [];
  for (let i = 0; i < data.test.length; i += 8) results.push(...(await engine.scoreMany(data.test.slice(i, i + 8).map((t) => t.path))));
  const scoreSeconds = (performance.now() - started) / 1000;
  const labels = data.test.map((t) => t.label);
  const scores = results.map((r) => r.score);
  const defects = labels.filter((l) => l === 1).length;
  const good = labels.length - defects;
  const caught = scores.filter((s, i) => s >= threshold && labels[i] === 1).length;
  const alarms = scores.filter((s, i) => s >= threshold && labels[i] === 0).length;
  console.log(JSON.stringify({
    category, config, seed, train: train.length, calibration_images: fit.calibrationImages, bank_images: fit.images,
    patches_per_image: fit.patches / fit.images, bank_rows: fit.bankRows,
    rule: config === 'before' ? 'mean+3std (holdout)' : `gumbel q${1 - c.falseAlarmRate} (${c.method})`,
    threshold, defects, good, recall: caught / defects, caught, false_alarm_rate: alarms / good, false_alarms: alarms,
    image_auroc: auroc(scores, labels), warnings: fit.warnings.length, fit_seconds: fit.seconds, score_seconds: scoreSeconds,
    date: new Date().toISOString().slice(0, 10), load1: os.loadavg()[0],
  }));
  process.exit(0);
}

if (!existsSync(path.join(shared, 'datasets'))) {
  console.error(`results_decide: ${path.join(shared, 'datasets')} is absent; nothing to measure`);
  process.exit(1);
}
const seeds = opt('seeds', '0').split(',').map(Number);
const categories = opt('only') ? [opt('only')] : ['metal_plate', 'magnetic_tile'];
const configs = opt('configs', 'before,after').split(',');
for (const category of categories)
  for (const seed of seeds)
    for (const config of configs) {
      const trainLimit = Number(opt('train-limit', TRAIN_LIMIT[category] ?? 0));
      const stdout = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--run', JSON.stringify({ category, config, seed, trainLimit })], {
        encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26,
      });
      const row = stdout.trim().split('\n').at(-1);
      console.log(row);
      appendFileSync(out, `${row}\n`);
    }
