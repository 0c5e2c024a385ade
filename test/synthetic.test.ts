// The synthetic defect generator: deterministic bytes, exact masks, requested sizes and channels.
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';

import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';

import { readMask, readMvtecDataset } from '../lib/eval/dataset.js';
import { makeSyntheticDataset } from '../lib/eval/synthetic.js';
import { tempDir } from './support/data.js';

describe('synthetic defect dataset', () => {
  const dir = tempDir('synthetic');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes the same bytes for the same seed, and different ones for another', async () => {
    const opts = { nTrain: 2, nGood: 1, nDefect: 3 };
    await makeSyntheticDataset(path.join(dir, 'a'), opts);
    await makeSyntheticDataset(path.join(dir, 'b'), opts);
    await makeSyntheticDataset(path.join(dir, 'c'), { ...opts, seed: 2 });
    const file = 'synthetic/test/scratch/000.png';
    expect(readFileSync(path.join(dir, 'a', file)).equals(readFileSync(path.join(dir, 'b', file)))).toBe(true);
    expect(readFileSync(path.join(dir, 'a', file)).equals(readFileSync(path.join(dir, 'c', file)))).toBe(false);
  });

  it('has MVTec layout, a mask per defect covering 0.5-6% of the image, and the requested shape', async () => {
    await makeSyntheticDataset(path.join(dir, 'grey'), { channels: 1, width: 120, height: 80, nTrain: 3, nGood: 2, nDefect: 6 });
    const data = await readMvtecDataset(path.join(dir, 'grey'), 'synthetic');
    expect([data.train.length, data.test.length, data.missingMasks]).toEqual([3, 8, 0]);
    for (const t of data.test.filter((x) => x.label === 1)) {
      const meta = await sharp(t.path).metadata();
      expect([meta.width, meta.height, meta.channels]).toEqual([120, 80, 1]);
      const mask = await readMask(t.maskPath as string, 120, 80);
      const share = mask.reduce((s, v) => s + v, 0) / mask.length;
      expect(share).toBeGreaterThan(0.005);
      expect(share).toBeLessThan(0.06);
    }
  });
});
