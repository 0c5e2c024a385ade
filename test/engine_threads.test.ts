// Each engine runs all of its native work on one thread of its own (native/addon/compute_lane.h):
// libtorch's OpenMP keeps a worker pool per thread that runs its kernels, and more pools than
// cores put every pool's workers to sleep between kernels (bench/NOTES.md). Checked through the
// test addon's stage timer, which records the thread of every engine call.
import './support/test_addon.js'; // internals: the test addon (first, before any native() call)
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/index.js';
import { nativeInternals } from '../lib/native.js';
import { syntheticDataset } from './support/data.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'reconpatch-engine-threads-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('engine threads', () => {
  it('runs every call of one engine on one thread, and each engine on its own', async () => {
    const data = await syntheticDataset();
    const internals = nativeInternals();
    internals.startStageTimer();
    const options = { head: false, backbone: 'random_cnn', resize: null, crop: null, coreset: { ratio: 0.25 }, calibration: false } as const;
    const a = await Engine.create(options);
    const b = await Engine.create(options);
    const train = data.train.slice(0, 6);
    await Promise.all([a.fit(train), b.fit(train)]);
    // Calls of both engines at once, many times: libuv's pool threads take them in turn.
    const probes = data.test.slice(0, 6).map((t) => t.path);
    for (let round = 0; round < 4; round++) {
      await Promise.all(probes.flatMap((p) => [a.score(p), b.score(p)]));
      await Promise.all([a.save(path.join(dir, 'a.rcp')), b.save(path.join(dir, 'b.rcp'))]);
    }
    const c = await Engine.load(path.join(dir, 'a.rcp')); // decoded and built on the new engine's thread
    const before = (await a.score(probes[0])).score;
    expect((await c.score(probes[0])).score).toBe(before);

    // The calls that compute (the synchronous ones, e.g. fitBegin, run on the JS thread and start
    // no kernels): each engine on one thread, each engine on another.
    const SYNC = new Set(['fitBegin', 'updateBegin', 'fitAbort', 'destroy']);
    const rows = internals.readCallThreads().filter((r) => !SYNC.has(r.operation));
    const threadsOf = new Map<number, Set<number>>();
    for (const r of rows) threadsOf.set(r.engine, (threadsOf.get(r.engine) ?? new Set()).add(r.thread));
    const decoded = threadsOf.get(0);
    threadsOf.delete(0);
    expect(threadsOf.size).toBe(3);
    for (const [engine, threads] of threadsOf) expect([engine, threads.size]).toEqual([engine, 1]);
    const all = [...threadsOf.values()].map((t) => [...t][0]);
    expect(new Set(all).size).toBe(3);
    // The model file was decoded on the thread its engine (the last one) then ran on.
    expect(decoded && [...decoded]).toEqual([all[2]]);
    for (const e of [a, b, c]) e.dispose();
  });
});
