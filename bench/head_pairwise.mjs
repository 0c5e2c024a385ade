#!/usr/bin/env node
// What the head's pairwise term carries on real patch features, for each bandwidth choice
// (issue 19): one batch of N = 1024 patches drawn from 16 training images per dataset (mobilenet_v1,
// the product's preprocessing), the pseudo-labels' inputs as the first iteration sees them (f the
// identity; g left out: a random linear map that keeps the distances' spread). For each choice:
// the off-diagonal pairwise similarity's mean and 99th percentile, the share of pairs above 0.1,
// and how it agrees with the contextual term (mean wP on the pairs the contextual term labels,
// wC > 0, against all other pairs).
//   node bench/head_pairwise.mjs [--json]
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const shared = path.resolve(root, '../shared');
const { Engine } = await import(pathToFileURL(path.join(root, 'dist/index.js')).href);
// `internals` is in the test addon only (lib/native.ts TEST_ADDON): ask for it before the addon loads.
process.env.RECONPATCH_TEST_PROBES = '1';
const { native } = await import(pathToFileURL(path.join(root, 'dist/native.js')).href);
if (!existsSync(path.join(shared, 'datasets'))) {
  console.error(`../shared is absent (${shared}): nothing to measure`);
  process.exit(1);
}

const N = 1024, K = 5, IMAGES = 16;
let seed = 12345;
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);

function stats(w, wc) {
  const off = [];
  let onSum = 0, onCount = 0, offSum = 0, offCount = 0;
  for (let i = 0; i < N; i++)
    for (let j = 0; j < N; j++) {
      if (i === j) continue;
      const v = w[i * N + j];
      off.push(v);
      if (wc[i * N + j] > 0) { onSum += v; onCount++; } else { offSum += v; offCount++; }
    }
  off.sort((a, b) => a - b);
  return {
    mean: off.reduce((a, b) => a + b, 0) / off.length,
    p99: off[Math.floor(0.99 * off.length)],
    above_0_1: off.filter((v) => v > 0.1).length / off.length,
    on_contextual: onSum / onCount,
    elsewhere: offSum / offCount,
  };
}

const rows = [];
for (const category of ['metal_plate', 'magnetic_tile']) {
  const dir = path.join(shared, 'datasets', category, 'train/good');
  const files = readdirSync(dir).sort().filter((_, i, all) => i % Math.floor(all.length / IMAGES) === 0).slice(0, IMAGES);
  const engine = await Engine.create({ backbone: path.join(shared, 'backbones/mobilenet_v1_imagenet.pt') });
  const feats = [];
  for (const f of files) feats.push(await engine.embed(path.join(dir, f)));
  const dim = feats[0].dim;
  const batch = new Float32Array(N * dim);
  for (let n = 0; n < N; n++) {
    const f = feats[Math.floor(rand() * feats.length)];
    const r = Math.floor(rand() * f.rows);
    batch.set(f.data.subarray(r * dim, (r + 1) * dim), n * dim);
  }
  const normalized = batch.slice();
  for (let n = 0; n < N; n++) {
    const row = normalized.subarray(n * dim, (n + 1) * dim);
    const norm = Math.hypot(...row) || 1;
    for (let j = 0; j < dim; j++) row[j] /= norm;
  }
  for (const [choice, z, rule] of [['fixed sigma 1, raw', batch, 'fixed'], ['knn, raw', batch, 'knn'], ['fixed sigma 1, normalised', normalized, 'fixed'], ['knn, normalised', normalized, 'knn']]) {
    const a = { data: z, shape: [N, dim] };
    const probe = native().internals.headSimilarities(a, K, 1);
    const sigma = rule === 'knn' ? probe.bandwidth : 1;
    const s = native().internals.headSimilarities(a, K, sigma);
    rows.push({ category, choice, sigma, ...stats(s.pairwise.data, s.contextual.data) });
  }
}

if (process.argv.includes('--json')) console.log(JSON.stringify({ date: new Date().toISOString(), N, k: K, images: IMAGES, rows }));
else {
  console.log('| data | choice | sigma | wP mean | wP p99 | pairs > 0.1 | wP on contextual pairs | wP elsewhere |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows)
    console.log(`| ${r.category} | ${r.choice} | ${r.sigma.toPrecision(3)} | ${r.mean.toExponential(2)} | ${r.p99.toExponential(2)} | ${(100 * r.above_0_1).toFixed(2)}% | ${r.on_contextual.toFixed(3)} | ${r.elsewhere.toExponential(2)} |`);
}
