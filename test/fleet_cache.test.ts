// The worker's model cache (lib/fleet/model_cache.ts) on a real model store, without Redis: a
// lease keeps its version alive across a publish and an eviction (a job in flight finishes on the
// version it started with), an evicted model is disposed on its last release, and a version that
// does not load falls back to the previous one without reloading on every job.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/engine/engine.js';
import { ModelCache } from '../lib/fleet/model_cache.js';
import { DirectoryModelStore } from '../lib/fleet/store.js';
import { syntheticDataset, tempDir } from './support/data.js';

describe('fleet model cache', () => {
  const dir = tempDir('fleet-cache');
  let store: DirectoryModelStore;
  let frame: string;
  let bytes: Buffer;
  const logs: string[] = [];

  /** The model with its threshold scaled: a new version of the same bank. */
  async function version(scale: number): Promise<Buffer> {
    const e = await Engine.loadBytes(bytes);
    await e.setThreshold(e.info.calibration!.threshold * scale);
    const b = await e.saveBytes();
    await e.dispose();
    return b;
  }

  beforeAll(async () => {
    const data = await syntheticDataset();
    const engine = await Engine.create({ head: false, backbone: 'random_cnn', resize: null, coreset: { ratio: 0.25 }, seed: 1 });
    await engine.fit(data.train.slice(0, 8), { modelId: 'part' });
    bytes = await engine.saveBytes();
    await engine.dispose();
    frame = data.test[0].path;
    store = new DirectoryModelStore(path.join(dir, 'store'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a lease outlives a publish and an eviction; the evicted model is disposed on its last release', async () => {
    const v1 = await store.publish(bytes);
    const cache = new ModelCache(store, { capacity: 1, log: (l) => logs.push(l) });
    const first = await cache.acquire('part');
    expect(first.entry.version).toBe(v1.version);
    const v2 = await store.publish(await version(1.5));
    const second = await cache.acquire('part');
    expect(second.entry.version).toBe(v2.version);
    expect(cache.stats).toEqual({ loaded: [`part@${v2.version}`], loads: 2 });
    // v1 was evicted (capacity 1) but is still leased: it scores, on its own version.
    expect((await first.model.score(frame)).modelVersion).toBe(v1.version);
    first.release();
    first.release(); // harmless
    await new Promise((r) => setTimeout(r, 50));
    await expect(first.model.score(frame)).rejects.toMatchObject({ code: 'ERR_DISPOSED' });
    expect((await second.model.score(frame)).modelVersion).toBe(v2.version);
    // The same version again: no load.
    const again = await cache.acquire('part');
    expect(again.model).toBe(second.model);
    expect(cache.stats.loads).toBe(2);
    second.release();
    again.release();
    await cache.close();
    await expect(second.model.score(frame)).rejects.toMatchObject({ code: 'ERR_DISPOSED' });
  });

  it('a version that does not load: the previous one serves (marked as a fallback), and it is not reloaded on every job', async () => {
    const cache = new ModelCache(store, { capacity: 2, log: (l) => logs.push(l) });
    const good = await cache.acquire('part');
    good.release();
    const bad = await store.publish(await version(2));
    writeFileSync(bad.file, readFileSync(bad.file).subarray(0, 64));
    const loadsBefore = cache.stats.loads;
    const a = await cache.acquire('part');
    expect(a.entry.version).toBe(good.entry.version);
    expect(a.fallback).toMatchObject({ version: bad.version, error: { code: expect.stringMatching(/^ERR_/) } });
    expect((await a.model.score(frame)).modelVersion).toBe(good.entry.version);
    const b = await cache.acquire('part');
    expect(b.fallback?.version).toBe(bad.version);
    expect(cache.stats.loads).toBe(loadsBefore + 1); // one failed try, then remembered
    expect(logs.filter((l) => l.includes(`part@${bad.version} failed to load`))).toHaveLength(1);
    a.release();
    b.release();
    // Nothing loaded before for this id: the load error itself.
    const fresh = new ModelCache(store, { capacity: 2 });
    await expect(fresh.acquire('part')).rejects.toMatchObject({ code: expect.stringMatching(/^ERR_/) });
    await expect(fresh.acquire('nope')).rejects.toMatchObject({ code: 'ERR_MODEL_NOT_FOUND' });
    await cache.close();
  });
});
