import { describe, expect, it } from 'vitest';

import { Engine, ReconpatchError } from '../lib/index.js';
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
      resize: 256, crop: 224, resizeMode: 'shorter', coresetRatio: 0.1, coresetProjection: 128,
      coresetStarts: 10, pretrainDim: 1024, targetDim: 1024, distance: 'euclidean', reweight: false,
      blurSigma: 4, device: 'auto', seed: 0, batchSize: 4,
    });
    expect(o.threads).toBeGreaterThanOrEqual(1);
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

  it('keeps the caller in the stack of a rejected call', async () => {
    const err = (await Engine.create({ backbone: 'no_such_net' }).catch((e: unknown) => e)) as Error;
    expect(err.stack).toContain('options.test.ts');
  });
});
