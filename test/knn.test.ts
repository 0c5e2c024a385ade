// Exact nearest neighbours by chunked GEMM against a float64 brute force (golden).
import { describe, expect, it } from 'vitest';

import { native } from '../lib/native.js';
import { f32, i32 } from './support/golden.js';

describe('FlatL2 k-NN', () => {
  it('finds the exact nearest bank row and its squared distance (chunked merge included)', () => {
    const { distances, indices } = native().internals.knn(f32('knn_bank.f32'), f32('knn_queries.f32'), 1);
    expect(indices).toEqual(i32('knn_index.i32'));
    const want = f32('knn_dist2.f32').data;
    for (let i = 0; i < want.length; i++) expect(distances.data[i]).toBeCloseTo(want[i], 3);
    expect(distances.data[0]).toBe(0); // query 0 is a copy of bank row 123: clamped, not negative
  });

  it('returns k neighbours in ascending order', () => {
    const bank = { data: new Float32Array([0, 1, 3, 6, 10].flatMap((x) => [x, 0])), shape: [5, 2] };
    const q = { data: new Float32Array([2.9, 0]), shape: [1, 2] };
    const { distances, indices } = native().internals.knn(bank, q, 3);
    expect(indices).toEqual([2, 1, 0]);
    expect(Array.from(distances.data).map((d) => +d.toFixed(4))).toEqual([0.01, 3.61, 8.41]);
  });
});
