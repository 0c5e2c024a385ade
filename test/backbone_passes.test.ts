// The TorchScript backbone's graph passes and channels-last input (native/core/backbones/
// script_passes.h, backbone.cc) must change nothing beyond float rounding: the same model fitted
// with them and without them (RECONPATCH_BACKBONE_PASSES=0) gives the same bank size, threshold
// and scores to ~1e-5, and maps to ~1e-4 of their peak. The bank keeps every patch (coreset 1):
// a greedy coreset turns a rounding-level change into another pick where two candidates nearly tie
// (seen on the 2.13 build: one pick, one map region 5% of the peak apart, scores equal to 1e-7),
// as any other rounding change does (another thread count, another libtorch). And they must apply: a pass that silently
// stops matching (another libtorch's graph) would cost the speed without a failing test.
import { readdirSync } from 'node:fs';
import path from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { Engine } from '../lib/index.js';
import { nativeInternals } from '../lib/native.js';
import './support/test_addon.js';
import { goldenDir } from './support/golden.js';
import { hasShared, SHARED_ABSENT, sharedBackbones, sharedDatasets } from './support/data.js';

const ENV = 'RECONPATCH_BACKBONE_PASSES';

function relative(a: number, b: number): number {
  return Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);
}

async function fitAndScore(backbone: string, train: string[], test: string[], passes: boolean) {
  if (passes) delete process.env[ENV];
  else process.env[ENV] = '0';
  try {
    const engine = await Engine.create({ head: false, backbone, resizeMode: 'squash', resize: 256, crop: 224, coreset: { ratio: 1 } });
    await engine.fit(train);
    const results = [];
    for (const f of test) results.push(await engine.score(f));
    const out = { threshold: engine.info.model!.calibration!.threshold, bankSize: engine.info.bankRows, results };
    engine.dispose();
    return out;
  } finally {
    delete process.env[ENV];
  }
}

describe('TorchScript backbone passes', () => {
  afterEach(() => {
    delete process.env[ENV];
  });

  it('apply to the test fixture (frozen, channels-last input) and are off with RECONPATCH_BACKBONE_PASSES=0', () => {
    const tiny = path.join(goldenDir, 'tiny_backbone.pt');
    expect(nativeInternals().backbonePasses(tiny)).toMatch(/^frozen, \d+ pad\+conv2d fused, channels-last input$/);
    process.env[ENV] = '0';
    expect(nativeInternals().backbonePasses(tiny)).toBe('none (RECONPATCH_BACKBONE_PASSES=0)');
  });

  it.skipIf(!hasShared)('fold every padded convolution of both shared backbones and change scores, thresholds and maps only by float rounding', async () => {
    if (!hasShared) console.log(SHARED_ABSENT);
    const dir = path.join(sharedDatasets, 'metal_plate');
    const list = (sub: string, n: number) => readdirSync(path.join(dir, sub)).sort().slice(0, n).map((f) => path.join(dir, sub, f));
    const train = list('train/good', 10);
    const test = [...list('test/good', 2), ...list('test/defect', 2)];
    for (const name of ['mobilenet_v1_imagenet', 'darknet_tiny_imagenet']) {
      const backbone = path.join(sharedBackbones, `${name}.pt`);
      const passes = nativeInternals().backbonePasses(backbone);
      const fused = Number(/^frozen, (\d+) pad\+conv2d fused, channels-last input$/.exec(passes)?.[1] ?? 0);
      expect(fused, `${name}: ${passes}`).toBeGreaterThanOrEqual(10);
      const on = await fitAndScore(backbone, train, test, true);
      const off = await fitAndScore(backbone, train, test, false);
      expect(on.bankSize).toBe(off.bankSize);
      expect(relative(on.threshold, off.threshold)).toBeLessThan(1e-5);
      let worstScore = 0;
      for (let i = 0; i < test.length; i++) {
        const [a, b] = [on.results[i]!, off.results[i]!];
        expect(relative(a.score, b.score), `${name} ${test[i]}`).toBeLessThan(1e-5);
        expect(a.isAnomaly).toBe(b.isAnomaly);
        let peak = 0;
        let worst = 0;
        for (let p = 0; p < b.map.length; p++) {
          // NaN outside the crop (squash 256, crop 224), in both or it fails below.
          if (Number.isNaN(a.map[p]) && Number.isNaN(b.map[p])) continue;
          peak = Math.max(peak, Math.abs(b.map[p]));
          worst = Math.max(worst, Math.abs(a.map[p] - b.map[p]));
        }
        expect(worst / peak).toBeLessThan(1e-4);
        worstScore = Math.max(worstScore, relative(a.score, b.score));
      }
      console.log(`[backbone_passes] ${name}: ${passes}; threshold ${relative(on.threshold, off.threshold).toExponential(1)}, scores up to ${worstScore.toExponential(1)} relative`);
    }
  });
});
