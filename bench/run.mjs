#!/usr/bin/env node
// Benchmarks beside the machine's ceiling, in one run: the fp32 GEMM rate through libtorch, then
// fit and per-image score time and peak RSS on ../shared/datasets/metal_plate with the shared
// mobilenet_v1 backbone (the PatchCore reference's settings). `--json` prints one JSON object.
// Needs a build (npm install) and ../shared; says so and exits 0 when ../shared is absent.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { Engine } = await import(path.join(root, 'dist/index.js'));
const { native } = await import(path.join(root, 'dist/native.js'));
const json = process.argv.includes('--json');
const shared = path.resolve(root, '../shared');
const log = (...a) => { if (!json) console.log(...a); };

const out = { machine: { cores: (await import('node:os')).availableParallelism() } };
out.gemm_gflops = native().internals.gemmGflops(2048, 5, out.machine.cores);
log(`GEMM fp32 2048^3: ${out.gemm_gflops.toFixed(1)} GFLOP/s (ceiling)`);

// k-NN: 784 queries (one 224-px image) against banks of 1.6k, 16k and 60k rows x 1024.
out.knn = [];
for (const rows of [1600, 16000, 60000]) {
  const ms = native().internals.knnMilliseconds(rows, 784, 1024, 3, out.machine.cores);
  const gflop = (2 * 784 * rows * 1024) / 1e9;
  out.knn.push({ bank_rows: rows, ms, gflops: gflop / (ms / 1000), share_of_gemm: gflop / (ms / 1000) / out.gemm_gflops });
  log(`k-NN 784 x ${rows} x 1024: ${ms.toFixed(1)} ms, ${(gflop / (ms / 1000)).toFixed(0)} GFLOP/s (${((100 * gflop) / (ms / 1000) / out.gemm_gflops).toFixed(0)}% of GEMM)`);
}

// Coreset on random features: 209 images' worth of patches (209 x 784) at 1%; with --full also
// 10% and 762 x 784 (minutes each: one pass over all projected points per selection).
out.coreset = [];
const coresetCases = [[209 * 784, 0.01]];
if (process.argv.includes('--full')) coresetCases.push([209 * 784, 0.1], [762 * 784, 0.01]);
for (const [rows, ratio] of coresetCases) {
  const seconds = native().internals.coresetSeconds(rows, 1024, ratio, out.machine.cores);
  const selections = Math.floor(rows * ratio);
  const gbRead = (selections * rows * 128 * 4) / 1e9;
  out.coreset.push({ rows, ratio, seconds, selections_per_second: selections / seconds, gb_per_second: gbRead / seconds });
  log(`coreset ${rows} x 1024 at ${ratio}: ${seconds.toFixed(1)} s, ${(selections / seconds).toFixed(0)} selections/s, ${(gbRead / seconds).toFixed(1)} GB/s over the projected points`);
}

const data = path.join(shared, 'datasets/metal_plate');
const backbone = path.join(shared, 'backbones/mobilenet_v1_imagenet.pt');
if (!existsSync(data) || !existsSync(backbone)) {
  log(`../shared is absent (${shared}): end-to-end benchmarks skipped`);
  out.end_to_end = 'skipped: ../shared absent';
} else {
  const ls = (d) => readdirSync(d).sort().map((f) => path.join(d, f));
  const train = ls(path.join(data, 'train/good'));
  const test = readdirSync(path.join(data, 'test')).sort().flatMap((d) => ls(path.join(data, 'test', d)));
  const engine = await Engine.create({ backbone, resizeMode: 'squash', resize: 256, crop: 224, coreset: { ratio: 0.1 }, calibration: false });
  const stages = {};
  let t = performance.now();
  let last = t;
  const fit = await engine.fit(train, {
    onProgress: (p) => {
      const now = performance.now();
      stages[p.stage] = (stages[p.stage] ?? 0) + (now - last) / 1000;
      last = now;
    },
  });
  out.fit = { seconds: fit.seconds, stages_seconds: stages, images: fit.images, patches: fit.patches, bank_rows: fit.bankRows };
  log(`fit metal_plate (${fit.images} images, ${fit.patches} patches -> ${fit.bankRows}): ${fit.seconds.toFixed(1)} s`, stages);
  t = performance.now();
  for (const p of test.slice(0, 24)) await engine.score(p);
  out.score_ms_per_image = (performance.now() - t) / 24;
  t = performance.now();
  await engine.scoreMany(test.slice(0, 24));
  out.score_many_ms_per_image = (performance.now() - t) / 24;
  // Throughput with C concurrent callers (each scores the next PNG buffer from a shared list as
  // soon as its previous call returns), the same model with and without batching, interleaved.
  const modelFile = path.join((await import('node:os')).tmpdir(), `reconpatch-bench-${process.pid}.rcp`);
  await engine.save(modelFile);
  const engines = { batched: await Engine.load(modelFile), unbatched: await Engine.load(modelFile, { batching: false }) };
  (await import('node:fs')).rmSync(modelFile);
  const buffers = test.slice(0, 48).map((p) => readFileSync(p));
  out.throughput = [];
  for (const callers of [1, 4, 16]) {
    const row = { callers };
    for (const mode of ['unbatched', 'batched']) {
      const e = engines[mode];
      const before = e.info.batching;
      let next = 0;
      const t0 = performance.now();
      await Promise.all(Array.from({ length: callers }, async () => {
        while (next < buffers.length) await e.score(buffers[next++]);
      }));
      const seconds = (performance.now() - t0) / 1000;
      const after = e.info.batching;
      row[mode] = { images_per_second: buffers.length / seconds, mean_batch: (after.calls - before.calls) / (after.batches - before.batches) };
    }
    row.speedup = row.batched.images_per_second / row.unbatched.images_per_second;
    out.throughput.push(row);
    log(`throughput, ${callers} callers: ${row.unbatched.images_per_second.toFixed(2)} images/s unbatched, ${row.batched.images_per_second.toFixed(2)} batched (mean batch ${row.batched.mean_batch.toFixed(1)}): x${row.speedup.toFixed(2)}`);
  }
  // k-NN FLOPs per image: 784 queries x bank rows x 1024 x 2.
  out.knn_gflop_per_image = (784 * fit.bankRows * 1024 * 2) / 1e9;
  // ReConPatch head training cost at the default batch (N = HEAD_DEFAULTS.batch).
  const { HEAD_DEFAULTS } = await import(path.join(root, 'dist/index.js'));
  const iterations = 50;
  const withHead = await Engine.create({ backbone, resizeMode: 'squash', resize: 256, crop: 224, coreset: { ratio: 0.1 }, head: { iterations }, calibration: false });
  const headStages = {};
  last = performance.now();
  const headFit = await withHead.fit(train, {
    onProgress: (p) => {
      const now = performance.now();
      headStages[p.stage] = (headStages[p.stage] ?? 0) + (now - last) / 1000;
      last = now;
    },
  });
  const n = HEAD_DEFAULTS.batch;
  // FLOPs per iteration: f and g forward for the partner (2 x 2 N D^2) and the trained pair
  // (forward 2 x 2 N D^2, backward ~2x that), pairwise distance GEMMs (2 x 2 N^2 D), the
  // contextual products (2 x 2 N^3).
  const D = 1024;
  const headGflop = (4 * n * D * D + 12 * n * D * D + 4 * n * n * D + 4 * n * n * n) / 1e9;
  out.head = { batch: n, iterations, ms_per_iteration: (headStages.head * 1000) / iterations, gflop_per_iteration: headGflop, fit_seconds: headFit.seconds };
  out.head.gflops = headGflop / (out.head.ms_per_iteration / 1000);
  log(`head training: ${out.head.ms_per_iteration.toFixed(0)} ms/iteration at N=${n} (${headGflop.toFixed(1)} GFLOP, ${out.head.gflops.toFixed(1)} GFLOP/s)`);
  out.peak_rss_mb = Math.round(process.resourceUsage().maxRSS / 1024);
  log(`score: ${out.score_ms_per_image.toFixed(1)} ms/image one by one, ${out.score_many_ms_per_image.toFixed(1)} ms/image in batches; k-NN ${out.knn_gflop_per_image.toFixed(2)} GFLOP/image; peak RSS ${out.peak_rss_mb} MB`);
}
if (json) console.log(JSON.stringify(out));
