// The int8 nearest-neighbour search (issue 21) against the float32 GEMM it replaces: the same
// bank row, or on ties within float32 rounding an equally near one, on random and real features
// and on near-ties built to defeat the int8 approximation; the switch back to float32.
import './support/test_addon.js'; // internals: the test addon (first, before any native() call)
import { afterAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/index.js';
import { nativeInternals } from '../lib/native.js';
import { SHARED_ABSENT, hasShared, sharedBackbones, sharedDatasets, syntheticDataset } from './support/data.js';

type Arr = { data: Float32Array; shape: number[] };
const internals = nativeInternals();
const { supported } = internals.knnInt8();
const NO_VNNI = 'this CPU has no AVX-512 VNNI: the int8 path is off and k-NN is float32 (tested in knn.test.ts)';

function rng(seed: number) {
  let s = seed >>> 0;
  const uniform = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  const normal = () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  return { uniform, normal };
}

function rows(n: number, d: number, value: () => number): Arr {
  return { data: Float32Array.from({ length: n * d }, value), shape: [n, d] };
}

/**
 * The same distances up to float32 rounding of |q|^2 + |b|^2 - 2 q.b, whose terms are about `scale`
 * (the int8 path re-scores with its own dot product, in another summation order).
 */
function expectCloseDistances(a: { data: Float32Array }, b: { data: Float32Array }, scale: number): void {
  expect(a.data.length).toBe(b.data.length);
  for (let i = 0; i < a.data.length; i++) expect(Math.abs(a.data[i] - b.data[i])).toBeLessThanOrEqual(1e-5 * scale);
}

function dist64(a: Arr, i: number, b: Arr, j: number): { d: number; scale: number } {
  const D = a.shape[1];
  let d = 0;
  let na = 0;
  let nb = 0;
  for (let k = 0; k < D; k++) {
    const x = a.data[i * D + k];
    const y = b.data[j * D + k];
    d += (x - y) ** 2;
    na += x * x;
    nb += y * y;
  }
  return { d, scale: na + nb };
}

/** int8 vs float32 answers: the same row, or rows whose exact distances differ by float32 rounding. */
function expectSameNearest(bank: Arr, queries: Arr) {
  const f = internals.knn(bank, queries, 1, 'float32');
  const q = internals.knn(bank, queries, 1, 'int8');
  let differ = 0;
  for (let i = 0; i < queries.shape[0]; i++) {
    const a = dist64(queries, i, bank, f.indices[i]);
    if (q.indices[i] !== f.indices[i]) {
      differ++;
      const b = dist64(queries, i, bank, q.indices[i]);
      expect(Math.abs(b.d - a.d)).toBeLessThanOrEqual(1e-5 * a.scale);
    }
    expect(Math.abs(q.distances.data[i] - f.distances.data[i])).toBeLessThanOrEqual(1e-5 * a.scale);
  }
  return differ;
}

describe.skipIf(!supported)(`int8 k-NN with float32 re-scoring (${supported ? 'VNNI present' : NO_VNNI})`, () => {
  afterAll(() => internals.knnInt8(true));

  it('finds the float32 search\'s row on random data of awkward shapes', () => {
    const r = rng(1);
    // [bank rows, queries, dim]: partial 48-row tiles, partial 8-query groups, dim not a multiple of 4.
    for (const [n, m, d] of [[1000, 100, 1024], [517, 33, 37], [49, 9, 3], [1, 5, 8], [100, 17, 1]]) {
      for (const value of [r.normal, r.uniform]) expect(expectSameNearest(rows(n, d, value), rows(m, d, value))).toBe(0);
      // Rows 1e-4 apart around 100: every distance is within float32 rounding of the others, so
      // any row is an answer (distances within rounding); most queries go to the GEMM.
      const offset = () => 100 + 0.01 * r.normal();
      expectSameNearest(rows(n, d, offset), rows(m, d, offset));
    }
  });

  it('resolves near-ties far inside the int8 error (spiky rows, squared distances 3 apart, errors ~5)', () => {
    // 20 queries, each with its own spike (50 in one dimension, so quantisation steps are coarse)
    // and 30 bank rows on shells of squared radius 100 + 3 rank around it, ranks shuffled; 400
    // far rows with spikes elsewhere. The int8 estimate errs by ~5 (its bound by ~90), more than
    // the gaps, which float32 resolves easily: only the bound and the re-scoring find the nearest.
    const r = rng(2);
    const D = 256;
    const Q = 20;
    const near = 30;
    const q = rows(Q, D, r.normal);
    const n = Q * near + 400;
    const bank = new Float32Array(n * D);
    const nearest: number[] = [];
    for (let t = 0; t < Q; t++) {
      q.data[t * D + 7 * t] += 50;
      const ranks = Array.from({ length: near }, (_, i) => i).sort(() => r.uniform() - 0.5);
      nearest.push(t * near + ranks.indexOf(0));
      for (let j = 0; j < near; j++) {
        const v = Array.from({ length: D }, r.normal);
        const norm = Math.hypot(...v);
        const radius = Math.sqrt(100 + 3 * ranks[j]);
        for (let k = 0; k < D; k++) bank[(t * near + j) * D + k] = q.data[t * D + k] + (radius * v[k]) / norm;
      }
    }
    for (let j = Q * near; j < n; j++) {
      for (let k = 0; k < D; k++) bank[j * D + k] = r.normal();
      bank[j * D + Math.floor(r.uniform() * D)] += 50;
    }
    const b = { data: bank, shape: [n, D] };
    expect(internals.knn(b, q, 1, 'float32').indices).toEqual(nearest);
    expect(internals.knn(b, q, 1, 'int8').indices).toEqual(nearest);
    const c = internals.knnCompare(b, q, 0, 0, 0, 1, 1);
    expect(c.rescoredPerQuery).toBeGreaterThan(2); // the int8 pass alone could not tell them apart
    expect(c.fallbackQueries).toBe(0);
  });

  it('leaves a row range out on either kernel (leave-one-image-out calibration searches): never an excluded row, the float32 answer', () => {
    const r = rng(5);
    const bank = rows(1500, 64, r.normal);
    // Queries next to rows 500..599: with those rows left out, their nearest is elsewhere.
    const q = { data: bank.data.slice(500 * 64, 600 * 64).map((x) => x + 1e-2 * r.normal()), shape: [100, 64] };
    const f = internals.knn(bank, q, 1, 'float32', 500, 600);
    const i8 = internals.knn(bank, q, 1, 'int8', 500, 600);
    for (const j of [...f.indices, ...i8.indices]) expect(j < 500 || j >= 600).toBe(true);
    expect(i8.indices).toEqual(f.indices);
    expectCloseDistances(i8.distances, f.distances, 2 * 64); // rows of 64 standard normals: |x|^2 ~ 64
    // The int8 pass itself left the rows out (issue 28): no query went back to the float32 GEMM.
    expect([f.int8Queries, i8.int8Queries]).toEqual([0, supported ? 100 : 0]);
    // Ranges that cut kernel panels (16 rows) and tiles anywhere, including the bank's ends.
    for (const [b, e] of [[0, 1], [0, 37], [1, 1500], [7, 9], [1488, 1500], [511, 1025], [600, 500]]) {
      const fx = internals.knn(bank, q, 1, 'float32', b, e);
      const ix = internals.knn(bank, q, 1, 'int8', b, e);
      expect([b, e, ix.indices]).toEqual([b, e, fx.indices]);
      expectCloseDistances(ix.distances, fx.distances, 2 * 64);
    }
    expect(internals.knn(bank, q, 1, 'int8').indices).toEqual(Array.from({ length: 100 }, (_, k) => 500 + k)); // without: themselves
  });

  it('gives exact duplicates to the lowest row, as the float32 search does', () => {
    const r = rng(3);
    const bank = rows(300, 64, r.normal);
    for (const j of [40, 41, 200]) bank.data.copyWithin(j * 64, 7 * 64, 8 * 64); // rows 7, 40, 41, 200 equal
    const q = { data: bank.data.slice(40 * 64, 41 * 64).map((x) => x + 1e-3), shape: [1, 64] };
    expect(internals.knn(bank, q, 1, 'int8').indices).toEqual([7]);
    expect(internals.knn(bank, q, 1, 'float32').indices).toEqual([7]);
  });

  it('hands queries with every row about equally near to the float32 GEMM, with its result', () => {
    const r = rng(4);
    const D = 128;
    const q = rows(8, D, r.normal);
    const n = 2000;
    const bank = new Float32Array(n * D);
    for (let j = 0; j < n; j++) {
      const v = Array.from({ length: D }, r.normal);
      const norm = Math.hypot(...v);
      for (let k = 0; k < D; k++) bank[j * D + k] = q.data[k] + (5 * v[k]) / norm; // all at distance 5 from query 0
    }
    const b = { data: bank, shape: [n, D] };
    const c = internals.knnCompare(b, q, 0, 0, 0, 1, 1);
    expect(c.fallbackQueries).toBeGreaterThanOrEqual(1);
    // Query 0's answer is any of 2000 rows tied in reals: a GEMM over fewer rows may round to
    // another one, so the check is on distances.
    expectSameNearest(b, q);
  });

  it('leaves non-finite queries to the float32 path, with its result', () => {
    const r = rng(5);
    const bank = rows(100, 16, r.normal);
    const q = rows(3, 16, r.normal);
    q.data[16 + 3] = Number.NaN;
    const f = internals.knn(bank, q, 1, 'float32');
    const g = internals.knn(bank, q, 1, 'int8');
    expect(g.indices).toEqual(f.indices);
    expect(Number.isNaN(g.distances.data[1])).toBe(Number.isNaN(f.distances.data[1]));
  });

  it('is switched off process-wide (the float32 fallback), and back on', () => {
    const r = rng(6);
    const bank = rows(500, 96, r.normal);
    const q = rows(20, 96, r.normal);
    expect(internals.knnInt8(false)).toEqual({ supported: true, enabled: false });
    const off = internals.knn(bank, q, 1, 'auto');
    const f = internals.knn(bank, q, 1, 'float32');
    expect(off.indices).toEqual(f.indices);
    expect(Array.from(off.distances.data)).toEqual(Array.from(f.distances.data)); // the very same path
    expect(internals.knnInt8(true)).toEqual({ supported: true, enabled: true });
    expect(internals.knn(bank, q, 1, 'auto').indices).toEqual(f.indices);
  });

  it('scores images as the float32 path does (engine, Eq. 7 reweighting included)', async () => {
    const data = await syntheticDataset();
    for (const reweight of [false, true]) {
      const engine = await Engine.create({ head: false, backbone: 'random_cnn', resize: null, crop: null, coreset: { ratio: 0.25 }, seed: 3, scoring: { reweight } });
      await engine.fit(data.train.slice(0, 8));
      const images = data.test.slice(0, 6).map((t) => t.path);
      const int8 = await engine.scoreMany(images);
      internals.knnInt8(false);
      const f32 = await engine.scoreMany(images);
      internals.knnInt8(true);
      for (let i = 0; i < images.length; i++) {
        expect(Math.abs(int8[i].score - f32[i].score)).toBeLessThanOrEqual(1e-5 * f32[i].score);
        let worst = 0;
        for (let p = 0; p < f32[i].map.length; p++) worst = Math.max(worst, Math.abs(int8[i].map[p] - f32[i].map[p]));
        expect(worst).toBeLessThanOrEqual(1e-4 * f32[i].score);
      }
    }
  });
});

describe.skipIf(!supported || !hasShared)(`int8 k-NN on real features (${!hasShared ? SHARED_ABSENT : supported ? 'present' : NO_VNNI})`, () => {
  it.each(['metal_plate', 'magnetic_tile'])('finds the float32 rows for real %s patch features, re-scoring a small share', async (category) => {
    const { readMvtecDataset } = await import('../lib/eval/dataset.js');
    const data = await readMvtecDataset(sharedDatasets, category);
    const engine = await Engine.create({ head: false, backbone: `${sharedBackbones}/mobilenet_v1_imagenet.pt`, resizeMode: 'squash', resize: 256, crop: 224 });
    const embed = async (paths: string[]): Promise<Arr> => {
      const parts = [];
      for (const p of paths) parts.push((await engine.embed(p)).data);
      const all = new Float32Array(parts.reduce((s, x) => s + x.length, 0));
      let o = 0;
      for (const x of parts) (all.set(x, o), (o += x.length));
      return { data: all, shape: [all.length / 1024, 1024] };
    };
    const bank = await embed(data.train.slice(0, 4));
    const defective = data.test.filter((t) => t.label === 1).slice(0, 1);
    const queries = await embed([data.test[0].path, ...defective.map((t) => t.path)]);
    expect(expectSameNearest(bank, queries)).toBeLessThanOrEqual(1);
    const c = internals.knnCompare(bank, queries, 0, 0, 0, 1, 1);
    expect(c.int8).toBe(true);
    expect(c.fallbackQueries).toBe(0);
    expect(c.rescoredPerQuery / bank.shape[0]).toBeLessThan(0.02);
  });
});
