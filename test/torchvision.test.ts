// Native torchvision backbones: parity of every architecture's taps with torchvision itself
// (weights and expected outputs generated now by Debian's python3-torchvision), both .pth
// formats, weight-file errors, and a fit/score/save/load round trip that needs no weights cache.
import './support/test_addon.js'; // internals: the test addon (first, before any native() call)
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/index.js';
import { nativeInternals } from '../lib/native.js';
import { repoRoot, syntheticDataset, tempDir } from './support/data.js';
import { relError } from './support/golden.js';
import { TORCHVISION_ABSENT, type TorchvisionGolden, hasTorchvision, torchvisionGolden } from './support/torchvision.js';

const CASES = [
  { arch: 'resnet18', layers: ['layer1', 'layer2', 'layer3', 'layer4'], strides: [4, 8, 16, 32], channels: [64, 128, 256, 512] },
  { arch: 'resnet50', layers: ['layer2', 'layer3'], strides: [8, 16], channels: [512, 1024] },
  { arch: 'wide_resnet50_2', layers: ['layer2', 'layer3'], strides: [8, 16], channels: [512, 1024] },
  { arch: 'wide_resnet101_2', layers: ['layer2', 'layer3'], strides: [8, 16], channels: [512, 1024] },
  { arch: 'resnext101_32x8d', layers: ['layer2', 'layer3'], strides: [8, 16], channels: [512, 1024] },
  { arch: 'densenet201', layers: ['denseblock2', 'denseblock3'], strides: [8, 16], channels: [512, 1792] },
];

const run = promisify(execFile);
const cli = path.join(repoRoot, 'dist/cli/main.js');

if (!hasTorchvision) console.warn(`[torchvision.test] skipped: ${TORCHVISION_ABSENT}`);

describe.skipIf(!hasTorchvision)('torchvision backbones in libtorch', () => {
  let golden: TorchvisionGolden;
  beforeAll(() => {
    golden = torchvisionGolden();
    if (golden.generatedSeconds > 0)
      console.log(`[torchvision.test] generated weights and taps in ${golden.generatedSeconds.toFixed(1)} s (per architecture: ${JSON.stringify(golden.meta.seconds)})`);
  }, 600_000);

  const taps = (arch: string, file: string, layers: string) =>
    nativeInternals().torchvisionTaps(arch, golden.file(file), layers, golden.f32('input.f32'));

  it.each(CASES)('$arch matches torchvision at $layers (max relative error <= 1e-4)', ({ arch, layers, strides, channels }) => {
    const out = taps(arch, `${arch}.pth`, layers.join(','));
    expect(out.strides).toEqual(strides);
    expect(out.channels).toEqual(channels);
    expect(out.taps).toHaveLength(layers.length);
    const errors = layers.map((layer, i) => {
      const want = golden.f32(`${arch}_${layer}.f32`);
      expect(out.taps[i].shape).toEqual(want.shape);
      return relError(out.taps[i].data, want.data);
    });
    console.log(`[torchvision.test] ${arch}: max relative error per tap ${layers.map((l, i) => `${l} ${errors[i].toExponential(2)}`).join(', ')}`);
    for (const e of errors) expect(e).toBeLessThanOrEqual(1e-4);
  }, 120_000);

  it('reads the legacy (pre-1.6) .pth format and the 2017 DenseNet key names', () => {
    const zip = taps('resnet18', 'resnet18.pth', 'layer2,layer3');
    const legacy = taps('resnet18', 'resnet18_legacy.pth', 'layer2,layer3');
    for (let i = 0; i < 2; i++) expect(relError(legacy.taps[i].data, zip.taps[i].data)).toBe(0);
    const old = taps('densenet201', 'densenet201_oldnames.pth', 'denseblock2,denseblock3');
    expect(relError(old.taps[1].data, golden.f32('densenet201_denseblock3.f32').data)).toBeLessThanOrEqual(1e-4);
  }, 120_000);

  it('fails with ERR_BACKBONE on a missing key, a mis-shaped key, and files that are not state dicts', () => {
    const error = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        return e as { code: string; message: string };
      }
      throw new Error('expected an error');
    };
    // resnet50.pth stops at layer3: layer4 is needed but absent.
    const missing = error(() => taps('resnet50', 'resnet50.pth', 'layer3,layer4'));
    expect(missing.code).toBe('ERR_BACKBONE');
    expect(missing.message).toMatch(/lacks 'layer4\.0\.conv1\.weight'/);
    // resnet50's 3x3 convolutions are half as wide as wide_resnet50_2's.
    const shape = error(() => taps('wide_resnet50_2', 'resnet50.pth', 'layer2'));
    expect(shape.code).toBe('ERR_BACKBONE');
    expect(shape.message).toMatch(/'layer1\.0\.conv1\.weight' has shape \[64, 64, 1, 1\] but wide_resnet50_2 needs \[128, 64, 1, 1\]/);
    const raw = error(() => taps('resnet18', 'input.f32', 'layer2'));
    expect(raw.code).toBe('ERR_BACKBONE');
    expect(raw.message).toMatch(/not a PyTorch \.pth file/);
    const torchscript = path.resolve('test/fixtures/golden/tiny_backbone.pt');
    const ts = error(() => nativeInternals().torchvisionTaps('resnet18', torchscript, 'layer2', golden.f32('input.f32')));
    expect(ts.code).toBe('ERR_BACKBONE');
    expect(ts.message).toMatch(/state dict/);
  });

  describe('through the engine', () => {
    const dir = tempDir('torchvision');
    const cache = path.join(dir, 'cache');
    const saved = process.env.RECONPATCH_CACHE;
    beforeAll(async () => {
      process.env.RECONPATCH_CACHE = cache;
      if (!existsSync(cli)) await run('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: repoRoot });
    }, 120_000);
    afterAll(() => {
      if (saved === undefined) delete process.env.RECONPATCH_CACHE;
      else process.env.RECONPATCH_CACHE = saved;
      rmSync(dir, { recursive: true, force: true });
    });

    it('without cached weights fails with ERR_WEIGHTS_MISSING and the command to run', async () => {
      const e = await Engine.create({ head: false, backbone: 'wide_resnet50_2' }).catch((err) => err);
      expect(e.code).toBe('ERR_WEIGHTS_MISSING');
      expect(e.message).toContain('npx reconpatch weights pull wide_resnet50_2');
      const bad = await Engine.create({ head: false, backbone: 'resnet18', layers: ['layer5'], weights: golden.file('resnet18.pth') }).catch((err) => err);
      expect(bad.code).toBe('ERR_INVALID_OPTION');
      const ts = await Engine.create({ head: false, backbone: 'random_cnn', layers: ['layer2'] }).catch((err) => err);
      expect(ts.code).toBe('ERR_INVALID_OPTION');
    });

    it('fits, scores, saves and reloads resnet18 from the cache; the model loads with the cache emptied', async () => {
      mkdirSync(cache, { recursive: true });
      copyFileSync(golden.file('resnet18.pth'), path.join(cache, 'resnet18-f37072fd.pth')); // what `weights pull` leaves
      const data = await syntheticDataset();
      const engine = await Engine.create({ head: false, backbone: 'resnet18', resize: null, crop: null, coreset: { ratio: 0.25 }, calibration: false });
      expect(engine.options.layers).toBe('layer2,layer3');
      expect(engine.info.backbone).toBe('resnet18');
      await engine.fit(data.train);
      const test = data.test.map((t) => t.path);
      const before = await engine.scoreMany(test);
      // Anomalies must outscore good parts on average, even with random weights.
      const mean = (label: number) => {
        const s = before.filter((_, i) => data.test[i].label === label).map((r) => r.score);
        return s.reduce((a, b) => a + b, 0) / s.length;
      };
      expect(mean(1)).toBeGreaterThan(mean(0));
      const model = path.join(dir, 'resnet18.rcp');
      await engine.save(model);
      rmSync(cache, { recursive: true, force: true });
      const again = await Engine.load(model);
      expect(again.info.backboneSha256).toBe(engine.info.backboneSha256);
      const after = await again.scoreMany(test);
      for (const [i, r] of after.entries()) expect(r.score).toBeCloseTo(before[i].score, 5);
    }, 300_000);

    it('fits from the command line with --weights and --layers', async () => {
      const data = await syntheticDataset();
      const model = path.join(dir, 'cli.rcp');
      const args = ['fit', path.join(data.root, data.category, 'train/good'), '-o', model, '--backbone', 'resnet18', '--no-head',
        '--weights', golden.file('resnet18.pth'), '--layers', 'layer1,layer2', '--resize', 'none', '--crop', 'none', '--json'];
      await run(process.execPath, [cli, ...args], { env: { ...process.env, CI: '1' } });
      const { stdout } = await run(process.execPath, [cli, 'info', model, '--json']);
      const info = JSON.parse(stdout);
      expect(info).toMatchObject({ backbone: 'resnet18', options: { backbone: 'resnet18', layers: 'layer1,layer2' } });
    }, 300_000);
  });
});
