// ReConPatch head: similarities, loss and gradient against independent float64 computations on
// tiny inputs; the EMA step; identity init reproduces PatchCore; training through the engine.
import { rmSync } from 'node:fs';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/index.js';
import { native } from '../lib/native.js';
import { syntheticDataset, tempDir } from './support/data.js';

type Mat = number[][];
const arr = (m: Mat) => ({ data: new Float32Array(m.flat()), shape: [m.length, m[0].length] });
const toMat = (a: { data: Float32Array; shape: number[] }): Mat =>
  Array.from({ length: a.shape[0] }, (_, i) => Array.from(a.data.subarray(i * a.shape[1], (i + 1) * a.shape[1])));
const d2 = (z: Mat) => z.map((a) => z.map((b) => a.reduce((s, x, k) => s + (x - b[k]) ** 2, 0)));
const matmul = (a: Mat, b: Mat) => a.map((r) => b[0].map((_, j) => r.reduce((s, x, k) => s + x * b[k][j], 0)));
const T = (a: Mat) => a[0].map((_, j) => a.map((r) => r[j]));

// Independent k-NN sets: self first, then by distance (ties by index).
function knnRef(d: Mat, k: number): Mat {
  return d.map((row, i) => {
    const order = row.map((v, j) => [j === i ? -1 : v, j]).sort((a, b) => a[0] - b[0] || a[1] - b[1]).slice(0, k).map((x) => x[1]);
    return row.map((_, j) => (order.includes(j) ? 1 : 0));
  });
}

function contextualRef(d: Mat, k: number): Mat {
  const A = knnRef(d, k);
  const wt = matmul(A, T(A)).map((r, i) => r.map((v, j) => (v / k) * A[i][j]));
  const Ah = knnRef(d, Math.max(1, Math.floor(k / 2)));
  const R = Ah.map((r, i) => r.map((v, j) => v * Ah[j][i]));
  const rw = matmul(R, wt).map((r, i) => r.map((v) => v / R[i].reduce((s, x) => s + x, 0)));
  return rw.map((r, i) => r.map((v, j) => (v + rw[j][i]) / 2));
}

function lossRef(z: Mat, w: Mat, m: number): number {
  const dist = d2(z).map((r) => r.map((v) => Math.sqrt(Math.max(v, 0) + 1e-9)));
  let total = 0;
  for (let i = 0; i < z.length; i++) {
    const mean = dist[i].reduce((s, x) => s + x, 0) / z.length;
    for (let j = 0; j < z.length; j++) {
      const delta = dist[i][j] / mean;
      total += w[i][j] * delta ** 2 + (1 - w[i][j]) * Math.max(m - delta, 0) ** 2;
    }
  }
  return total / z.length;
}

function randomMat(n: number, d: number, seed: number): Mat {
  let s = seed;
  const r = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  return Array.from({ length: n }, () => Array.from({ length: d }, r));
}

describe('ReConPatch head pieces', () => {
  it('builds k-NN sets that always contain the point itself, also for duplicates', () => {
    const z = [[0], [0], [0], [5], [5.5]];
    const { knn } = native().internals.headSimilarities(arr(z), 2, 1);
    const A = toMat(knn);
    for (let i = 0; i < 5; i++) {
      expect(A[i][i]).toBe(1);
      expect(A[i].reduce((s, x) => s + x, 0)).toBe(2);
    }
    expect(A[3]).toEqual([0, 0, 0, 1, 1]);
  });

  it('computes contextual and pairwise similarity as the float64 reference', () => {
    const z = randomMat(12, 3, 7);
    const { contextual, pairwise } = native().internals.headSimilarities(arr(z), 4, 2);
    const wc = contextualRef(d2(z), 4);
    const got = toMat(contextual);
    for (let i = 0; i < 12; i++) for (let j = 0; j < 12; j++) expect(got[i][j]).toBeCloseTo(wc[i][j], 5);
    const wp = toMat(pairwise);
    const dd = d2(z);
    for (let i = 0; i < 12; i++) for (let j = 0; j < 12; j++) expect(wp[i][j]).toBeCloseTo(Math.exp(-dd[i][j] / 2), 5);
    // Symmetric, in [0, 1].
    for (let i = 0; i < 12; i++) for (let j = 0; j < 12; j++) expect(got[i][j]).toBeCloseTo(got[j][i], 6);
  });

  it('computes the relaxed contrastive loss and its gradient (central differences in float64)', () => {
    const z = randomMat(8, 3, 11);
    const w = contextualRef(d2(z), 3).map((r, i) => r.map((v, j) => 0.5 * v + 0.5 * Math.exp(-d2(z)[i][j])));
    const { loss, grad } = native().internals.headLoss(arr(z), arr(w), 1);
    expect(loss).toBeCloseTo(lossRef(z, w, 1), 4);
    const g = toMat(grad);
    const h = 1e-6;
    for (let i = 0; i < 8; i++)
      for (let k = 0; k < 3; k++) {
        const up = z.map((r) => [...r]);
        const dn = z.map((r) => [...r]);
        up[i][k] += h;
        dn[i][k] -= h;
        const numeric = (lossRef(up, w, 1) - lossRef(dn, w, 1)) / (2 * h);
        expect(Math.abs(g[i][k] - numeric)).toBeLessThan(2e-3 * Math.max(1, Math.abs(numeric)));
      }
  });

  it('never produces NaN for duplicate patches (sqrt guard)', () => {
    const z = [[1, 2], [1, 2], [1, 2], [3, 4]];
    const w = z.map(() => z.map(() => 0.5));
    const { loss, grad } = native().internals.headLoss(arr(z), arr(w), 1);
    expect(Number.isFinite(loss)).toBe(true);
    expect(Array.from(grad.data).every(Number.isFinite)).toBe(true);
  });

  it('updates the partner by EMA', () => {
    const out = native().internals.emaStep(arr([[1, 2]]), arr([[3, 6]]), 0.9);
    expect(out.data[0]).toBeCloseTo(0.9 * 1 + 0.1 * 3, 6);
    expect(out.data[1]).toBeCloseTo(0.9 * 2 + 0.1 * 6, 6);
  });
});

describe('ReConPatch head in the engine', () => {
  const dir = tempDir('head');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const base = { backbone: 'random_cnn', resize: null, crop: null, coreset: { ratio: 0.25 }, seed: 5 } as const;

  it('with zero iterations and identity init reproduces PatchCore exactly', async () => {
    const data = await syntheticDataset();
    const plain = await Engine.create(base);
    const head = await Engine.create({ ...base, head: { iterations: 0 } });
    await plain.fit(data.train.slice(0, 8));
    await head.fit(data.train.slice(0, 8));
    for (const t of data.test.slice(0, 4)) expect((await head.score(t.path)).score).toBe((await plain.score(t.path)).score);
  });

  it('trains (loss falls), is deterministic, round-trips through a model file, and aborts cleanly', async () => {
    const data = await syntheticDataset();
    const opts = { ...base, head: { iterations: 30, batch: 256, lr: 1e-3 } };
    const losses: number[] = [];
    const a = await Engine.create(opts);
    await a.fit(data.train.slice(0, 8), { onProgress: (p) => p.stage === 'head' && losses.push(p.loss as number) });
    expect(losses).toHaveLength(30);
    expect(losses.every(Number.isFinite)).toBe(true);
    const early = losses.slice(0, 5).reduce((s, x) => s + x, 0);
    const late = losses.slice(-5).reduce((s, x) => s + x, 0);
    expect(late).toBeLessThan(early);

    const b = await Engine.create(opts);
    await b.fit(data.train.slice(0, 8));
    const probe = data.test[data.test.length - 1].path;
    const sa = (await a.score(probe)).score;
    expect((await b.score(probe)).score).toBe(sa);
    const plain = await Engine.create(base);
    await plain.fit(data.train.slice(0, 8));
    expect((await plain.score(probe)).score).not.toBe(sa); // the head changed the features

    const file = path.join(dir, 'head.rcp');
    await a.save(file);
    const loaded = await Engine.load(file);
    expect(loaded.options.head).toBe(true);
    expect((await loaded.score(probe)).score).toBe(sa);

    const ctrl = new AbortController();
    const err = await a.fit(data.train.slice(0, 8), { signal: ctrl.signal, onProgress: (p) => p.stage === 'head' && p.done === 3 && ctrl.abort() }).catch((e) => e);
    expect(err.code).toBe('ERR_ABORTED');
    expect((await a.score(probe)).score).toBe(sa); // previous model kept
  });
});
