#!/usr/bin/env node
// Benchmarks beside the machine's ceilings, in one run: the fp32 GEMM rate through libtorch and the
// read bandwidth, then each pipeline step with the FLOPs or bytes it must move and the share of
// the ceiling reached.
//   node bench/run.mjs [--json] [--full] [--only=gemm,knn,backbone,maps,coreset,metal_plate,throughput,threads,magnetic_tile]
// --full adds the 762 x 784 coreset at 1% and fits in their own processes for peak RSS
// (magnetic_tile float32 vs float16 staging at 1%, metal_plate at 10%): ~10 minutes more;
// --full=all also the 762 x 784 coreset at 10% and the magnetic_tile fit at 10%. Needs a build (npm install) and ../shared for everything
// but the GEMM, k-NN and map figures; says so and skips the rest when ../shared is absent.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { Engine } = await import(path.join(root, 'dist/index.js'));
// `internals` is in the test addon only (lib/native.ts TEST_ADDON): ask for it before the addon loads.
process.env.RECONPATCH_TEST_PROBES = '1';
const { native } = await import(path.join(root, 'dist/native.js'));
const args = process.argv.slice(2);
const json = args.includes('--json');
const full = args.some((a) => a.startsWith('--full'));
const only = args.find((a) => a.startsWith('--only='))?.slice(7).split(',');
const want = (section) => !only || only.includes(section);
const log = (...a) => (json ? console.error : console.log)(...a); // with --json: progress on stderr
const internals = native().internals;
const shared = path.resolve(root, '../shared');
const mobilenet = path.join(shared, 'backbones/mobilenet_v1_imagenet.pt');
const hasShared = existsSync(path.join(shared, 'datasets/metal_plate')) && existsSync(mobilenet);
const ls = (d) => readdirSync(d).sort().map((f) => path.join(d, f));
const trainOf = (name) => ls(path.join(shared, 'datasets', name, 'train/good'));
const testOf = (name) => {
  const base = path.join(shared, 'datasets', name, 'test');
  return readdirSync(base).sort().flatMap((d) => ls(path.join(base, d)).map((p) => ({ path: p, label: d === 'good' ? 0 : 1 })));
};
const pct = (x) => `${(100 * x).toFixed(0)}%`;

const cores = os.availableParallelism();
const out = { date: new Date().toISOString(), machine: { cores, cpu: os.cpus()[0]?.model } };
out.gemm_gflops = internals.gemmGflops(2048, 5, cores);
log(`GEMM fp32 2048^3: ${out.gemm_gflops.toFixed(1)} GFLOP/s (the ceiling)`);
// The ceiling for streaming kernels (the coreset loop): a float32 sum over 1 GiB, far beyond L3.
out.read_gb_per_second = internals.readGBs(2 ** 30, 5, cores);
log(`read bandwidth (sum over 1 GiB of float32): ${out.read_gb_per_second.toFixed(1)} GB/s (the ceiling for streaming kernels)`);

if (want('knn')) {
  // 784 queries (one 224-px image) against banks of 1.6k, 16k and 60k rows x 1024: the float32 GEMM
  // (ms, gflops) and, where the CPU has AVX-512 VNNI, the default int8 pass with float32 re-scoring
  // (int8_ms; GFLOP/s counted as float32 work). bench/knn_int8.mjs has the detail (issue 21).
  out.knn = [];
  for (const rows of [1600, 16000, 60000]) {
    const c = internals.knnCompare(null, null, rows, 784, 1024, 3, cores);
    const gflop = (2 * 784 * rows * 1024) / 1e9;
    const gflops = gflop / (c.float32Ms / 1000);
    out.knn.push({ bank_rows: rows, ms: c.float32Ms, gflop, gflops, share_of_gemm: gflops / out.gemm_gflops, int8: c.int8, int8_ms: c.int8Ms, int8_speedup: c.float32Ms / c.int8Ms, rescored_per_query: c.rescoredPerQuery });
    log(`k-NN 784 x ${rows} x 1024: float32 ${c.float32Ms.toFixed(1)} ms, ${gflops.toFixed(0)} GFLOP/s (${pct(gflops / out.gemm_gflops)} of GEMM); ${c.int8 ? `int8 ${c.int8Ms.toFixed(1)} ms (x${(c.float32Ms / c.int8Ms).toFixed(2)}, ${c.rescoredPerQuery.toFixed(1)} rows/query re-scored)` : 'no int8 (no VNNI)'}`);
  }
}

if (want('maps')) {
  // Anomaly map of one image: a 28 x 28 patch-score grid -> bilinear 224 x 224 -> Gaussian blur
  // (sigma 4, 33 taps, two separable passes). ~4 passes over 224^2 floats = 0.8 MB; 2 x 33 x 2 x 50k = 6.6 MFLOP.
  const grid = { data: new Float32Array(28 * 28).map((_, i) => Math.sin(i)), shape: [28, 28] };
  internals.anomalyMap(grid, 224, 224, 4);
  const reps = 50;
  const t = performance.now();
  for (let i = 0; i < reps; i++) internals.anomalyMap(grid, 224, 224, 4);
  out.maps = { ms_per_image: (performance.now() - t) / reps, mflop: (2 * 33 * 2 * 224 * 224) / 1e6 };
  log(`anomaly map 28^2 -> 224^2 + blur: ${out.maps.ms_per_image.toFixed(2)} ms/image (${out.maps.mflop.toFixed(1)} MFLOP)`);
}

if (!hasShared) {
  log(`../shared is absent (${shared}): backbone, coreset and end-to-end benchmarks skipped`);
  out.skipped = '../shared absent';
} else {
  if (want('backbone')) {
    // FLOPs counted once with PyTorch's profiler (bench/backbone_flops.py -> bench/backbone_flops.json).
    const flops = JSON.parse(readFileSync(path.join(root, 'bench/backbone_flops.json'), 'utf8'));
    out.backbone = [];
    for (const name of ['mobilenet_v1_imagenet', 'darknet_tiny_imagenet']) {
      const file = path.join(shared, 'backbones', `${name}.pt`);
      for (const batch of [1, 4]) {
        const t = internals.backboneMilliseconds(file, 224, batch, 3, cores);
        const gflop = flops[name]['224'] * batch;
        const row = { backbone: name, batch, ms: t.backboneMs, images_per_second: (1000 * batch) / t.backboneMs, gflop, gflops: gflop / (t.backboneMs / 1000), patch_features_ms: t.patchFeaturesMs };
        row.share_of_gemm = row.gflops / out.gemm_gflops;
        out.backbone.push(row);
        log(`backbone ${name} batch ${batch}: ${row.ms.toFixed(1)} ms (${row.images_per_second.toFixed(1)} images/s, ${row.gflops.toFixed(0)} GFLOP/s, ${pct(row.share_of_gemm)} of GEMM); patch features ${t.patchFeaturesMs.toFixed(1)} ms`);
      }
    }
  }

  if (want('coreset')) {
    // Greedy coreset on real features (magnetic_tile, mobilenet_v1, 784 patches per image) projected
    // to 128: the plain loop (one pass over all points per selection; its rate is constant, so it
    // is timed over the first selections) against the exact block-pruned loop, in one run; the
    // pruned loop's first selections must equal the plain loop's. Each loop's setup (the copy in
    // from JS, the initial distances, the blocks) is timed by a call that selects one point and
    // reported apart from the loop's rate.
    const images = trainOf('magnetic_tile').slice(0, full ? 762 : 209);
    const engine = await Engine.create({ head: false, backbone: mobilenet, resizeMode: 'squash', resize: 256, crop: 224, calibration: false });
    const parts = [];
    let t = performance.now();
    for (const f of images) {
      const e = await engine.embed(f);
      parts.push(internals.coresetProject({ data: e.data, shape: [e.rows, e.dim] }, 128, 0).data);
    }
    const embedSeconds = (performance.now() - t) / 1000;
    const all = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((o, p) => (all.set(p, o), o + p.length), 0);
    out.coreset = { embed_seconds: embedSeconds, images: images.length, cases: [] };
    const cases = [[209, 0.01], [209, 0.1]];
    if (full) cases.push([762, 0.01]);
    if (args.includes('--full=all')) cases.push([762, 0.1]); // ~10+ minutes for the pruned loop alone
    for (const [n, ratio] of cases) {
      const rows = n * 784;
      const projected = { data: all.subarray(0, rows * 128), shape: [rows, 128] };
      const starts = Array.from({ length: 10 }, (_, i) => (i * 104729 + 7) % rows);
      const count = Math.floor(rows * ratio);
      const prefix = Math.min(count, 1000);
      const seconds = (fn) => { const t0 = performance.now(); const r = fn(); return [(performance.now() - t0) / 1000, r]; };
      // A loop's setup (one selection) and its rate over `selections` (setup subtracted).
      const timeLoop = (pruned, bf16, selections) => {
        const [setup] = seconds(() => internals.greedyCoreset(projected, starts, 1, pruned, cores, bf16));
        const [total, selected] = seconds(() => internals.greedyCoreset(projected, starts, selections, pruned, cores, bf16));
        return { setup, total, rate: (selections - 1) / Math.max(1e-9, total - setup), selected };
      };
      const plain32 = timeLoop(false, false, prefix); // the straightforward loop
      const plain16 = timeLoop(false, true, prefix); // the same on the bfloat16 copy fit uses
      const pruned16 = timeLoop(true, true, count); // what fit runs on the CPU
      const plainSecondsEstimated = plain32.setup + count / plain32.rate;
      const chosen16 = new Set(plain16.selected);
      const row = {
        rows, ratio, selections: count,
        plain_float32_setup_seconds: plain32.setup, plain_float32_selections_per_second: plain32.rate, plain_float32_seconds_estimated: plainSecondsEstimated,
        plain_float32_gb_per_second: (rows * 128 * 4 * plain32.rate) / 1e9,
        plain_float32_share_of_read_bandwidth: (rows * 128 * 4 * plain32.rate) / 1e9 / out.read_gb_per_second,
        plain_bfloat16_gb_per_second: (rows * 128 * 2 * plain16.rate) / 1e9,
        plain_bfloat16_setup_seconds: plain16.setup, plain_bfloat16_selections_per_second: plain16.rate,
        pruned_bfloat16_setup_seconds: pruned16.setup, pruned_bfloat16_seconds: pruned16.total, pruned_bfloat16_selections_per_second: pruned16.rate,
        loop_speedup_over_plain_bfloat16: pruned16.rate / plain16.rate, speedup_over_plain_float32: plainSecondsEstimated / pruned16.total,
        pruned_equals_plain_bfloat16: plain16.selected.every((v, i) => v === pruned16.selected[i]), checked_selections: prefix,
        shared_with_float32_selection: plain32.selected.filter((v) => chosen16.has(v)).length / prefix,
      };
      out.coreset.cases.push(row);
      log(`coreset ${n} x 784 = ${rows} rows at ${ratio} (${count} selections): plain float32 ${plain32.rate.toFixed(0)} sel/s (${row.plain_float32_gb_per_second.toFixed(1)} GB/s, ${pct(row.plain_float32_share_of_read_bandwidth)} of read bandwidth, setup ${plain32.setup.toFixed(2)} s, ~${plainSecondsEstimated.toFixed(0)} s in all); plain bfloat16 ${plain16.rate.toFixed(0)} sel/s (${row.plain_bfloat16_gb_per_second.toFixed(1)} GB/s); pruned bfloat16 ${pruned16.total.toFixed(1)} s (setup ${pruned16.setup.toFixed(2)} s, ${pruned16.rate.toFixed(0)} sel/s): x${row.speedup_over_plain_float32.toFixed(2)} in all over plain float32; pruned = plain (bfloat16) on the first ${prefix}: ${row.pruned_equals_plain_bfloat16}; ${(100 * row.shared_with_float32_selection).toFixed(0)}% of them also chosen in float32`);
    }
  }

  let modelFile;
  let scoreBuffers;
  if (want('metal_plate') || want('throughput') || want('threads')) {
    const train = trainOf('metal_plate');
    const test = testOf('metal_plate');
    const engine = await Engine.create({ head: false, backbone: mobilenet, resizeMode: 'squash', resize: 256, crop: 224, coreset: { ratio: 0.1 }, calibration: false });
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
    scoreBuffers = test.slice(0, 48).map((x) => readFileSync(x.path));
    modelFile = path.join(os.tmpdir(), `reconpatch-bench-${process.pid}.rcp`);
    await engine.save(modelFile);
    if (want('metal_plate')) {
      out.metal_plate = { fit_seconds: fit.seconds, stages_seconds: stages, images: fit.images, patches: fit.patches, bank_rows: fit.bankRows };
      log(`fit metal_plate (${fit.images} images, ${fit.patches} patches -> ${fit.bankRows}): ${fit.seconds.toFixed(1)} s`, stages);
      t = performance.now();
      for (const p of test.slice(0, 24)) await engine.score(p.path);
      out.metal_plate.score_ms_per_image = (performance.now() - t) / 24;
      t = performance.now();
      await engine.scoreMany(test.slice(0, 24).map((x) => x.path));
      out.metal_plate.score_many_ms_per_image = (performance.now() - t) / 24;
      // k-NN FLOPs per image: 784 queries x bank rows x 1024 x 2.
      out.metal_plate.knn_gflop_per_image = (784 * fit.bankRows * 1024 * 2) / 1e9;
      log(`score: ${out.metal_plate.score_ms_per_image.toFixed(1)} ms/image one by one, ${out.metal_plate.score_many_ms_per_image.toFixed(1)} ms/image with scoreMany; k-NN ${out.metal_plate.knn_gflop_per_image.toFixed(2)} GFLOP/image`);

      // ReConPatch head training cost at the default batch (N = HEAD_DEFAULTS.batch).
      const { HEAD_DEFAULTS } = await import(path.join(root, 'dist/index.js'));
      const iterations = 50;
      const withHead = await Engine.create({ head: false, backbone: mobilenet, resizeMode: 'squash', resize: 256, crop: 224, coreset: { ratio: 0.1 }, head: { iterations, plateau: 0 }, calibration: false });
      const headStages = {};
      last = performance.now();
      await withHead.fit(train, {
        onProgress: (p) => {
          const now = performance.now();
          headStages[p.stage] = (headStages[p.stage] ?? 0) + (now - last) / 1000;
          last = now;
        },
      });
      // FLOPs per iteration: f and g forward for the partner (2 x 2 N D^2) and the trained pair
      // (forward 2 x 2 N D^2, backward 3 x 2 N D^2), Gram products (partner and trained 2 x 2 N^2 D,
      // the fused loss's gradient 2 N^2 D); the contextual similarity is N k^2 since issue 21
      // (bench/knn_int8.mjs compares it with the dense formulation).
      const n = HEAD_DEFAULTS.batch;
      const D = 1024;
      const gflop = (14 * n * D * D + 6 * n * n * D) / 1e9;
      out.head = { batch: n, iterations, ms_per_iteration: (headStages.head * 1000) / iterations, gflop_per_iteration: gflop };
      out.head.gflops = gflop / (out.head.ms_per_iteration / 1000);
      out.head.share_of_gemm = out.head.gflops / out.gemm_gflops;
      log(`head training: ${out.head.ms_per_iteration.toFixed(0)} ms/iteration at N=${n} (${gflop.toFixed(1)} GFLOP, ${out.head.gflops.toFixed(1)} GFLOP/s, ${pct(out.head.share_of_gemm)} of GEMM)`);
    }
  }

  // C concurrent callers, each scoring the next PNG buffer from a shared list as soon as its
  // previous call returns. Returns images/s and the mean native batch.
  async function drive(engines, callers) {
    let next = 0;
    const before = engines.map((e) => e.info.batching);
    const t0 = performance.now();
    await Promise.all(Array.from({ length: callers }, async (_, c) => {
      const e = engines[c % engines.length];
      while (next < scoreBuffers.length) await e.score(scoreBuffers[next++]);
    }));
    const seconds = (performance.now() - t0) / 1000;
    const calls = engines.reduce((s, e, i) => s + e.info.batching.calls - before[i].calls, 0);
    const batches = engines.reduce((s, e, i) => s + e.info.batching.batches - before[i].batches, 0);
    return { images_per_second: scoreBuffers.length / seconds, mean_batch: calls / batches };
  }

  if (want('throughput') && modelFile) {
    // The same model with and without batching, interleaved, at 1, 4 and 16 callers.
    const engines = { batched: await Engine.load(modelFile), unbatched: await Engine.load(modelFile, { batching: false }) };
    out.throughput = [];
    for (const callers of [1, 4, 16]) {
      const row = { callers };
      for (const mode of ['unbatched', 'batched']) row[mode] = await drive([engines[mode]], callers);
      row.speedup = row.batched.images_per_second / row.unbatched.images_per_second;
      out.throughput.push(row);
      log(`throughput, ${callers} callers: ${row.unbatched.images_per_second.toFixed(2)} images/s unbatched, ${row.batched.images_per_second.toFixed(2)} batched (mean batch ${row.batched.mean_batch.toFixed(1)}): x${row.speedup.toFixed(2)}`);
    }
  }

  if (want('threads') && modelFile) {
    // Intra-op threads x engines (each engine's calls run on their own libuv worker): one engine
    // with 1 or `cores` threads, `cores` engines with 1 thread each (no oversubscription), and
    // `cores` engines with `cores` threads each (oversubscribed), 8 callers throughout.
    out.threads = [];
    const configs = [[1, 1], [1, cores], [cores, 1], [cores, cores]];
    for (const [count, threads] of configs) {
      const engines = [];
      for (let i = 0; i < count; i++) engines.push(await Engine.load(modelFile, { threads }));
      const r = await drive(engines, 8);
      out.threads.push({ engines: count, threads, images_per_second: r.images_per_second });
      log(`${count} engine(s) x ${threads} thread(s), 8 callers: ${r.images_per_second.toFixed(2)} images/s`);
    }
  }
  if (modelFile) rmSync(modelFile, { force: true });

  if (want('magnetic_tile') && full) {
    // Fit memory: each fit in its own process so that its peak RSS is its own. The largest set
    // (magnetic_tile, 762 images x 784 = 597k patches) with float32 and float16 staging at a 1%
    // coreset (the staged features, what the memory target is about, are the same at any ratio);
    // metal_plate at the default 10%; with --full=all also magnetic_tile at 10%.
    out.fit_memory = [];
    const runs = [['magnetic_tile', 'float32', '0.01'], ['magnetic_tile', 'float16', '0.01'], ['metal_plate', 'float32', '0.1']];
    if (args.includes('--full=all')) runs.push(['magnetic_tile', 'float32', '0.1']);
    for (const [dataset, precision, ratio] of runs) {
      const r = JSON.parse(execFileSync(process.execPath, [path.join(root, 'bench/fit_memory.mjs'), dataset, precision, ratio], { encoding: 'utf8', maxBuffer: 1 << 24 }));
      out.fit_memory.push(r);
      log(`${dataset} fit (${precision} staging, ${ratio} coreset): ${r.fit_seconds.toFixed(0)} s, peak RSS ${r.peak_rss_mb} MB = ${r.peak_over_bank.toFixed(2)} x the float32 patch bank (${r.bank_mb} MB); image AUROC ${r.image_auroc.toFixed(4)}; score ${r.score_ms_per_image.toFixed(0)} ms/image`);
    }
  }
}
out.peak_rss_mb = Math.round(process.resourceUsage().maxRSS / 1024);
if (json) console.log(JSON.stringify(out, null, 1));
