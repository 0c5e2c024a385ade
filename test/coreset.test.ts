// Approximate greedy coreset: the reference's selection order on a golden case, and the sampler's
// size and determinism through the engine.
import { describe, expect, it } from 'vitest';

import { native } from '../lib/native.js';
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

describe('greedy coreset', () => {
  it('selects the same points in the same order as the PatchCore reference', () => {
    const projected = matmul(f32('coreset_X.f32'), f32('coreset_P.f32'));
    const got = native().internals.greedyCoreset(projected, i32('coreset_starts.i32'), 30);
    expect(got).toEqual(i32('coreset_selected.i32'));
  });

  it('picks the farthest point first and never repeats a point while others are farther than zero', () => {
    // Four clusters of identical points: four selections must take one point from each.
    const pts: number[] = [];
    const centres = [[0, 0], [10, 0], [0, 10], [10, 10]];
    for (const [x, y] of centres) for (let r = 0; r < 5; r++) pts.push(x, y);
    const got = native().internals.greedyCoreset({ data: new Float32Array(pts), shape: [20, 2] }, [0], 4);
    const clusters = got.map((i) => Math.floor(i / 5));
    expect(new Set(clusters).size).toBe(4);
  });
});
