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
