// Exact nearest neighbours by chunked GEMM against a float64 brute force (golden).
import './support/test_addon.js'; // internals: the test addon (first, before any native() call)
import { describe, expect, it } from 'vitest';

import { nativeInternals } from '../lib/native.js';
import { f32, i32 } from './support/golden.js';

describe('FlatL2 k-NN', () => {
  it('finds the exact nearest bank row and its squared distance (chunked merge included)', () => {
    const { distances, indices } = nativeInternals().knn(f32('knn_bank.f32'), f32('knn_queries.f32'), 1);
    expect(indices).toEqual(i32('knn_index.i32'));
    const want = f32('knn_dist2.f32').data;
    for (let i = 0; i < want.length; i++) expect(distances.data[i]).toBeCloseTo(want[i], 3);
    expect(distances.data[0]).toBe(0); // query 0 is a copy of bank row 123: clamped, not negative
  });

  it('k = 1 (a fused CPU minimum) agrees with k = 2 (tensor top-k); its ties go to the lowest row, across chunks too', () => {
    // 200 rows of 4 values in chunks of 64; rows 7, 9 (same chunk) and 70, 150 (later chunks) are equal.
    const rows = Array.from({ length: 200 }, (_, r) => [Math.sin(r), Math.cos(3 * r), r / 50, 1]);
    for (const r of [9, 70, 150]) rows[r] = [...rows[7]];
    const bank = { data: new Float32Array(rows.flat()), shape: [200, 4] };
    const queries = { data: new Float32Array([...rows[150], ...rows[3], 0.1, 0.2, 0.3, 0.4]), shape: [3, 4] };
    const one = nativeInternals().knn(bank, queries, 1);
    const two = nativeInternals().knn(bank, queries, 2);
    expect(one.indices.slice(0, 2)).toEqual([7, 3]);
    // top-k orders ties arbitrarily: query 0's two nearest are two of the four equal rows.
    expect([7, 9, 70, 150]).toEqual(expect.arrayContaining(two.indices.slice(0, 2)));
    expect([one.indices[1], one.indices[2]]).toEqual([two.indices[2], two.indices[4]]);
    for (let i = 0; i < 3; i++) expect(one.distances.data[i]).toBeCloseTo(two.distances.data[2 * i], 5);
  });

  it('returns k neighbours in ascending order', () => {
    const bank = { data: new Float32Array([0, 1, 3, 6, 10].flatMap((x) => [x, 0])), shape: [5, 2] };
    const q = { data: new Float32Array([2.9, 0]), shape: [1, 2] };
    const { distances, indices } = nativeInternals().knn(bank, q, 3);
    expect(indices).toEqual([2, 1, 0]);
    expect(Array.from(distances.data).map((d) => +d.toFixed(4))).toEqual([0.01, 3.61, 8.41]);
  });
});
