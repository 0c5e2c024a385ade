// Concurrent score() calls are gathered into native batches: each caller gets exactly the result
// of a call on its own, one bad image does not fail its batch-mates, and calls keep their order
// relative to fit and save.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import path from 'node:path';

import { Engine, ReconpatchError, type ScoreResult } from '../lib/index.js';
import { syntheticDataset, tempDir } from './support/data.js';

const base = { head: false, backbone: 'random_cnn', resize: 64, crop: 64, coreset: { ratio: 0.2 }, calibration: false } as const;

describe('batched scoring', () => {
  const dir = tempDir('batching');
  let train: string[];
  let probes: string[];
  let sequential: ScoreResult[];

  beforeAll(async () => {
    const data = await syntheticDataset();
    train = data.train.slice(0, 8);
    probes = data.test.slice(0, 8).map((t) => t.path);
    const engine = await Engine.create({ ...base, batching: false });
    await engine.fit(train);
    sequential = [];
    for (const p of probes) sequential.push(await engine.score(p));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('gives 32 concurrent callers exactly the sequential results, in native batches', async () => {
    const engine = await Engine.create({ ...base, batching: { maxBatch: 8 } });
    await engine.fit(train);
    const inputs = Array.from({ length: 32 }, (_, i) => i % probes.length);
    const results = await Promise.all(inputs.map((i) => engine.score(probes[i])));
    for (const [k, i] of inputs.entries()) {
      expect(results[k].score).toBe(sequential[i].score); // bit for bit, not approximately
      expect(results[k].map).toEqual(sequential[i].map);
    }
    const { calls, batches, maxBatch } = engine.info.batching;
    expect(calls).toBe(32);
    expect(maxBatch).toBe(8);
    expect(batches).toBeGreaterThanOrEqual(4); // never more than 8 per batch
    expect(batches).toBeLessThan(32); // calls that waited were batched
  });

  it('scores every call on its own with batching: false', async () => {
    const engine = await Engine.create({ ...base, batching: false });
    await engine.fit(train);
    await Promise.all(probes.map((p) => engine.score(p)));
    expect(engine.info.batching).toMatchObject({ calls: probes.length, batches: probes.length });
  });

  it('holds an idle batch open for maxWaitMs so that later calls join it', async () => {
    const engine = await Engine.create({ ...base, batching: { maxBatch: 4, maxWaitMs: 200 } });
    await engine.fit(train);
    const first = engine.score(probes[0]);
    await new Promise((r) => setTimeout(r, 20));
    const rest = probes.slice(1, 4).map((p) => engine.score(p));
    const results = await Promise.all([first, ...rest]);
    expect(results.map((r) => r.score)).toEqual(sequential.slice(0, 4).map((r) => r.score));
    expect(engine.info.batching).toMatchObject({ calls: 4, batches: 1 });
  });

  it('reports a bad image to its own caller only', async () => {
    const engine = await Engine.create({ ...base, resize: null, crop: null, batching: { maxBatch: 8 } });
    await engine.fit(train);
    const alone = await Promise.all(probes.slice(0, 3).map(async (p) => (await engine.score(p)).score));
    const tooSmall = { data: new Uint8Array(4 * 4 * 3), width: 4, height: 4, channels: 3 as const }; // decodes, cannot embed
    const blocker = engine.score(probes[0]); // keeps the engine busy so that the next four form one batch
    const settled = await Promise.allSettled([probes[0], tooSmall, probes[1], probes[2]].map((p) => engine.score(p)));
    await blocker;
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    const error = (settled[1] as PromiseRejectedResult).reason as ReconpatchError;
    expect(error).toBeInstanceOf(ReconpatchError);
    expect(error.code).toBe('ERR_INVALID_IMAGE');
    const scores = settled.filter((s) => s.status === 'fulfilled').map((s) => (s as PromiseFulfilledResult<ScoreResult>).value.score);
    expect(scores).toEqual(alone);
  });

  it('keeps call order around fit: calls made before a fit see the old model, calls after it the new one', async () => {
    const engine = await Engine.create({ ...base, batching: { maxBatch: 16 } });
    await engine.fit(train);
    const other = (await syntheticDataset({ seed: 7 })).train.slice(0, 8);
    const reference = await Engine.create({ ...base, batching: false });
    await reference.fit(other);
    const after = await reference.score(probes[0]);

    // No pause: a call takes its place when it is made, even while its image is still decoding.
    const before = [engine.score(probes[0]), engine.score(probes[0])];
    const refit = engine.fit(other);
    const later = [engine.score(probes[0]), engine.score(probes[0])];
    await refit;
    expect((await Promise.all(before)).map((r) => r.score)).toEqual([sequential[0].score, sequential[0].score]);
    expect((await Promise.all(later)).map((r) => r.score)).toEqual([after.score, after.score]);
    expect(after.score).not.toBe(sequential[0].score);
  });

  it('validates the batching options and the load-time options (batching, threads)', async () => {
    for (const batching of [{ maxBatch: 0 }, { maxBatch: 1.5 }, { maxWaitMs: -1 }, { size: 4 }, 'yes']) {
      const e = await Engine.create({ ...base, batching: batching as never }).catch((err: unknown) => err);
      expect(e).toBeInstanceOf(ReconpatchError);
      expect((e as ReconpatchError).code).toBe('ERR_INVALID_OPTION');
    }
    const engine = await Engine.create({ ...base });
    await engine.fit(train);
    const file = path.join(dir, 'model.rcp');
    await engine.save(file);
    const loaded = await Engine.load(file, { batching: { maxBatch: 2 } });
    expect(loaded.info.batching.maxBatch).toBe(2);
    expect((await loaded.score(probes[0])).score).toBe(sequential[0].score);
    for (const bad of [{ batch: 2 }, { threads: 0 }, { threads: 1.5 }]) {
      const e = await Engine.load(file, bad as never).catch((err: unknown) => err);
      expect((e as ReconpatchError).code).toBe('ERR_INVALID_OPTION');
    }
    const oneThread = await Engine.load(file, { threads: 1 });
    expect(Math.abs((await oneThread.score(probes[0])).score - sequential[0].score) / sequential[0].score).toBeLessThan(1e-5);
  });
});
