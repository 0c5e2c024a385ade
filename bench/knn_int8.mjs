#!/usr/bin/env node
// Issue 21 side by side in one run: exact k-NN through the float32 GEMM vs the int8 VNNI pass with
// float32 re-scoring (seeded random rows, and real features at 5k / 16k / 60k bank rows), per-image
// scoring of metal_plate and magnetic_tile with each, the PatchCore reference on metal_plate beside
// them, and the ReConPatch head's iteration in the dense/autograd vs the sparse/fused formulation.
//   node bench/knn_int8.mjs [--json] [--only=knn,real,score,reference,head] [--full] [--threads=N]
// --full also scores magnetic_tile with a 10% coreset bank (59,740 rows; its fit takes ~5 minutes).
// --threads: intra-op threads for the k-NN and head figures (default: all cores).
// Needs a build; ../shared for the real-feature, scoring and reference sections; the reference
// needs the Debian packages ../shared/peer/README.md lists (it says so and is skipped without them).
import { spawnSync } from 'node:child_process';
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
const full = args.includes('--full');
const only = args.find((a) => a.startsWith('--only='))?.slice(7).split(',');
const want = (section) => !only || only.includes(section);
const log = (...a) => (json ? console.error : console.log)(...a);
const internals = native().internals;
const shared = path.resolve(root, '../shared');
const mobilenet = path.join(shared, 'backbones/mobilenet_v1_imagenet.pt');
const hasShared = existsSync(path.join(shared, 'datasets/metal_plate')) && existsSync(mobilenet);
const ls = (d) => readdirSync(d).sort().map((f) => path.join(d, f));
const trainOf = (name) => ls(path.join(shared, 'datasets', name, 'train/good'));
const testOf = (name) => readdirSync(path.join(shared, 'datasets', name, 'test')).sort().flatMap((d) => ls(path.join(shared, 'datasets', name, 'test', d)));
const cores = Number(args.find((a) => a.startsWith('--threads='))?.slice(10) ?? os.availableParallelism());
const D = 1024;
const L = 784; // patches (queries) per 224-px image

const out = { date: new Date().toISOString(), machine: { cores, cpu: os.cpus()[0]?.model, load_average: os.loadavg() }, knn_int8: internals.knnInt8() };
out.gemm_gflops = internals.gemmGflops(2048, 5, cores);
out.gemm_1024_gflops = internals.gemmGflops(1024, 5, cores);
log(`GEMM fp32: ${out.gemm_gflops.toFixed(1)} GFLOP/s at 2048^3, ${out.gemm_1024_gflops.toFixed(1)} at 1024^3; int8 k-NN ${out.knn_int8.supported ? 'supported (AVX-512 VNNI)' : 'NOT supported here: both columns are float32'}`);

// One float32-vs-int8 comparison as a row: FLOPs counted as float32 multiply-adds (2 per pair and
// dimension), so the int8 column is a "GFLOP/s equivalent".
function knnRow(c, label) {
  const gflop = (2 * c.queries * c.bankRows * D) / 1e9;
  const row = {
    data: label, bank_rows: c.bankRows, queries: c.queries, gflop,
    float32_ms: c.float32Ms, int8_ms: c.int8Ms, speedup: c.float32Ms / c.int8Ms,
    float32_ms_per_image: (c.float32Ms * L) / c.queries, int8_ms_per_image: (c.int8Ms * L) / c.queries,
    float32_gflops: gflop / (c.float32Ms / 1000), int8_gflops_equivalent: gflop / (c.int8Ms / 1000),
    rescored_rows_per_query: c.rescoredPerQuery, rescored_share: c.rescoredPerQuery / c.bankRows,
    fallback_queries: c.fallbackQueries, same_index: c.sameIndex, max_relative_gap: c.maxRelativeGap,
  };
  row.float32_share_of_gemm = row.float32_gflops / out.gemm_gflops;
  log(`k-NN ${label} ${c.queries} x ${c.bankRows}: float32 ${row.float32_ms_per_image.toFixed(1)} ms/image (${row.float32_gflops.toFixed(0)} GFLOP/s), int8 ${row.int8_ms_per_image.toFixed(1)} ms/image (${row.int8_gflops_equivalent.toFixed(0)} GFLOP/s eq.): x${row.speedup.toFixed(2)}; re-scored ${c.rescoredPerQuery.toFixed(1)} rows/query (${(100 * row.rescored_share).toFixed(3)}%), ${c.fallbackQueries} queries to the GEMM, same row for ${c.sameIndex}/${c.queries}, max relative distance gap ${c.maxRelativeGap.toExponential(1)}`);
  return row;
}

if (want('knn')) {
  out.knn = [];
  for (const rows of [5000, 16000, 60000]) out.knn.push(knnRow(internals.knnCompare(null, null, rows, L, D, 5, cores), 'random'));
}

// The bank stored in a model file (its BANK section: see native/core/io/model_file.h).
function readBank(file) {
  const buf = readFileSync(file);
  let off = 16;
  for (let s = 0, count = buf.readUInt32LE(12); s < count; s++) {
    const tag = buf.toString('latin1', off, off + 4);
    const len = Number(buf.readBigUInt64LE(off + 4));
    if (tag === 'BANK') {
      const nd = buf[off + 13];
      const dims = Array.from({ length: nd }, (_, i) => Number(buf.readBigInt64LE(off + 14 + 8 * i)));
      const start = off + 14 + 8 * nd;
      return { data: new Float32Array(buf.buffer.slice(buf.byteOffset + start, buf.byteOffset + start + dims[0] * dims[1] * 4)), shape: dims };
    }
    off += 12 + len;
  }
  throw new Error(`no BANK in ${file}`);
}

async function embedRows(engine, files, rows) {
  const parts = [];
  let n = 0;
  for (const f of files) {
    if (n >= rows) break;
    const e = await engine.embed(f);
    parts.push(e.data);
    n += e.rows;
  }
  const all = new Float32Array(n * D);
  parts.reduce((o, p) => (all.set(p, o), o + p.length), 0);
  return { data: all.subarray(0, Math.min(n, rows) * D), shape: [Math.min(n, rows), D] };
}

// Per-image scoring with the int8 path on and off, alternating image by image on one engine.
async function scoreBoth(engine, images) {
  const ms = { int8: 0, float32: 0 };
  let worst = 0;
  for (const img of images) {
    const buf = readFileSync(img);
    internals.knnInt8(false);
    let t = performance.now();
    const a = await engine.score(buf);
    ms.float32 += performance.now() - t;
    internals.knnInt8(true);
    t = performance.now();
    const b = await engine.score(buf);
    ms.int8 += performance.now() - t;
    worst = Math.max(worst, Math.abs(a.score - b.score) / a.score);
  }
  return { float32_ms_per_image: ms.float32 / images.length, int8_ms_per_image: ms.int8 / images.length, max_relative_score_gap: worst };
}

if (!hasShared) {
  log(`../shared is absent (${shared}): real-feature, scoring, reference and head-fit figures skipped`);
  out.skipped = '../shared absent';
} else {
  const engineOf = (ratio) => Engine.create({ head: false, backbone: mobilenet, resizeMode: 'squash', resize: 256, crop: 224, coreset: { ratio }, calibration: false });
  const fits = {};
  const fitModel = async (category, ratio) => {
    const key = `${category}@${ratio}`;
    if (!fits[key]) {
      const engine = await engineOf(ratio);
      const fit = await engine.fit(trainOf(category));
      const file = path.join(os.tmpdir(), `reconpatch-knn-int8-${process.pid}-${category}-${ratio}.rcp`);
      await engine.save(file);
      fits[key] = { engine, fit, file };
      log(`fit ${category} at ${ratio}: ${fit.bankRows} bank rows in ${fit.seconds.toFixed(1)} s`);
    }
    return fits[key];
  };

  if (want('real')) {
    // Real features: the metal_plate coreset bank (10%) and magnetic_tile patch features of the
    // first training images (16k and 60k rows), against the patches of two test images.
    out.knn_real = [];
    const mp = await fitModel('metal_plate', 0.1);
    const mpQueries = await embedRows(mp.engine, [testOf('metal_plate')[0], testOf('metal_plate').at(-1)], 2 * L);
    out.knn_real.push(knnRow(internals.knnCompare(readBank(mp.file), mpQueries, 0, 0, 0, 5, cores), 'metal_plate coreset'));
    const tiles = trainOf('magnetic_tile');
    const mtQueries = await embedRows(mp.engine, [testOf('magnetic_tile')[0], testOf('magnetic_tile').at(-1)], 2 * L);
    for (const rows of [16000, 60000]) {
      const bank = await embedRows(mp.engine, tiles, rows);
      out.knn_real.push(knnRow(internals.knnCompare(bank, mtQueries, 0, 0, 0, 5, cores), 'magnetic_tile patches'));
    }
  }

  if (want('score')) {
    // Whole score() calls (PNG decode to the map at the original size), int8 vs float32 k-NN.
    out.score = [];
    const cases = [['metal_plate', 0.1], ['magnetic_tile', 0.01]];
    if (full) cases.push(['magnetic_tile', 0.1]);
    for (const [category, ratio] of cases) {
      const { engine, fit } = await fitModel(category, ratio);
      const images = testOf(category).filter((_, i, all) => i % Math.max(1, Math.floor(all.length / 24)) === 0).slice(0, 24);
      await engine.score(images[0]); // warm-up
      const r = { category, coreset: ratio, bank_rows: fit.bankRows, images: images.length, ...(await scoreBoth(engine, images)) };
      r.speedup = r.float32_ms_per_image / r.int8_ms_per_image;
      r.knn_gflop_per_image = (2 * L * fit.bankRows * D) / 1e9;
      out.score.push(r);
      log(`score ${category} (${fit.bankRows} rows): float32 ${r.float32_ms_per_image.toFixed(1)} ms/image, int8 ${r.int8_ms_per_image.toFixed(1)} ms/image: x${r.speedup.toFixed(2)} (scores within ${r.max_relative_score_gap.toExponential(1)})`);
    }
  }

  if (want('reference')) {
    // The PatchCore reference (../shared/peer) on metal_plate at 10%, in a child process, now.
    const script = path.join(shared, 'peer/run_patchcore.py');
    const py = spawnSync('/usr/bin/python3', [script, '--root', path.join(shared, 'datasets'), '--category', 'metal_plate',
      '--backbone', 'mobilenet_v1_imagenet', '--no-head', '--coreset', '0.1', '--threads', String(cores)], { encoding: 'utf8', maxBuffer: 1 << 24 });
    const line = py.stdout?.trim().split('\n').filter((l) => l.startsWith('{')).at(-1);
    if (py.status !== 0 || !line) {
      out.reference = { error: `the reference did not run: ${(py.stderr || py.error?.message || '').trim().split('\n').at(-1)}` };
      log(out.reference.error);
    } else {
      out.reference = JSON.parse(line);
      const ours = out.score?.find((s) => s.category === 'metal_plate');
      const refMs = 1000 * (out.reference.seconds_per_image ?? out.reference.score_seconds_per_image ?? NaN);
      if (ours) out.reference_ratio = { reference_ms_per_image: refMs, ours_int8: refMs / ours.int8_ms_per_image, ours_float32: refMs / ours.float32_ms_per_image };
      log(`PatchCore reference metal_plate 10%: ${line}`);
      if (ours) log(`per-image score vs the reference: int8 x${out.reference_ratio.ours_int8.toFixed(2)}, float32 x${out.reference_ratio.ours_float32.toFixed(2)}`);
    }
  }
  for (const f of Object.values(fits)) rmSync(f.file, { force: true });
}

if (want('head')) {
  // ReConPatch head iterations at N = 1024, D = 1024 on seeded features, each formulation twice,
  // alternating (the best of each). FLOPs: partner f, g forward 4 N D^2; trained forward 4 N D^2
  // and backward 6 N D^2; Gram products: dense/autograd 2 N^2 D (partner) + 2 (trained) + 4
  // (autograd's backward of z z^T) and the contextual 4 N^3, sparse/fused 2 + 2 + 2 and N k^2.
  const N = 1024;
  const iterations = 20;
  const runs = { fused: [], dense: [] };
  for (let r = 0; r < 2; r++)
    for (const mode of ['fused', 'dense']) runs[mode].push(internals.headTraining(N, D, iterations, mode === 'dense', cores));
  const gflop = { dense: (14 * N * D * D + 8 * N * N * D + 4 * N ** 3) / 1e9, fused: (14 * N * D * D + 6 * N * N * D) / 1e9 };
  out.head = {};
  for (const mode of ['dense', 'fused']) {
    const ms = Math.min(...runs[mode].map((x) => x.msPerIteration));
    out.head[mode] = { ms_per_iteration: ms, gflop_per_iteration: gflop[mode], gflops: gflop[mode] / (ms / 1000), share_of_gemm_1024: gflop[mode] / (ms / 1000) / out.gemm_1024_gflops, first_losses: runs[mode][0].losses.slice(0, 3) };
  }
  out.head.speedup = out.head.dense.ms_per_iteration / out.head.fused.ms_per_iteration;
  out.head.max_relative_loss_gap = Math.max(...runs.fused[0].losses.map((x, i) => Math.abs(x - runs.dense[0].losses[i]) / runs.dense[0].losses[i]));
  log(`head N=${N}: dense/autograd ${out.head.dense.ms_per_iteration.toFixed(0)} ms/iteration (${gflop.dense.toFixed(1)} GFLOP), sparse/fused ${out.head.fused.ms_per_iteration.toFixed(0)} ms/iteration (${gflop.fused.toFixed(1)} GFLOP, ${(100 * out.head.fused.share_of_gemm_1024).toFixed(0)}% of the 1024^3 GEMM rate): x${out.head.speedup.toFixed(2)}; losses within ${out.head.max_relative_loss_gap.toExponential(1)} over ${iterations} iterations`);
}
out.load_average_after = os.loadavg();
if (json) console.log(JSON.stringify(out, null, 1));
