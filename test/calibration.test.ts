// Calibration from held-out nominal images (normalizedScore, isAnomaly) and heatmap overlays.
import { rmSync } from 'node:fs';
import path from 'node:path';

import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { calibrate, holdoutPicker, normalize } from '../lib/calibration.js';
import { readMask } from '../lib/eval/dataset.js';
import { jet } from '../lib/heatmap.js';
import { Engine } from '../lib/index.js';
import { syntheticDataset, tempDir } from './support/data.js';

const picked = (total: number | undefined, n: number) => Array.from({ length: n }, (_, i) => i).filter(holdoutPicker(total, 0.1, 3));

describe('calibration maths', () => {
  it('holds out 10% spread evenly, at least 3, never more than half', () => {
    expect(picked(24, 24)).toHaveLength(3);
    expect(picked(64, 64)).toEqual([10, 21, 31, 42, 53, 63]);
    expect(picked(5, 5)).toHaveLength(2);
    expect(picked(1, 1)).toEqual([]);
    expect(picked(undefined, 30)).toEqual([9, 19, 29]); // stream of unknown length: every 10th
  });

  it('puts the threshold at mean + 3 std and maps it to 0.5', () => {
    const c = calibrate([1, 2, 3], [new Float32Array([0.5, 0.5])]);
    expect(c.scoreMean).toBe(2);
    expect(c.scoreStd).toBe(1);
    expect(c.threshold).toBe(5);
    expect(c.low).toBe(0.5);
    expect(normalize(5, c)).toBe(0.5);
    expect(normalize(0.5, c)).toBe(0);
    expect(normalize(100, c)).toBe(1);
    expect(normalize(2.75, c)).toBeCloseTo(0.25, 12);
  });

  it('jet runs blue -> green -> red', () => {
    expect(jet(0)).toEqual([0, 0, 128]);
    expect(jet(0.5)[1]).toBe(255);
    expect(jet(1)).toEqual([128, 0, 0]);
  });
});

describe('calibrated engine', () => {
  const dir = tempDir('calibration');
  let engine: Engine;
  let data: Awaited<ReturnType<typeof syntheticDataset>>;
  beforeAll(async () => {
    data = await syntheticDataset();
    engine = await Engine.create({ backbone: 'random_cnn', resize: null, crop: null, coreset: { ratio: 0.25 } });
    await engine.fit(data.train);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('flags defects and passes good parts using nominal data only', async () => {
    const c = engine.info.calibration;
    expect(c?.images).toBe(3);
    const results = await engine.scoreMany(data.test.map((t) => t.path));
    const good = data.test.map((t, i) => [t, results[i]] as const).filter(([t]) => t.label === 0);
    const bad = data.test.map((t, i) => [t, results[i]] as const).filter(([t]) => t.label === 1);
    for (const [, r] of [...good, ...bad]) {
      expect(r.normalizedScore).toBeGreaterThanOrEqual(0);
      expect(r.normalizedScore).toBeLessThanOrEqual(1);
      expect(r.isAnomaly).toBe((r.normalizedScore as number) >= 0.5);
    }
    expect(good.filter(([, r]) => !r.isAnomaly).length / good.length).toBeGreaterThanOrEqual(0.75);
    expect(bad.filter(([, r]) => r.isAnomaly).length / bad.length).toBeGreaterThanOrEqual(0.75);
  });

  it('keeps the calibration in the model file', async () => {
    const file = path.join(dir, 'cal.rcp');
    await engine.save(file);
    const loaded = await Engine.load(file);
    expect(loaded.info.calibration).toEqual(engine.info.calibration);
    const probe = data.test[0].path;
    expect((await loaded.score(probe)).normalizedScore).toBe((await engine.score(probe)).normalizedScore);
  });

  it('rejects a bad held-out image before anything changes', async () => {
    const before = engine.info;
    const tiny = { data: new Uint8Array(4 * 4 * 3), width: 4, height: 4, channels: 3 as const };
    const images = [...data.train.slice(0, 3), tiny, ...data.train.slice(4, 10)]; // index 3 is held out
    expect(picked(10, 10)).toContain(3);
    await expect(engine.fit(images)).rejects.toMatchObject({ code: 'ERR_INVALID_IMAGE' });
    expect(engine.info).toEqual(before);
  });

  it('has no calibration when disabled', async () => {
    const e = await Engine.create({ backbone: 'random_cnn', resize: null, crop: null, calibration: false });
    await e.fit(data.train.slice(0, 4));
    const r = await e.score(data.test[0].path);
    expect([r.normalizedScore, r.isAnomaly, e.info.calibration]).toEqual([null, null, null]);
  });

  it('draws a heatmap PNG at the image size that is hottest on the defect', async () => {
    const defect = data.test.find((t) => t.label === 1 && t.defect === 'blob');
    if (!defect?.maskPath) throw new Error('no blob defect in the synthetic set');
    const r = await engine.score(defect.path, { heatmap: 'png' });
    expect(r.heatmap).toBeInstanceOf(Buffer);
    const { data: rgb, info } = await sharp(r.heatmap as Buffer).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels]).toEqual([96, 96, 3]);
    const mask = await readMask(defect.maskPath, 96, 96);
    let inside = 0;
    let outside = 0;
    let nIn = 0;
    for (let p = 0; p < mask.length; p++) {
      const redness = rgb[p * 3] - rgb[p * 3 + 2];
      if (mask[p]) { inside += redness; nIn++; } else outside += redness;
    }
    expect(inside / nIn).toBeGreaterThan(outside / (mask.length - nIn) + 40);
    await expect(engine.score(defect.path, { heatmap: 'jpeg' as never })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
  });
});
