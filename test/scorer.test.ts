// Anomaly maps (bilinear upsample + scipy-equal Gaussian blur) and the Eq. 7 image score.
import './support/test_addon.js'; // internals: the test addon (first, before any native() call)
import { describe, expect, it } from 'vitest';

import { nativeInternals } from '../lib/native.js';
import { f32, relError } from './support/golden.js';

describe('anomaly map', () => {
  it('blurs exactly like scipy.ndimage.gaussian_filter(sigma=4), also on maps smaller than the kernel', () => {
    for (const size of ['40x52', '9x11']) {
      const got = nativeInternals().gaussianBlur(f32(`blur_in_${size}.f32`), 4);
      expect(relError(got.data, f32(`blur_out_${size}.f32`).data)).toBeLessThan(1e-5);
    }
  });

  it('upsamples the patch grid bilinearly and blurs it (PatchCore RescaleSegmentor)', () => {
    const got = nativeInternals().anomalyMap(f32('amap_grid.f32'), 48, 48, 4);
    expect(got.shape).toEqual([48, 48]);
    expect(relError(got.data, f32('amap_out.f32').data)).toBeLessThan(1e-5);
  });
});

describe('the CPU loops and the tensor form other devices run', () => {
  let seed = 11;
  const rand = (h: number, w: number) => {
    const data = new Float32Array(h * w);
    for (let i = 0; i < data.length; i++) data[i] = 1 + (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    return { data, shape: [h, w] };
  };
  /** Same NaN pixels, and the others within `tol` relative. */
  const expectSame = (a: { data: Float32Array; shape: number[] }, b: { data: Float32Array; shape: number[] }, tol: number) => {
    expect(a.shape).toEqual(b.shape);
    let nans = 0;
    let nanMismatches = 0;
    let worst = 0;
    for (let i = 0; i < a.data.length; i++) {
      if (Number.isNaN(a.data[i]) !== Number.isNaN(b.data[i])) nanMismatches++;
      else if (Number.isNaN(a.data[i])) nans++;
      else worst = Math.max(worst, Math.abs(a.data[i] - b.data[i]) / Math.abs(b.data[i]));
    }
    expect(nanMismatches).toBe(0);
    expect(worst).toBeLessThan(tol);
    return nans;
  };

  it('blur the same', () => {
    for (const [h, w] of [[224, 224], [40, 52], [9, 11]]) {
      const map = rand(h, w);
      expectSame(nativeInternals().gaussianBlurForm(map, 4, false), nativeInternals().gaussianBlurForm(map, 4, true), 1e-6);
    }
  });

  it('map back to the original size the same: resized, cropped (NaN outside the window), both, neither', () => {
    const internals = nativeInternals();
    const cases: [number, number, number[]][] = [
      [224, 224, [512, 512, 256, 256, 16, 16]], // the reference's squash 256 + crop 224 of a 512-px image
      [224, 224, [500, 1260, 256, 645, 16, 210]], // crop of a wide image
      [160, 404, [500, 1260, 160, 404, 0, 0]], // whole image, resized (the product's default)
      [64, 48, [64, 48, 64, 48, 0, 0]], // nothing to do
      [30, 30, [41, 37, 36, 33, 3, 1]], // odd sizes, off-centre window
    ];
    for (const [h, w, geometry] of cases) {
      const map = rand(h, w);
      const loops = internals.mapToOriginal(map, geometry, false);
      const tensor = internals.mapToOriginal(map, geometry, true);
      expect(loops.shape).toEqual([geometry[0], geometry[1]]);
      // The source coordinate of an output pixel is ~size * 1e-7 off in float32 (ATen computes it
      // in float, the loops in double): 1.5e-5 relative at 1260 px.
      const nans = expectSame(loops, tensor, 5e-5);
      const cropped = geometry[2] !== h || geometry[3] !== w;
      expect(nans > 0).toBe(cropped);
    }
  });
});

describe('image score with Eq. 7 reweighting', () => {
  it('weights the max patch distance by 1 - softmax over its support distances', () => {
    // Bank on a line; one query patch at 5 whose nearest bank row is 4 (s* = 1).
    const bank = { data: new Float32Array([0, 1, 2, 3, 4]), shape: [5, 1] };
    const queries = { data: new Float32Array([0.5, 5]), shape: [2, 1] };
    // Support of m* = 4 with b = 3: rows 4, 3, 2 -> distances from q* = 5: 1, 2, 3.
    const d = [1, 2, 3];
    const softmax0 = Math.exp(d[0]) / d.reduce((s, x) => s + Math.exp(x), 0);
    const want = (1 - softmax0) * 1;
    expect(nativeInternals().reweightedScore(bank, queries, 3)).toBeCloseTo(want, 6);
  });
});
