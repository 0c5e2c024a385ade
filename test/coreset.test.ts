// Approximate greedy coreset: the reference's selection order on a golden case, and the sampler's
// size and determinism through the engine.
import './support/test_addon.js'; // internals: the test addon (first, before any native() call)
import { describe, expect, it } from 'vitest';

import { nativeInternals } from '../lib/native.js';
import { f32, i32 } from './support/golden.js';

function matmul(a: { data: Float32Array; shape: number[] }, b: { data: Float32Array; shape: number[] }) {
  const [n, k] = a.shape;
  const m = b.shape[1];
  const out = new Float32Array(n * m);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += a.data[i * k + t] * b.data[t * m + j];
      out[i * m + j] = s;
    }
  return { data: out, shape: [n, m] };
}

// Clustered points with exact duplicates and a uniform background: the pruned loop must make
// exactly the plain loop's choices, ties included. mulberry32 + Box-Muller, deterministic.
function clustered(n: number, d: number, seed: number): { data: Float32Array; shape: number[] } {
  let a = seed >>> 0;
  const rand = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  const centres = Array.from({ length: 24 }, () => Array.from({ length: d }, () => 10 * gauss()));
  const data = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    const kind = rand();
    for (let k = 0; k < d; k++) {
      if (kind < 0.1 && i > 0) data[i * d + k] = data[(i - 1) * d + k]; // duplicate of the previous point
      else if (kind < 0.2) data[i * d + k] = 30 * (rand() - 0.5);
      else data[i * d + k] = centres[i % centres.length][k] + (0.2 + (i % 5)) * gauss();
    }
  }
  return { data, shape: [n, d] };
}

describe('greedy coreset', () => {
  for (const pruned of [false, true]) {
    it(`selects the same points in the same order as the PatchCore reference (${pruned ? 'pruned' : 'plain'} loop)`, () => {
      const projected = matmul(f32('coreset_X.f32'), f32('coreset_P.f32'));
      const got = nativeInternals().greedyCoreset(projected, i32('coreset_starts.i32'), 30, pruned);
      expect(got).toEqual(i32('coreset_selected.i32'));
    });
  }

  it('pruned loop: exactly the plain loop\'s selections on clustered data with duplicates, up to exhaustion', () => {
    const pts = clustered(12000, 16, 3);
    for (const count of [50, 3000]) {
      const plain = nativeInternals().greedyCoreset(pts, [5, 77, 901], count, false);
      const pruned = nativeInternals().greedyCoreset(pts, [5, 77, 901], count, true);
      expect(pruned).toEqual(plain);
    }
    // More selections than distinct points: once every distance is 0 both repeat the lowest index.
    const few = { data: pts.data.slice(0, 40 * 16), shape: [40, 16] };
    expect(nativeInternals().greedyCoreset(few, [0], 40, true)).toEqual(nativeInternals().greedyCoreset(few, [0], 40, false));
  });

  it('NaN points fail with ERR_INTERNAL (no index was found: both CPU loops used to read the row before the points; the device loop checks at its end); with NaN rows among finite ones every CPU index is inside the points and the device loop fails', () => {
    // Under AddressSanitizer both loops read outside the points here (issue 22); without it the plain
    // loop returned index -1 and the pruned one an index read from before its permutation.
    const nan = { data: new Float32Array(512 * 16).fill(Number.NaN), shape: [512, 16] };
    for (const pruned of [false, true]) {
      for (const bf16 of [false, true]) {
        let err: unknown;
        try {
          nativeInternals().greedyCoreset(nan, [0, 1, 2], 40, pruned, 1, bf16);
        } catch (e) {
          err = e;
        }
        expect((err as { code?: string }).code, `pruned ${pruned}, bfloat16 ${bf16}`).toBe('ERR_INTERNAL');
        expect((err as Error).message).toMatch(/no finite distance: the patch features contain NaN or Inf/);
      }
    }
    // The device loop (the GPU's, run here on the CPU): its argmax takes NaN as the largest value, so
    // it never indexes outside; non-finite distances left at its end fail the same way.
    const deviceLoopError = (points: { data: Float32Array; shape: number[] }) => {
      try {
        nativeInternals().greedyCoreset(points, [0, 2, 4], 40, false, 1, false, true);
      } catch (e) {
        return e as { code?: string; message: string };
      }
      return undefined;
    };
    expect(deviceLoopError(nan)?.code).toBe('ERR_INTERNAL');
    // Every other row NaN (fit never gets here: the engine rejects NaN features, test/engine.test.ts):
    // the finite rows still give indices, all inside the points.
    const pts = clustered(2048, 16, 7);
    for (let i = 1; i < 2048; i += 2) pts.data.fill(Number.NaN, i * 16, (i + 1) * 16);
    for (const pruned of [false, true]) {
      const got = nativeInternals().greedyCoreset(pts, [0, 2, 4], 200, pruned);
      expect(got.every((i) => Number.isInteger(i) && i >= 0 && i < 2048)).toBe(true);
      expect(got.filter((i) => i % 2 === 0).length).toBeGreaterThanOrEqual(199);
    }
    expect(deviceLoopError(pts)?.message).toMatch(/no finite distance/);
    expect(deviceLoopError(clustered(2048, 16, 7))).toBeUndefined();
  });

  it('bfloat16 points (what fit selects on, on the CPU): pruned = plain exactly, and nearly the float32 selection', () => {
    const pts = clustered(12000, 16, 5);
    const count = 1200;
    const plain = nativeInternals().greedyCoreset(pts, [5, 77, 901], count, false, 1, true);
    const pruned = nativeInternals().greedyCoreset(pts, [5, 77, 901], count, true, 1, true);
    expect(pruned).toEqual(plain);
    // Two threads split the pass; the selection does not depend on it.
    expect(nativeInternals().greedyCoreset(pts, [5, 77, 901], count, true, 2, true)).toEqual(plain);
    // Rounding to bfloat16 moves distances by < 1%: the selected set stays largely the same (the
    // greedy order diverges after near-ties, so whole sequences are not compared).
    const full = new Set(nativeInternals().greedyCoreset(pts, [5, 77, 901], count, false, 1, false));
    const shared = plain.filter((i) => full.has(i)).length;
    expect(shared / count).toBeGreaterThan(0.85); // 0.93 measured
  });

  it('picks the farthest point first and never repeats a point while others are farther than zero', () => {
    // Four clusters of identical points: four selections must take one point from each.
    const pts: number[] = [];
    const centres = [[0, 0], [10, 0], [0, 10], [10, 10]];
    for (const [x, y] of centres) for (let r = 0; r < 5; r++) pts.push(x, y);
    const got = nativeInternals().greedyCoreset({ data: new Float32Array(pts), shape: [20, 2] }, [0], 4, true);
    const clusters = got.map((i) => Math.floor(i / 5));
    expect(new Set(clusters).size).toBe(4);
  });

  it('the device loop (what the GPU runs, here on the CPU): the plain loop\'s selections, on float32 and on bfloat16 points', () => {
    const reference = matmul(f32('coreset_X.f32'), f32('coreset_P.f32'));
    expect(nativeInternals().greedyCoreset(reference, i32('coreset_starts.i32'), 30, false, 0, false, true)).toEqual(i32('coreset_selected.i32'));
    const pts = clustered(12000, 16, 7);
    for (const bfloat16 of [false, true]) {
      const plain = nativeInternals().greedyCoreset(pts, [5, 77, 901], 600, false, 1, bfloat16);
      const device = nativeInternals().greedyCoreset(pts, [5, 77, 901], 600, false, 1, bfloat16, true);
      // The loops sum the squared differences in different orders; on these points no near-tie
      // turns on that rounding, so the sequences are identical (on a GPU the device check compares).
      expect(device, bfloat16 ? 'bfloat16' : 'float32').toEqual(plain);
    }
  });
});

