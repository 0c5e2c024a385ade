// ReConPatch head: similarities, loss and gradient against independent float64 computations on
// tiny inputs; the pairwise bandwidth rule; the EMA step; identity init reproduces PatchCore;
// training through the engine, reproducible across processes.
import './support/test_addon.js'; // internals: the test addon (first, before any native() call)
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import { afterAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/index.js';
import { nativeInternals } from '../lib/native.js';
import { repoRoot, syntheticDataset, tempDir } from './support/data.js';

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
    const { knn } = nativeInternals().headSimilarities(arr(z), 2, 1);
    const A = toMat(knn);
    for (let i = 0; i < 5; i++) {
      expect(A[i][i]).toBe(1);
      expect(A[i].reduce((s, x) => s + x, 0)).toBe(2);
    }
    expect(A[3]).toEqual([0, 0, 0, 1, 1]);
  });

  it('computes contextual and pairwise similarity as the float64 reference', () => {
    const z = randomMat(12, 3, 7);
    const { contextual, pairwise } = nativeInternals().headSimilarities(arr(z), 4, 2);
    const wc = contextualRef(d2(z), 4);
    const got = toMat(contextual);
    for (let i = 0; i < 12; i++) for (let j = 0; j < 12; j++) expect(got[i][j]).toBeCloseTo(wc[i][j], 5);
    const wp = toMat(pairwise);
    const dd = d2(z);
    for (let i = 0; i < 12; i++) for (let j = 0; j < 12; j++) expect(wp[i][j]).toBeCloseTo(Math.exp(-dd[i][j] / 2), 5);
    // Symmetric, in [0, 1].
    for (let i = 0; i < 12; i++) for (let j = 0; j < 12; j++) expect(got[i][j]).toBeCloseTo(got[j][i], 6);
  });

  it('takes the knn bandwidth from the batch: the mean squared distance to the k-th other point, scale-free (issue 19)', () => {
    const z = randomMat(40, 6, 13);
    for (let r = 0; r < 4; r++) z[30 + r] = [...z[r]]; // a duplicate is a neighbour at distance 0, itself is not
    const k = 5;
    const dd = d2(z);
    const kth = dd.map((row, i) => row.filter((_, j) => j !== i).sort((a, b) => a - b)[k - 1]);
    const expected = kth.reduce((a, b) => a + b, 0) / kth.length;
    const { bandwidth } = nativeInternals().headSimilarities(arr(z), k, 1);
    expect(Math.abs(bandwidth - expected)).toBeLessThan(1e-5 * expected);
    // Scaling the features scales the bandwidth with them, so the pairwise term does not change.
    const scaled = nativeInternals().headSimilarities(arr(z.map((r) => r.map((x) => 10 * x))), k, 100 * bandwidth);
    expect(Math.abs(scaled.bandwidth - 100 * bandwidth)).toBeLessThan(1e-4 * 100 * bandwidth);
    const { pairwise } = nativeInternals().headSimilarities(arr(z), k, bandwidth);
    for (let i = 0; i < scaled.pairwise.data.length; i++) expect(scaled.pairwise.data[i]).toBeCloseTo(pairwise.data[i], 5);
    // A point's k-th neighbour weighs exp(-1) on average (in the log), nearer ones more.
    const wp = toMat(pairwise);
    const logs = dd.map((row, i) => -Math.log(wp[i][row.indexOf(kth[i])]));
    expect(logs.reduce((a, b) => a + b, 0) / logs.length).toBeCloseTo(1, 4);
  });

  it('on raw 1024-d features a fixed sigma = 1 labels no pair, the knn bandwidth labels each point\'s neighbours (issue 19)', () => {
    // Uniform [0, 1) rows like post-ReLU features: squared distances ~170.
    const z = randomMat(64, 1024, 29).map((r) => r.map((x) => (x + 1) / 2));
    const fixed = nativeInternals().headSimilarities(arr(z), 5, 1);
    const knn = nativeInternals().headSimilarities(arr(z), 5, fixed.bandwidth);
    const offDiagonal = (w: { data: Float32Array }) => Array.from(w.data).filter((_, i) => Math.floor(i / 64) !== i % 64);
    expect(Math.max(...offDiagonal(fixed.pairwise))).toBeLessThan(1e-30);
    const wp = toMat(knn.pairwise);
    const nearest = toMat(knn.knn).map((row, i) => row.reduce((s, a, j) => s + (a && j !== i ? wp[i][j] : 0), 0) / 4);
    expect(nearest.reduce((a, b) => a + b, 0) / 64).toBeGreaterThan(0.3);
  });

  it('computes the relaxed contrastive loss and its gradient (central differences in float64)', () => {
    const z = randomMat(8, 3, 11);
    const w = contextualRef(d2(z), 3).map((r, i) => r.map((v, j) => 0.5 * v + 0.5 * Math.exp(-d2(z)[i][j])));
    const { loss, grad } = nativeInternals().headLoss(arr(z), arr(w), 1);
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

  it('computes the contextual similarity from k-NN lists exactly as the dense products do (issue 21)', () => {
    for (const [n, d, k, seed] of [[300, 16, 5, 3], [200, 8, 3, 4], [150, 4, 8, 5]]) {
      const z = randomMat(n, d, seed);
      for (let r = 0; r < 10; r++) z[20 + r] = [...z[r]]; // exact duplicates: self must stay in its own set
      const { contextual, contextualDense } = nativeInternals().headSimilarities(arr(z), k, 1);
      let worst = 0;
      for (let i = 0; i < n * n; i++) worst = Math.max(worst, Math.abs(contextual.data[i] - contextualDense.data[i]));
      expect(worst).toBeLessThanOrEqual(1e-6);
      expect(Array.from(contextual.data).every((v) => v >= 0 && v <= 1)).toBe(true);
    }
  });

  it('the fused loss equals the autograd formulation; its gradient is closer to the float64 gradient (issue 21)', () => {
    const n = 300; // >= 256: z z^T from its upper block triangle
    const d = 12;
    const z = randomMat(n, d, 9).map((r) => r.map(Math.fround)); // the values the addon sees
    for (let r = 0; r < 5; r++) z[50 + r] = [...z[r]]; // duplicates: distances clamped at 0
    const dd = d2(z);
    const w = contextualRef(dd, 5).map((r, i) => r.map((v, j) => Math.fround(0.5 * v + 0.5 * Math.exp(-dd[i][j]))));
    const fused = nativeInternals().headLoss(arr(z), arr(w), 1);
    const reference = nativeInternals().headLoss(arr(z), arr(w), 1, true);
    expect(Math.abs(fused.loss - reference.loss)).toBeLessThanOrEqual(1e-6 * reference.loss);
    expect(fused.loss).toBeCloseTo(lossRef(z, w, 1), 4);
    // float64 gradient of the same loss: dL/dz_a = 2 sum_j (S_aj + S_ja)(z_a - z_j), S = dL/d d2.
    const S = dd.map((row, i) => {
      const dist = row.map((v) => Math.sqrt(v + 1e-9));
      const mu = dist.reduce((a, b) => a + b, 0) / n;
      const g = dist.map((x, j) => {
        const delta = x / mu;
        return (2 * w[i][j] * delta - 2 * (1 - w[i][j]) * Math.max(1 - delta, 0)) / n;
      });
      const t = g.reduce((a, x, j) => a + x * (dist[j] / mu), 0);
      return g.map((x, j) => (x - t / n) / mu / (2 * dist[j]));
    });
    const err = (grad: { data: Float32Array }) => {
      let worst = 0;
      let top = 0;
      for (let a = 0; a < n; a++)
        for (let k = 0; k < d; k++) {
          let v = 0;
          for (let j = 0; j < n; j++) if (j !== a) v += 2 * (S[a][j] + S[j][a]) * (z[a][k] - z[j][k]);
          worst = Math.max(worst, Math.abs(grad.data[a * d + k] - v));
          top = Math.max(top, Math.abs(v));
        }
      return worst / top;
    };
    // Float32 d2 of the duplicates is rounding noise, not 0, which moves their rows' means a little.
    const fusedErr = err(fused.grad);
    const referenceErr = err(reference.grad);
    expect(fusedErr).toBeLessThan(1e-4);
    // Autograd leaves s_jj-sized rounding in (1.4e-3 with Debian's OpenBLAS, 4e-5 with 2.14's BLAS).
    expect(fusedErr).toBeLessThanOrEqual(referenceErr);
  });

  it('trains with the same losses as the dense/autograd formulation, up to the rounding Adam amplifies (issue 21)', () => {
    const a = nativeInternals().headTraining(256, 64, 20, false, 1);
    const b = nativeInternals().headTraining(256, 64, 20, true, 1);
    expect(a.losses).toHaveLength(20);
    expect(Math.abs(a.losses[0] - b.losses[0])).toBeLessThanOrEqual(1e-6 * b.losses[0]);
    for (let i = 0; i < 20; i++) expect(Math.abs(a.losses[i] - b.losses[i])).toBeLessThan(2e-3 * b.losses[i]);
  });

  it('reads the losses back every 16 iterations without changing the training: the same losses and f as reading each one (issue 18)', () => {
    // 37 iterations: two full read-backs and a partial one at the end.
    const each = nativeInternals().headTraining(256, 64, 37, false, 1, 1);
    const batched = nativeInternals().headTraining(256, 64, 37, false, 1);
    expect(batched.losses).toHaveLength(37);
    expect(batched.losses).toEqual(each.losses);
    expect(batched.fWeight.shape).toEqual([64, 64]);
    expect(Array.from(batched.fWeight.data)).toEqual(Array.from(each.fWeight.data));
    expect(Array.from(batched.fBias.data)).toEqual(Array.from(each.fBias.data));
    // Training moved f away from its identity start (the comparison is not of two untouched heads).
    expect(Math.abs(batched.fWeight.data[1])).toBeGreaterThan(0);
  });

  it('stops at the first 32-step window that gains less than head.plateau, on the same step for any read interval (issue 19)', () => {
    const each = nativeInternals().headTraining(256, 64, 400, false, 1, 1, 0.01);
    const batched = nativeInternals().headTraining(256, 64, 400, false, 1, 16, 0.01);
    const fixed = nativeInternals().headTraining(256, 64, 400, false, 1, 16, 0);
    expect(fixed.losses).toHaveLength(400); // plateau 0: the whole budget
    const n = batched.losses.length;
    expect(n).toBeLessThan(400);
    expect(n % 32).toBe(0);
    expect(batched.losses).toEqual(each.losses);
    expect(Array.from(batched.fWeight.data)).toEqual(Array.from(each.fWeight.data));
    // The rule on the losses it saw: every earlier window end gained at least 1%, the last did not.
    const windowMean = (end: number) => batched.losses.slice(end - 32, end).reduce((a, b) => a + b, 0) / 32;
    for (let end = 64; end < n; end += 32) expect(windowMean(end)).toBeLessThanOrEqual(0.99 * windowMean(end - 32));
    expect(windowMean(n)).toBeGreaterThan(0.99 * windowMean(n - 32));
    // Up to the stop, the same training as the fixed budget.
    expect(batched.losses).toEqual(fixed.losses.slice(0, n));
  });

  it('never produces NaN for duplicate patches (sqrt guard)', () => {
    const z = [[1, 2], [1, 2], [1, 2], [3, 4]];
    const w = z.map(() => z.map(() => 0.5));
    const { loss, grad } = nativeInternals().headLoss(arr(z), arr(w), 1);
    expect(Number.isFinite(loss)).toBe(true);
    expect(Array.from(grad.data).every(Number.isFinite)).toBe(true);
  });

  it('updates the partner by EMA', () => {
    const out = nativeInternals().emaStep(arr([[1, 2]]), arr([[3, 6]]), 0.9);
    expect(out.data[0]).toBeCloseTo(0.9 * 1 + 0.1 * 3, 6);
    expect(out.data[1]).toBeCloseTo(0.9 * 2 + 0.1 * 6, 6);
  });
});

describe('ReConPatch head in the engine', () => {
  const dir = tempDir('head');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const base = { head: false, backbone: 'random_cnn', resize: null, crop: null, coreset: { ratio: 0.25 }, seed: 5 } as const;

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
    // The fixed bandwidth: its contextual-only labels give a loss that falls (the knn rule's
    // denser labels move with f, and its loss rises: docs/results.md, head study).
    const opts = { ...base, head: { iterations: 30, batch: 256, lr: 1e-3, sigmaRule: 'fixed' as const } };
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

describe('ReConPatch head across processes (issue 19)', () => {
  const dir = tempDir('head-processes');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const cli = path.join(repoRoot, 'dist/cli/main.js');

  it.skipIf(!existsSync(cli))('two fits with the same seed in separate processes write the same model, byte for byte (all but its id and creation time)', async () => {
    const data = await syntheticDataset();
    const train = path.dirname(data.train[0]);
    const fit = (out: string) =>
      promisify(execFile)(process.execPath, [cli, 'fit', train, '-o', out, '--backbone', 'random_cnn', '--resize', 'none', '--coreset', '0.25',
        '--head', '--head-iterations', '25', '--head-batch', '256', '--head-sigma-rule', 'knn', '--seed', '7']);
    const [a, b] = [path.join(dir, 'a.rcp'), path.join(dir, 'b.rcp')];
    await Promise.all([fit(a), fit(b)]);
    // Every byte that differs lies in the model record's id and creation time (META) or in the
    // file's SHA-256 trailer (its last 32 bytes), which covers them.
    const [x, y] = [readFileSync(a), readFileSync(b)];
    expect(x.length).toBe(y.length);
    const differing = [...x.keys()].filter((i) => x[i] !== y[i]);
    const text = x.toString('latin1');
    const record = (key: string) => { const at = text.indexOf(`"${key}":"`); return [at, text.indexOf('"', at + key.length + 4)]; };
    const [id, created] = [record('id'), record('created')];
    expect(id[0]).toBeGreaterThan(0);
    for (const i of differing) expect((i > id[0] && i < id[1]) || (i > created[0] && i < created[1]) || i >= x.length - 32, `byte ${i}`).toBe(true);
    // The content hash (bank, head, options, backbone, statistics) is the same.
    const loaded = await Engine.load(a);
    expect(loaded.info.model?.hash).toBe((await Engine.load(b)).info.model?.hash);
    // The head trained (its f is saved) with the rule asked for.
    expect([loaded.options.head, loaded.options.headSigmaRule]).toEqual([true, 'knn']);
  });
});
