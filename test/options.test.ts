import { rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { Engine, ReconpatchError } from '../lib/index.js';
import { torchvisionDrift } from '../lib/io/weights.js';
import { native } from '../lib/native.js';
import { OPTION_TABLE, nativeOptionProblems, optionTableDrift } from '../lib/option_table.js';
import { resolveOptions } from '../lib/options.js';

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(ReconpatchError);
    return (e as ReconpatchError).code;
  }
  throw new Error('expected a rejection');
}

describe('options', () => {
  it('fills the documented defaults', () => {
    const o = resolveOptions({ backbone: 'random_cnn' });
    expect(o).toMatchObject({
      resize: 256, crop: 0, resizeMode: 'area', coresetRatio: 0.1, coresetProjection: 128,
      coresetStarts: 10, pretrainDim: 1024, targetDim: 1024, distance: 'euclidean', reweight: false,
      blurSigma: 4, device: 'auto', seed: 0, batchSize: 4,
    });
    expect(o.threads).toBe(0); // all cores of whichever machine runs (or loads) the engine
    // The head is on by default, with head study v2's configuration (docs/results.md).
    expect(o).toMatchObject({
      head: true, headIterations: 256, headBatch: 1024, headLr: 1e-4, headWeightDecay: 1e-2, headEma: 0.97, headK: 5,
      headSigma: 1, headSigmaRule: 'fixed', headAlpha: 0.5, headMargin: 0.1, headNormalize: false, headInitIdentity: true, headPlateau: 0,
    });
    expect(resolveOptions({ backbone: 'random_cnn', head: true })).toEqual(o);
    expect(resolveOptions({ backbone: 'random_cnn', head: false }).head).toBe(false);
  });

  it('maps null resize/crop to "keep size" / "no crop"', () => {
    expect(resolveOptions({ backbone: 'random_cnn', resize: null, crop: null })).toMatchObject({ resize: 0, crop: 0 });
  });

  it.each([
    [{ backbone: '' }, /backbone/],
    [{ backbone: 'no_such_net' }, /neither a built-in/],
    [{ backbone: 'random_cnn', coreset: { ratio: 0 } }, /coreset.ratio/],
    [{ backbone: 'random_cnn', coreset: { ratio: 1.5 } }, /coreset.ratio/],
    [{ backbone: 'random_cnn', resize: 100, crop: 224 }, /crop/],
    [{ backbone: 'random_cnn', resizeMode: 'stretch' }, /resizeMode/],
    [{ backbone: 'random_cnn', device: 'tpu' }, /device/],
    [{ backbone: 'random_cnn', threads: 0 }, /threads/],
    [{ backbone: 'random_cnn', seed: -1 }, /seed/],
    [{ backbone: 'random_cnn', head: { lr: -1 } }, /head.lr/],
    [{ backbone: 'random_cnn', head: { depth: 3 } }, /unknown head option/],
    [{ backbone: 'random_cnn', colour: 'red' }, /unknown option 'colour'/],
  ])('rejects %j', async (opts, message) => {
    expect(() => resolveOptions(opts as never)).toThrow(message);
    expect(await codeOf(Engine.create(opts as never))).toBe('ERR_INVALID_OPTION');
  });

  it('resolves torchvision weights and taps: explicit file, default and reordered layers, rejections', () => {
    const file = path.join(os.tmpdir(), `reconpatch-options-${process.pid}.pth`);
    writeFileSync(file, 'not read here');
    try {
      expect(resolveOptions({ backbone: 'wide_resnet50_2', weights: file })).toMatchObject({ backbone: 'wide_resnet50_2', weights: file, layers: 'layer2,layer3' });
      expect(resolveOptions({ backbone: 'densenet201', weights: file }).layers).toBe('denseblock2,denseblock3');
      expect(resolveOptions({ backbone: 'resnet18', weights: file, layers: ['layer4', 'layer1'] }).layers).toBe('layer1,layer4');
      expect(resolveOptions({ backbone: 'random_cnn' })).toMatchObject({ weights: '', layers: '' });
      for (const layers of [[], ['layer2', 'layer2'], ['denseblock2'], 'layer2'])
        expect(() => resolveOptions({ backbone: 'resnet50', weights: file, layers: layers as never })).toThrow(/layers must be/);
      expect(() => resolveOptions({ backbone: 'resnet50', weights: `${file}.absent` })).toThrow(/does not exist/);
      expect(() => resolveOptions({ backbone: 'random_cnn', weights: file })).toThrow(/takes no separate weights/);
    } finally {
      rmSync(file, { force: true });
    }
  });

  it('reaches the native struct and comes back unchanged, every field (non-default values)', async () => {
    const opts = {
      backbone: 'random_cnn', resize: 128, crop: 112, resizeMode: 'squash', coreset: { ratio: 0.3, projection: 64, starts: 7 },
      features: { pretrainDim: 512, targetDim: 256 }, scoring: { distance: 'squared', reweight: true, neighbors: 5, blurSigma: 2 },
      head: { iterations: 12, batch: 64, projectionDim: 32, lr: 0.002, weightDecay: 0.05, ema: 0.8, k: 7, sigma: 0.5, sigmaRule: 'knn', alpha: 0.25, margin: 0.75, normalize: true, initIdentity: false, plateau: 0.02 },
      batchSize: 3, threads: 1, device: 'cpu', seed: 42, fitPrecision: 'float16',
    } as const;
    const engine = await Engine.create(opts);
    expect(engine.options).toEqual(resolveOptions(opts));
  });

  it('keeps the caller in the stack of a rejected call', async () => {
    const err = (await Engine.create({ backbone: 'no_such_net' }).catch((e: unknown) => e)) as Error;
    expect(err.stack).toContain('options.test.ts');
  });

  it('one option table: the addon names the same keys in the same order with the same defaults, and drift is caught', () => {
    const addon = native().optionDefaults();
    expect(optionTableDrift(addon)).toEqual([]);
    expect(Object.keys(addon)).toEqual(Object.keys(OPTION_TABLE));
    // What a stale or mismatched build would look like: a key renamed, a default changed.
    const { batchSize, ...renamed } = addon;
    expect(optionTableDrift({ ...renamed, batchSizes: batchSize }).join('\n')).toMatch(/keys differ/);
    expect(optionTableDrift({ ...addon, device: 'cpu' })).toEqual(['default of device: the addon "cpu", lib/option_table.ts "auto"']);
    // The torchvision architectures and their taps: declared natively, listed in lib/io/weights.ts.
    const catalog = native().torchvisionCatalog();
    expect(torchvisionDrift(catalog)).toEqual([]);
    expect(torchvisionDrift({ ...catalog, resnet34: catalog.resnet18 }).join('\n')).toMatch(/architectures differ/);
    expect(torchvisionDrift({ ...catalog, resnet18: { ...catalog.resnet18, defaults: ['layer3'] } }).join('\n')).toMatch(/resnet18 taps differ/);
  });

  it('checks a complete native options object (what a model file holds) against the table', () => {
    const good = resolveOptions({ backbone: 'random_cnn' }) as unknown as Record<string, unknown>;
    expect(nativeOptionProblems(good)).toEqual([]);
    expect(nativeOptionProblems({ ...good, resize: 0, crop: 0, threads: 0 })).toEqual([]); // 0 = none
    const bad = { ...good, batchSize: 0, threads: 100000, patchSize: 0, resize: 3, coresetRatio: 0, device: 'tpu', extra: 1 };
    const problems = nativeOptionProblems(bad).join('\n');
    for (const key of ['batchSize=0', 'threads=100000', 'patchSize=0', 'resize=3', 'coresetRatio=0', 'device="tpu"', 'extra is not an option'])
      expect(problems).toContain(key);
    const { seed: _seed, ...missing } = good;
    expect(nativeOptionProblems(missing)).toEqual(['seed is missing']);
    expect(nativeOptionProblems({ ...good, resize: 100, crop: 200 })).toEqual(['crop (200) exceeds resize (100)']);
  });
});

