// scoreStream / createScoreStream: input order, bounded pulling, per-item errors, abort.
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import { beforeAll, describe, expect, it } from 'vitest';

import { Engine, type ScoreStreamItem } from '../lib/index.js';
import { syntheticDataset } from './support/data.js';

describe('scoreStream', () => {
  let engine: Engine;
  let paths: string[];
  let expected: number[];

  beforeAll(async () => {
    const data = await syntheticDataset();
    engine = await Engine.create({ head: false, backbone: 'random_cnn', resize: null, crop: null, coreset: { ratio: 0.25 }, calibration: false });
    await engine.fit(data.train.slice(0, 8));
    paths = data.test.map((t) => t.path);
    expected = [];
    for (const p of paths) expected.push((await engine.score(p)).score);
  });

  it('yields every result in input order, pulling at most `concurrency` ahead', async () => {
    let pulled = 0;
    let consumed = 0;
    let maxAhead = 0;
    async function* frames() {
      for (let round = 0; round < 3; round++)
        for (const p of paths) {
          pulled++;
          maxAhead = Math.max(maxAhead, pulled - consumed);
          yield p;
        }
    }
    const scores: number[] = [];
    for await (const r of engine.scoreStream(frames(), { concurrency: 3 })) {
      expect(r.index).toBe(scores.length);
      scores.push(r.error ? NaN : r.score);
      consumed++;
    }
    expect(scores).toEqual([...expected, ...expected, ...expected]);
    expect(maxAhead).toBeLessThanOrEqual(4); // 3 in flight + the one being pulled
  });

  it("reports a bad item and goes on with onError: 'yield'; ends the stream by default", async () => {
    const inputs = [paths[0], Buffer.from('not an image'), paths[1]];
    const items: ScoreStreamItem[] = [];
    for await (const r of engine.scoreStream(inputs, { onError: 'yield' })) items.push(r);
    expect(items.map((r) => r.index)).toEqual([0, 1, 2]);
    expect(items[1].error?.code).toBe('ERR_INVALID_IMAGE');
    expect(items[2].error).toBeUndefined();
    const drain = async () => {
      for await (const _ of engine.scoreStream(inputs)) void _;
    };
    await expect(drain()).rejects.toMatchObject({ code: 'ERR_INVALID_IMAGE' });
  });

  it('stops on abort and leaves the engine usable', async () => {
    const ctrl = new AbortController();
    function* endless() {
      for (;;) yield paths[0];
    }
    let n = 0;
    const run = async () => {
      for await (const _ of engine.scoreStream(endless(), { signal: ctrl.signal })) if (++n === 5) ctrl.abort();
    };
    await expect(run()).rejects.toMatchObject({ code: 'ERR_ABORTED' });
    expect(n).toBe(5);
    expect((await engine.score(paths[0])).score).toBe(expected[0]);
  });

  it('streams 1,000 generated frames with flat memory', async () => {
    const e = await Engine.create({ head: false, backbone: 'random_cnn', resize: null, crop: null, coreset: { ratio: 0.25 }, calibration: false, batchSize: 2 });
    const frame = (i: number) => {
      const data = new Uint8Array(64 * 64 * 3);
      for (let p = 0; p < data.length; p++) data[p] = (p * 7 + i * 13) & 255;
      return { data, width: 64, height: 64, channels: 3 as const };
    };
    await e.fit([frame(0), frame(1), frame(2)]);
    function* frames() {
      for (let i = 0; i < 1000; i++) yield frame(i);
    }
    let n = 0;
    let rssAt200 = 0;
    for await (const r of e.scoreStream(frames(), { concurrency: 4 })) {
      expect(r.index).toBe(n);
      if (++n === 200) rssAt200 = process.memoryUsage().rss;
    }
    expect(n).toBe(1000);
    const growthMb = (process.memoryUsage().rss - rssAt200) / 2 ** 20;
    expect(growthMb).toBeLessThan(64); // 800 more frames (12 KB each + 16 KB maps) must not accumulate
  });

  it('works as an object-mode stream in pipeline()', async () => {
    const out: number[] = [];
    await pipeline(
      async function* () {
        yield* paths;
      },
      engine.createScoreStream({ concurrency: 2 }),
      new Writable({
        objectMode: true,
        write(item: ScoreStreamItem, _enc, cb) {
          out.push(item.error ? NaN : item.score);
          cb();
        },
      }),
    );
    expect(out).toEqual(expected);
  });
});
