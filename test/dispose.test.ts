// dispose(): an engine's (an ensemble's) native memory is dropped when asked, not when the GC gets
// to it. Calls made before dispose() finish with their results; every call after it is
// ERR_DISPOSED; a second dispose() is the same promise. The native contract underneath: release()
// drops the engine at once (true) unless a running call still holds it (false: that call finishes
// normally, nothing is freed under it), and every later native call throws ERR_DISPOSED.
import { describe, expect, it } from 'vitest';

import { nativeOf } from '../lib/engine/engine.js';
import { toRawFrame } from '../lib/io/images.js';
import { Engine, Ensemble, ReconpatchError } from '../lib/index.js';
import { native } from '../lib/native.js';
import { syntheticDataset, tempDir } from './support/data.js';

async function errorOf(p: Promise<unknown> | (() => unknown)): Promise<ReconpatchError> {
  const e = await (typeof p === 'function' ? Promise.resolve().then(p) : p).then(() => undefined, (err: unknown) => err);
  expect(e).toBeInstanceOf(ReconpatchError);
  return e as ReconpatchError;
}

/** The code of a native call's error (the addon's own errors: plain Errors with a `code`). */
function nativeCode(call: () => unknown): Promise<string | undefined> {
  return Promise.resolve().then(call).then(() => undefined, (err: { code?: string }) => err.code);
}

describe('dispose', () => {
  it('finishes the calls made before it, then refuses every call with ERR_DISPOSED; idempotent', async () => {
    const data = await syntheticDataset();
    const engine = await Engine.create({ head: false, backbone: 'random_cnn', seed: 1 });
    await engine.fit(data.train.slice(0, 6));
    const image = data.test[0].path;
    const alone = await engine.score(image);
    // Queued before dispose(): a batched score, a scoreMany, a save.
    const before = [engine.score(image), engine.scoreMany([image, image]), engine.saveBytes()] as const;
    const n = nativeOf(engine);
    const first = engine.dispose();
    expect(engine.dispose()).toBe(first);
    const [one, many, bytes] = await Promise.all(before);
    expect(one.score).toBe(alone.score);
    expect(many.map((r) => r.score)).toEqual([alone.score, alone.score]);
    expect(bytes.length).toBeGreaterThan(0);
    await first;
    // The native engine is gone: its own calls are refused too.
    expect(await nativeCode(() => n.info())).toBe('ERR_DISPOSED');
    const calls: [string, () => unknown][] = [
      ['score', () => engine.score(image)], ['scoreMany', () => engine.scoreMany([image])],
      ['fit', () => engine.fit(data.train.slice(0, 2))], ['update', () => engine.update([image])],
      ['calibrate', () => engine.calibrate([image])], ['setThreshold', () => engine.setThreshold(1)],
      ['save', () => engine.save(`${tempDir('dispose')}/x.rcp`)], ['saveBytes', () => engine.saveBytes()], ['embed', () => engine.embed(image)],
      ['info', () => engine.info], ['options', () => engine.options],
      ['scoreStream', async () => { for await (const r of engine.scoreStream([image])) void r; }],
    ];
    for (const [name, call] of calls) {
      const e = await errorOf(call);
      expect(e.code, name).toBe('ERR_DISPOSED');
      expect(e.message, name).toMatch(/create or load a new one/);
    }
    await engine.dispose(); // still fine, still the same
  });

  it('an ensemble disposes every member', async () => {
    const data = await syntheticDataset();
    const ensemble = await Ensemble.create({ members: [{ head: false, backbone: 'random_cnn', seed: 1 }, { head: false, backbone: 'random_cnn', seed: 2 }] });
    await ensemble.fit(data.train.slice(0, 6));
    const pending = ensemble.score(data.test[0].path);
    await ensemble.dispose();
    expect(Number.isFinite((await pending).score)).toBe(true);
    for (const call of [() => ensemble.info, () => ensemble.scoreMembers([data.test[0].path]), () => ensemble.score(data.test[0].path), () => ensemble.saveBytes()])
      expect((await errorOf(call)).code).toBe('ERR_DISPOSED');
  });

  it('native release(): frees at once when idle; a running call keeps its engine until it ends', async () => {
    const data = await syntheticDataset();
    const proto = await Engine.create({ head: false, backbone: 'random_cnn' });
    const options = proto.options;
    await proto.dispose();
    const n = await native().createEngine(options);
    const frames = await Promise.all(data.train.slice(0, 4).map((p, i) => toRawFrame(p, i)));
    n.fitBegin('fit');
    await n.fitAdd(frames);
    await n.fitEnd(undefined);
    n.fitCommit('');
    const running = n.score(frames);
    expect(n.release()).toBe(false); // the score's worker still holds the engine
    expect((await running).length).toBe(4); // and finishes on it
    expect(n.release()).toBe(false); // already released: nothing to drop
    expect(await nativeCode(() => n.score(frames))).toBe('ERR_DISPOSED');
    const idle = await native().createEngine(options);
    expect(idle.release()).toBe(true); // nothing else held it: freed now
  });
});
