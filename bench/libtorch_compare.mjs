#!/usr/bin/env node
// Which libtorch is faster on this machine: bench/run.mjs (GEMM and read-bandwidth ceilings,
// k-NN, backbone, coreset, head iteration, metal_plate fit and score) against each libtorch in
// its own process, alternated over --rounds rounds (A B A B ...) so that drift of a shared machine
// falls on both, then the best of the rounds side by side.
//   node bench/libtorch_compare.mjs [--libtorch <dir>]... [--rounds 2] [--json <out.json>]
// Default libtorches: Debian's 1.13 (the system package) and the PyTorch 2.13 CPU wheel assembled
// by `npx reconpatch libtorch --variant cpu` in the cache. Each needs its addon build
// (npm install; node scripts/build-native.mjs --libtorch <dir>).
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { cachedLibtorches, abiTag } = await import(pathToFileURL(path.join(root, 'dist/libtorch/find.js')).href);
const { defaultCacheDir } = await import(pathToFileURL(path.join(root, 'dist/io/weights.js')).href);

const args = process.argv.slice(2);
const opt = (name) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : undefined; };
const rounds = Number(opt('rounds') ?? 2);
const given = args.flatMap((a, i) => (a === '--libtorch' ? [args[i + 1]] : []));
const wheel = cachedLibtorches(defaultCacheDir()).find((t) => abiTag(t) === 'torch2.13-cpu');
const libtorches = given.length
  ? given.map((d) => ({ name: path.basename(d), dir: d }))
  : [{ name: 'debian-1.13', dir: '' }, ...(wheel ? [{ name: `wheel-${wheel.version}-cpu`, dir: path.dirname(path.dirname(wheel.libDir)) }] : [])];
if (libtorches.length < 2) {
  console.error('libtorch_compare: needs two libtorches; assemble the 2.13 CPU wheel with npx reconpatch libtorch --variant cpu --download, or pass --libtorch twice');
  process.exit(1);
}

const runs = Object.fromEntries(libtorches.map((l) => [l.name, []]));
for (let r = 0; r < rounds; r++) {
  for (const l of libtorches) {
    console.error(`round ${r + 1}/${rounds}: ${l.name}`);
    const env = { ...process.env, RECONPATCH_LIBTORCH: l.dir };
    const out = execFileSync(process.execPath, [path.join(root, 'bench/run.mjs'), '--json', '--only=knn,backbone,coreset,metal_plate'],
      { env, encoding: 'utf8', maxBuffer: 1 << 26, stdio: ['ignore', 'pipe', 'inherit'] });
    runs[l.name].push(JSON.parse(out));
  }
}

// Each figure: its best over the rounds (lowest time, highest rate).
const figures = {
  'GEMM fp32 2048^3 (GFLOP/s)': [(o) => o.gemm_gflops, 'max'],
  'read bandwidth (GB/s)': [(o) => o.read_gb_per_second, 'max'],
  'k-NN 784 x 16k x 1024 (ms)': [(o) => o.knn?.find((k) => k.bank_rows === 16000)?.ms, 'min'],
  'k-NN 784 x 60k x 1024 (ms)': [(o) => o.knn?.find((k) => k.bank_rows === 60000)?.ms, 'min'],
  'backbone mobilenet_v1 b1 (ms)': [(o) => o.backbone?.find((b) => b.backbone === 'mobilenet_v1_imagenet' && b.batch === 1)?.ms, 'min'],
  'backbone darknet_tiny b1 (ms)': [(o) => o.backbone?.find((b) => b.backbone === 'darknet_tiny_imagenet' && b.batch === 1)?.ms, 'min'],
  'patch features b1 (ms)': [(o) => o.backbone?.find((b) => b.backbone === 'mobilenet_v1_imagenet' && b.batch === 1)?.patch_features_ms, 'min'],
  'coreset 163k rows at 10% (s)': [(o) => o.coreset?.cases.find((c) => c.ratio === 0.1)?.pruned_bfloat16_seconds, 'min'],
  'head iteration N=1024 (ms)': [(o) => o.head?.ms_per_iteration, 'min'],
  'metal_plate fit, 10% coreset (s)': [(o) => o.metal_plate?.fit_seconds, 'min'],
  'metal_plate score (ms/image)': [(o) => o.metal_plate?.score_ms_per_image, 'min'],
};
const [a, b] = libtorches.map((l) => l.name);
const table = [];
for (const [name, [get, best]] of Object.entries(figures)) {
  const pick = (n) => { const xs = runs[n].map(get).filter((x) => typeof x === 'number'); return xs.length ? Math[best](...xs) : undefined; };
  const va = pick(a), vb = pick(b);
  // "b faster by" as a factor > 1 when b is better, whichever way the figure points.
  const factor = va !== undefined && vb !== undefined ? (best === 'min' ? va / vb : vb / va) : undefined;
  table.push({ figure: name, [a]: va, [b]: vb, [`${b} faster by`]: factor });
}
const fmt = (x) => (x === undefined ? '-' : x >= 100 ? x.toFixed(0) : x.toFixed(2));
console.log(`| figure | ${a} | ${b} | ${b} faster by |\n|---|---|---|---|`);
for (const row of table) console.log(`| ${row.figure} | ${fmt(row[a])} | ${fmt(row[b])} | ${row[`${b} faster by`] === undefined ? '-' : `x${row[`${b} faster by`].toFixed(2)}`} |`);
const jsonOut = opt('json');
if (jsonOut) writeFileSync(jsonOut, JSON.stringify({ date: new Date().toISOString(), rounds, libtorches, table, runs }, null, 1));
