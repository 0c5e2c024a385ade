// Metrics against hand-checkable cases and a naive pairwise AUROC.
import { readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import { auroc, connectedComponents, f1Max, pixelAuroc, pro } from '../lib/eval/metrics.js';

function naiveAuroc(s: number[], y: number[]): number {
  let u = 0;
  let pairs = 0;
  for (let i = 0; i < s.length; i++)
    for (let j = 0; j < s.length; j++)
      if (y[i] && !y[j]) {
        pairs++;
        u += s[i] > s[j] ? 1 : s[i] === s[j] ? 0.5 : 0;
      }
  return u / pairs;
}

describe('auroc (sklearn roc_auc_score semantics)', () => {
  it.each([
    [[0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], 0.75], // sklearn's documented example
    [[1, 2, 3, 4], [0, 0, 1, 1], 1],
    [[4, 3, 2, 1], [0, 0, 1, 1], 0],
    [[1, 1, 1, 1], [0, 1, 0, 1], 0.5],
    [[1, 1, 2, 2], [0, 1, 0, 1], 0.5],
    // ties across classes: pos {0.5, 0.9} vs neg {0.5, 0.5}: (0.5 + 0.5 + 1 + 1) / 4
    [[0.5, 0.5, 0.5, 0.9], [0, 1, 0, 1], 0.75],
  ])('auroc(%j, %j) = %d', (s, y, want) => {
    expect(auroc(s, y)).toBeCloseTo(want, 12);
  });

  it('matches a naive pairwise count on random data with many ties', () => {
    let seed = 3;
    const r = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    const s = Array.from({ length: 600 }, () => Math.round(r() * 20) / 20);
    const y = s.map((v) => (r() < 0.3 + v * 0.4 ? 1 : 0));
    expect(auroc(s, y)).toBeCloseTo(naiveAuroc(s, y), 12);
    expect(auroc(Float32Array.from(s), Uint8Array.from(y))).toBeCloseTo(naiveAuroc(s, y), 6);
  });

  it('rejects one-class input and length mismatches', () => {
    expect(() => auroc([1, 2], [1, 1])).toThrow(RangeError);
    expect(() => auroc([1, 2], [1])).toThrow(RangeError);
  });

  it('pixelAuroc concatenates maps and masks', () => {
    const maps = [Float32Array.from([0.1, 0.9]), Float32Array.from([0.2, 0.8])];
    const masks = [Uint8Array.from([0, 1]), Uint8Array.from([0, 255])];
    expect(pixelAuroc(maps, masks)).toBe(1);
  });
});

describe('PRO', () => {
  it('finds 8-connected regions', () => {
    // 4x3: a diagonal pair (one region under 8-connectivity, two under 4), and a lone pixel.
    const m = Uint8Array.from([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
    expect(connectedComponents(m, 4, 3).count).toBe(2);
  });

  it('is 1 for a perfect map, 0 for a reversed one, 0.5 when one of two regions is found', () => {
    const mask = Uint8Array.from([1, 1, 0, 0, 0, 0]); // one region of 2 px in a 3x2 image
    expect(pro([Float32Array.from([1, 1, 0, 0, 0, 0])], [mask], [3], [2])).toBeCloseTo(1, 6);
    expect(pro([Float32Array.from([0, 0, 1, 1, 1, 1])], [mask], [3], [2])).toBeCloseTo(0, 6);
    // Two separate regions (columns 0 and 2 of a 3x1 image... as two images): found, missed.
    const masks = [Uint8Array.from([1, 0, 0]), Uint8Array.from([1, 0, 0])];
    const maps = [Float32Array.from([1, 0.5, 0.5]), Float32Array.from([0, 0.5, 0.5])];
    expect(pro(maps, masks, [3, 3], [1, 1])).toBeCloseTo(0.5, 6);
  });
});

describe('f1Max', () => {
  it('finds the best threshold', () => {
    expect(f1Max([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])).toEqual({ f1: 0.8, threshold: 0.35 });
    expect(f1Max([1, 2, 3], [0, 1, 1]).f1).toBe(1);
  });
});

describe('against sklearn / skimage golden values (test/fixtures/make_metric_golden.py)', () => {
  const golden = JSON.parse(readFileSync(new URL('./fixtures/golden/metrics.json', import.meta.url), 'utf8'));

  it('image AUROC and F1 max equal sklearn', () => {
    expect(auroc(golden.image.scores, golden.image.labels)).toBeCloseTo(golden.image.auroc, 12);
    expect(f1Max(golden.image.scores, golden.image.labels).f1).toBeCloseTo(golden.image.f1max, 12);
  });

  it('pixel AUROC equals sklearn over all pixels', () => {
    const maps = golden.pixel.maps.map((m: number[]) => Float32Array.from(m));
    const masks = golden.pixel.masks.map((m: number[]) => Uint8Array.from(m));
    expect(pixelAuroc(maps, masks)).toBeCloseTo(golden.pixel.auroc, 6);
  });

  it('PRO approaches the MVTec evaluation value as thresholds get finer', () => {
    const maps = golden.pixel.maps.map((m: number[]) => Float32Array.from(m));
    const masks = golden.pixel.masks.map((m: number[]) => Uint8Array.from(m));
    const dims = (v: number) => maps.map(() => v);
    const coarse = pro(maps, masks, dims(golden.pixel.width), dims(golden.pixel.height));
    const fine = pro(maps, masks, dims(golden.pixel.width), dims(golden.pixel.height), { steps: 20000 });
    expect(Math.abs(coarse - golden.pixel.pro)).toBeLessThan(0.01);
    expect(Math.abs(fine - golden.pixel.pro)).toBeLessThan(0.002);
  });
});
