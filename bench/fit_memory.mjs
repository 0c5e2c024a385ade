#!/usr/bin/env node
// One fit in its own process, for its peak RSS: node bench/fit_memory.mjs <dataset> <float32|float16> [ratio] [seed]
// Fits ../shared/datasets/<dataset> (all training images, mobilenet_v1, squash 256 / crop 224)
// and prints one JSON line: fit time, peak RSS against the float32 patch bank, the largest RSS
// sampled in each stage (every 20 ms on the JS thread while the fit runs natively), image AUROC.
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { Engine } = await import(path.join(root, 'dist/index.js'));
const { auroc } = await import(path.join(root, 'dist/eval/metrics.js'));
const [dataset, fitPrecision = 'float32', ratio = '0.1', seed = '0'] = process.argv.slice(2);
const base = path.resolve(root, '../shared/datasets', dataset);
const ls = (d) => readdirSync(d).sort().map((f) => path.join(d, f));
const train = ls(path.join(base, 'train/good'));
const test = readdirSync(path.join(base, 'test')).sort().flatMap((d) => ls(path.join(base, 'test', d)).map((p) => ({ p, label: d === 'good' ? 0 : 1 })));

const engine = await Engine.create({
  head: false, backbone: path.resolve(root, '../shared/backbones/mobilenet_v1_imagenet.pt'), resizeMode: 'squash', resize: 256, crop: 224,
  coreset: { ratio: Number(ratio) }, calibration: false, fitPrecision, seed: Number(seed),
});
const rssBefore = process.memoryUsage().rss;
// Stage of the fit now: 'embed', 'coreset', then 'gather' (selected rows copied into the bank).
let stage = 'embed';
const stagePeakMb = {};
const sample = () => {
  const mb = Math.round(process.memoryUsage.rss() / 2 ** 20);
  stagePeakMb[stage] = Math.max(stagePeakMb[stage] ?? 0, mb);
};
const timer = setInterval(sample, 20);
const fit = await engine.fit(train, {
  onProgress: (p) => {
    sample();
    stage = p.stage === 'coreset' && p.done === p.total ? 'gather' : p.stage;
  },
});
clearInterval(timer);
// The peak of this process's own address space: VmHWM. Not getrusage's maxRSS, which Linux
// carries across exec, so a child of a big parent (bench/run.mjs) would report the parent's RSS.
const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
const peak = hwm ? Number(hwm[1]) * 1024 : process.resourceUsage().maxRSS * 1024;
const bank = fit.patches * 1024 * 4; // the float32 patch bank: every staged patch feature
let t = performance.now();
const scores = [];
for (const x of test) scores.push((await engine.score(x.p)).score);
const scoreMs = (performance.now() - t) / test.length;
console.log(JSON.stringify({
  dataset, fit_precision: fitPrecision, coreset_ratio: Number(ratio), seed: Number(seed), images: fit.images, patches: fit.patches, bank_rows: fit.bankRows,
  fit_seconds: fit.seconds, rss_before_fit_mb: Math.round(rssBefore / 2 ** 20), peak_rss_mb: Math.round(peak / 2 ** 20),
  bank_mb: Math.round(bank / 2 ** 20), peak_over_bank: peak / bank, stage_peak_rss_mb: stagePeakMb, image_auroc: auroc(scores, test.map((x) => x.label)), score_ms_per_image: scoreMs,
}));
