// End to end on synthetic defects with the built-in random CNN: real separation, maps at the
// input's size, determinism, greyscale and non-square inputs.
import { beforeAll, describe, expect, it } from 'vitest';

import { readMask } from '../lib/eval/dataset.js';
import { Engine } from '../lib/index.js';
import { auroc, pixelAuroc } from '../lib/eval/metrics.js';
import { syntheticDataset } from './support/data.js';

const base = { head: false, backbone: 'random_cnn', resize: null, crop: null, coreset: { ratio: 0.25 } } as const;

describe('engine on synthetic defects (random_cnn)', () => {
  let engine: Engine;
  let data: Awaited<ReturnType<typeof syntheticDataset>>;

  beforeAll(async () => {
    data = await syntheticDataset();
    engine = await Engine.create(base);
  });

  it('fits, reports progress, and separates defects (image AUROC >= 0.9)', async () => {
    const stages = new Set<string>();
    const summary = await engine.fit(data.train, { onProgress: (p) => stages.add(p.stage) });
    // Every image in the bank, and every one scored leave-one-image-out for the threshold.
    expect(summary.calibrationImages).toBe(data.train.length);
    expect(summary.images).toBe(data.train.length);
    expect(summary.bankRows).toBe(Math.floor(summary.patches * 0.25));
    expect([...stages]).toEqual(['embed', 'coreset', 'calibrate']);
    const results = await engine.scoreMany(data.test.map((t) => t.path));
    const image = auroc(results.map((r) => r.score), data.test.map((t) => t.label));
    expect(image).toBeGreaterThanOrEqual(0.9);
    // Maps point at the defects: pixel AUROC over the defect images' masks.
    const maps: Float32Array[] = [];
    const masks: Uint8Array[] = [];
    for (const [i, t] of data.test.entries()) {
      if (!t.maskPath) continue;
      maps.push(results[i].map);
      masks.push(await readMask(t.maskPath, results[i].width, results[i].height));
    }
    expect(pixelAuroc(maps, masks)).toBeGreaterThanOrEqual(0.85);
  });

  it('returns maps at the original image size', async () => {
    const r = await engine.score(data.test[0].path);
    expect(r.width).toBe(96);
    expect(r.height).toBe(96);
    expect(r.map).toBeInstanceOf(Float32Array);
    expect(r.map.length).toBe(96 * 96);
    expect(Math.max(...r.map)).toBeGreaterThan(0);
  });

  it('score() and scoreMany() agree exactly (a CPU batch is scored image by image)', async () => {
    const paths = data.test.slice(0, 3).map((t) => t.path);
    const many = await engine.scoreMany(paths);
    for (const [i, p] of paths.entries()) {
      const one = await engine.score(p);
      expect(one.score).toBe(many[i].score);
      expect(one.map).toEqual(many[i].map);
    }
  });

  it("fitPrecision 'float16' halves the staged features and keeps the scores within 1%", async () => {
    const half = await Engine.create({ head: false, backbone: 'random_cnn', resize: 64, crop: 64, coreset: { ratio: 0.2 }, calibration: false, fitPrecision: 'float16' });
    const full = await Engine.create({ head: false, backbone: 'random_cnn', resize: 64, crop: 64, coreset: { ratio: 0.2 }, calibration: false });
    const train = data.train.slice(0, 8);
    const [a, b] = [await half.fit(train), await full.fit(train)];
    expect(a.bankRows).toBe(b.bankRows);
    expect(half.options.fitPrecision).toBe('float16');
    for (const t of data.test.slice(0, 6)) {
      const [x, y] = [(await half.score(t.path)).score, (await full.score(t.path)).score];
      expect(Math.abs(x - y) / y).toBeLessThan(0.01);
    }
    await expect(Engine.create({ backbone: 'random_cnn', fitPrecision: 'float8' as never })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
  });

  it('is deterministic for a seed and differs across seeds', async () => {
    const train = data.train.slice(0, 6);
    const probe = data.test[data.test.length - 1].path;
    const scoreWith = async (seed: number) => {
      const e = await Engine.create({ ...base, seed });
      await e.fit(train);
      return (await e.score(probe)).score;
    };
    const a = await scoreWith(7);
    expect(await scoreWith(7)).toBe(a);
    expect(await scoreWith(8)).not.toBe(a);
  });
});

describe('engine on other image shapes', () => {
  it('handles greyscale, non-square images with squash resize and crop', async () => {
    const data = await syntheticDataset({ channels: 1, width: 120, height: 80, nTrain: 12, nGood: 4, nDefect: 6 });
    const engine = await Engine.create({ head: false, backbone: 'random_cnn', resizeMode: 'squash', resize: 112, crop: 96, coreset: { ratio: 0.5 } });
    await engine.fit(data.train);
    const results = await engine.scoreMany(data.test.map((t) => t.path));
    for (const r of results) expect([r.width, r.height, r.map.length]).toEqual([120, 80, 120 * 80]);
    expect(auroc(results.map((r) => r.score), data.test.map((t) => t.label))).toBeGreaterThanOrEqual(0.8);
  });

  it('scores raw frames, RGBA frames and encoded buffers alike', async () => {
    const data = await syntheticDataset();
    const engine = await Engine.create({ ...base, coreset: { ratio: 1 } });
    await engine.fit(data.train.slice(0, 4));
    const sharp = (await import('sharp')).default;
    const { data: rgb, info } = await sharp(data.test[0].path).raw().toBuffer({ resolveWithObject: true });
    const { data: rgba } = await sharp(data.test[0].path).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    const fromPath = await engine.score(data.test[0].path);
    const fromRaw = await engine.score({ data: rgb, width: info.width, height: info.height, channels: 3 });
    const fromRgba = await engine.score({ data: rgba, width: info.width, height: info.height, channels: 4 });
    const fromPng = await engine.score(await sharp(data.test[0].path).png().toBuffer());
    expect(fromRaw.score).toBe(fromPath.score);
    expect(fromRgba.score).toBe(fromPath.score);
    expect(fromPng.score).toBe(fromPath.score);
  });
});
