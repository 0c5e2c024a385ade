// A fit from shards staged on other engines (Engine.stage, fit({ shards }): the distributed fit's
// engine side, core/io/staged_file.*): the same rows in the same order build the same model as
// one bounded fit; reductions in the shards keep the quality; a damaged, foreign or mismatched
// shard is refused with a typed error and leaves the engine as it was.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine, type EngineOptions, type StagedShard } from '../lib/index.js';
import { auroc } from '../lib/eval/metrics.js';
import { syntheticDataset } from './support/data.js';

const base: EngineOptions = { head: false, backbone: 'random_cnn', resize: null, crop: null, coreset: { ratio: 0.1 }, seed: 4, threads: 1 };
const NO_REDUCE = 1 << 22;

describe('Engine.stage and fit({ shards })', () => {
  let train: string[];
  let test: { path: string; label: number }[];
  let heldOut: string[];
  let fitted: string[];
  let a: Engine;
  let b: Engine;

  beforeAll(async () => {
    const data = await syntheticDataset();
    train = data.train;
    test = data.test;
    // What a bounded single fit holds out (10%, evenly spread: holdoutPicker), and the rest.
    const { holdoutPicker } = await import('../lib/calibration.js');
    const pick = holdoutPicker(train.length, 0.1, 3);
    heldOut = train.filter((_, i) => pick(i));
    fitted = train.filter((_, i) => !pick(i));
    [a, b] = [await Engine.create(base), await Engine.create(base)];
  });

  afterAll(async () => {
    await Promise.all([a?.dispose(), b?.dispose()]);
  });

  it('two shards, unreduced, build the model one bounded fit builds: bank, threshold, scores; stage leaves the engine unfitted', async () => {
    const half = Math.floor(fitted.length / 2);
    const s1 = await a.stage(fitted.slice(0, half), { maxStagedPatches: NO_REDUCE });
    const s2 = await a.stage(fitted.slice(half), { maxStagedPatches: NO_REDUCE });
    expect(a.info.fitted).toBe(false);
    expect(s1.images).toBe(half);
    expect(s1.rows).toBe(s1.patches);
    expect(s1.sizes.minWidth).toBeGreaterThan(0);
    const merged = await b.fit(heldOut, { shards: [s1.bytes, s2.bytes], maxStagedPatches: NO_REDUCE });
    const single = await Engine.create(base);
    try {
      const one = await single.fit(train, { maxStagedPatches: NO_REDUCE });
      expect(merged).toMatchObject({ images: one.images, patches: one.patches, bankRows: one.bankRows, calibrationImages: one.calibrationImages });
      expect(merged.calibration!.threshold).toBeCloseTo(one.calibration!.threshold, 6);
      expect(b.info.model!.trainingSet.sizes).toEqual(single.info.model!.trainingSet.sizes);
      const [x, y] = [await b.scoreMany(test.map((t) => t.path)), await single.scoreMany(test.map((t) => t.path))];
      for (let i = 0; i < x.length; i++) expect(Math.abs(x[i].score - y[i].score) / y[i].score).toBeLessThan(1e-5);
    } finally {
      await single.dispose();
    }
  });

  it('shards that reduce (merge and reduce on both sides) keep the ranking: AUROC within 0.02 of the unreduced fit; an AsyncIterable is read one shard at a time', async () => {
    const third = Math.ceil(fitted.length / 3);
    const parts = [fitted.slice(0, third), fitted.slice(third, 2 * third), fitted.slice(2 * third)];
    const budget = 512;
    const shards: StagedShard[] = [];
    for (const p of parts) shards.push(await a.stage(p, { maxStagedPatches: budget }));
    expect(shards.every((s) => s.rows <= budget && s.rows < s.patches)).toBe(true);
    let read = 0;
    async function* lazily() {
      for (const s of shards) {
        read++;
        yield s.bytes;
      }
    }
    const merged = await b.fit(heldOut, { shards: lazily(), maxStagedPatches: budget });
    expect(read).toBe(3);
    expect(merged.patches).toBe(shards.reduce((n, s) => n + s.patches, 0));
    const labels = test.map((t) => t.label);
    const reduced = auroc((await b.scoreMany(test.map((t) => t.path))).map((r) => r.score), labels);
    const full = await Engine.create(base);
    try {
      await full.fit(train);
      const unreduced = auroc((await full.scoreMany(test.map((t) => t.path))).map((r) => r.score), labels);
      expect(Math.abs(reduced - unreduced), `reduced ${reduced} vs ${unreduced}`).toBeLessThanOrEqual(0.02);
    } finally {
      await full.dispose();
    }
  });

  it('a damaged, foreign or mismatched shard is refused with its code, and the engine keeps its model', async () => {
    const s = await a.stage(fitted.slice(0, 4));
    const version = b.info.model!.version;
    const bad = Buffer.from(s.bytes);
    bad[bad.length >> 1] ^= 0xff;
    await expect(b.fit(heldOut, { shards: [bad] })).rejects.toMatchObject({ code: 'ERR_MODEL_FILE', message: expect.stringContaining('checksum') });
    await expect(b.fit(heldOut, { shards: [await b.saveBytes()] })).rejects.toMatchObject({ code: 'ERR_MODEL_FILE', message: expect.stringContaining('not reconpatch staged features') });
    // random_cnn's weights come from the seed: another seed is another backbone.
    for (const [options, why] of [[{ ...base, seed: 5 }, 'another backbone'], [{ ...base, coreset: { ratio: 0.2 } }, 'other options (coresetRatio=']] as const) {
      const other = await Engine.create(options);
      try {
        await expect(other.fit(heldOut, { shards: [s.bytes] })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining(why) });
        expect(other.info.fitted).toBe(false);
      } finally {
        await other.dispose();
      }
    }
    await expect(b.fit(heldOut, { shards: [] })).rejects.toMatchObject({ code: 'ERR_EMPTY_TRAINING_SET' });
    await expect(b.fit(heldOut, { shards: 'x' as unknown as Uint8Array[] })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    expect(b.info.model!.version).toBe(version);
    const auto = await Engine.create({ ...base, head: 'auto' });
    try {
      await expect(auto.fit(heldOut, { shards: [s.bytes] })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining("head: 'auto'") });
    } finally {
      await auto.dispose();
    }
  });

  it('stage refuses an empty input and can be aborted; the engine stays usable', async () => {
    await expect(a.stage([])).rejects.toMatchObject({ code: 'ERR_EMPTY_TRAINING_SET' });
    const controller = new AbortController();
    controller.abort();
    await expect(a.stage(fitted, { signal: controller.signal })).rejects.toMatchObject({ code: 'ERR_ABORTED' });
    const s = await a.stage(fitted.slice(0, 2));
    expect(s.images).toBe(2);
  });
});
