// Parity with PyTorch: preprocessing, TorchScript backbone and PatchCore patch features against
// golden tensors made by test/fixtures/make_golden.py (Debian's python3-torch 1.13).
import './support/test_addon.js'; // internals: the test addon (first, before any native() call)
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { Engine } from '../lib/index.js';
import { nativeInternals } from '../lib/native.js';
import { f32, goldenDir, relError, u8 } from './support/golden.js';

const image = { data: u8('image_rgb.u8'), width: 90, height: 70, channels: 3 as const };
const tiny = path.join(goldenDir, 'tiny_backbone.pt');

describe('parity with the PyTorch reference', () => {
  it('preprocesses like F.interpolate(antialias) + center crop', () => {
    const squash = nativeInternals().preprocess(image, 64, 48, 'squash');
    expect(squash.shape).toEqual([3, 48, 48]);
    expect(relError(squash.data, f32('preprocessed.f32').data)).toBeLessThan(1e-5);
    const shorter = nativeInternals().preprocess(image, 56, 0, 'shorter');
    expect(shorter.shape).toEqual([3, 56, 72]);
    expect(relError(shorter.data, f32('shorter_preprocessed.f32').data)).toBeLessThan(1e-5);
  });

  it('aggregates patch features exactly as PatchCore._embed (from given taps)', () => {
    for (const [taps, out] of [
      [['tap0.f32', 'tap1.f32'], 'patch_features.f32'],
      [['shorter_tap0.f32', 'shorter_tap1.f32'], 'shorter_patch_features.f32'],
    ] as const) {
      const got = nativeInternals().patchFeatures(taps.map(f32), 3, 64, 48);
      const want = f32(out);
      expect(got.shape).toEqual(want.shape);
      expect(relError(got.data, want.data)).toBeLessThan(1e-5);
    }
  });

  it('gives the same patch features from the fused CPU kernel and from tensor operations', () => {
    // The tensor path is what other devices run; both must match the reference (golden) and each other.
    for (const [taps, out] of [
      [['tap0.f32', 'tap1.f32'], 'patch_features.f32'],
      [['shorter_tap0.f32', 'shorter_tap1.f32'], 'shorter_patch_features.f32'],
    ] as const) {
      const got = nativeInternals().patchFeatures(taps.map(f32), 3, 64, 48, true);
      expect(relError(got.data, f32(out).data)).toBeLessThan(1e-5);
    }
    // Mobilenet-sized taps (stride 8 and 16 of a 224 crop) with uneven pooling windows
    // (2304 -> 1000 and 4608 -> 1000, then 2000 -> 768), seeded values in [0, 1).
    let seed = 7;
    const rand = (shape: number[]) => {
      const data = new Float32Array(shape.reduce((a, b) => a * b));
      for (let i = 0; i < data.length; i++) data[i] = (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
      return { data, shape };
    };
    const taps = [rand([1, 256, 28, 28]), rand([1, 512, 14, 14])];
    const kernel = nativeInternals().patchFeatures(taps, 3, 1000, 768);
    const tensor = nativeInternals().patchFeatures(taps, 3, 1000, 768, true);
    expect(kernel.shape).toEqual([784, 768]);
    expect(tensor.shape).toEqual([784, 768]);
    expect(relError(kernel.data, tensor.data)).toBeLessThan(1e-6);
    // The resize of the stride-16 tap is a kernel of its own on the CPU and two GEMMs in the tensor
    // path; also where the sizes do not divide (13 -> 25 cells, edge taps clamped): within 1 ulp.
    for (const [h, w] of [[28, 28], [25, 33]]) {
      const odd = [rand([1, 64, h, w]), rand([1, 96, Math.ceil(h / 2), Math.ceil(w / 2)])];
      const a = nativeInternals().patchFeatures(odd, 3, 256, 128);
      const b = nativeInternals().patchFeatures(odd, 3, 256, 128, true);
      expect(relError(a.data, b.data)).toBeLessThan(3e-7);
    }
  });

  it('embeds an image end to end through a TorchScript backbone (squash + crop, and shorter side)', async () => {
    const squash = await Engine.create({ head: false, backbone: tiny, resizeMode: 'squash', resize: 64, crop: 48, features: { pretrainDim: 64, targetDim: 48 } });
    const a = await squash.embed(image);
    expect([a.rows, a.dim]).toEqual([36, 48]);
    expect(relError(a.data, f32('patch_features.f32').data)).toBeLessThan(1e-4);
    const shorter = await Engine.create({ head: false, backbone: tiny, resizeMode: 'shorter', resize: 56, crop: null, features: { pretrainDim: 64, targetDim: 48 } });
    const b = await shorter.embed(image);
    expect([b.rows, b.dim]).toEqual([63, 48]);
    expect(relError(b.data, f32('shorter_patch_features.f32').data)).toBeLessThan(1e-4);
  });

  it('rejects a TorchScript backbone whose declared channels do not match its output', async () => {
    const err = await Engine.create({ head: false, backbone: path.join(goldenDir, 'bad_backbone_strides.pt') }).catch((e) => e);
    expect(err.code).toBe('ERR_BACKBONE');
    expect(err.message).toMatch(/channels/);
  });
});
