// A fit is a transaction: the new model and its calibration replace the old ones together, only
// when everything (embedding, head, coreset, calibration) has succeeded. An abort or a failure in
// any stage leaves the previous model and calibration in place, and the engine keeps serving.
// Reading `info` never waits for a running fit.
import { monitorEventLoopDelay } from 'node:perf_hooks';

import { beforeAll, describe, expect, it } from 'vitest';

import { Engine, type EngineOptions, Ensemble, type Progress, ReconpatchError } from '../lib/index.js';
import { syntheticDataset } from './support/data.js';

const base: EngineOptions = { head: false, backbone: 'random_cnn', resize: null, crop: null, coreset: { ratio: 0.25 }, seed: 2 };

describe('fit transaction', () => {
  let first: string[];
  let second: string[];
  let probe: string;

  beforeAll(async () => {
    const a = await syntheticDataset();
    const b = await syntheticDataset({ seed: 7 });
    first = a.train.slice(0, 12);
    second = b.train.slice(0, 12);
    probe = a.test[0].path;
  });

  /** An engine fitted on `first`, and what it answers before any refit. */
  async function fitted(options: EngineOptions = base) {
    const engine = await Engine.create(options);
    await engine.fit(first);
    const info = engine.info;
    const result = await engine.score(probe);
    return { engine, info, score: result.score, normalized: result.normalizedScore };
  }

  async function expectUnchanged(e: Awaited<ReturnType<typeof fitted>>) {
    const { batching: _now, ...info } = e.engine.info; // call counts move on
    const { batching: _then, ...before } = e.info;
    expect(info).toEqual(before);
    const r = await e.engine.score(probe);
    expect(r.score).toBe(e.score);
    expect(r.normalizedScore).toBe(e.normalized);
  }

  async function failure(p: Promise<unknown>): Promise<ReconpatchError> {
    const err = await p.then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(ReconpatchError);
    return err as ReconpatchError;
  }

  it('an abort in any stage (embed, coreset, calibrate) keeps the previous model and calibration', async () => {
    const e = await fitted();
    expect(e.info.calibration).not.toBeNull();
    for (const stage of ['embed', 'coreset', 'calibrate'] as Progress['stage'][]) {
      const controller = new AbortController();
      const seen: string[] = [];
      const err = await failure(e.engine.fit(second, {
        signal: controller.signal,
        onProgress: (p) => {
          seen.push(p.stage);
          if (p.stage === stage) controller.abort();
        },
      }));
      expect(seen, `the fit reached the ${stage} stage`).toContain(stage);
      expect(err.code, stage).toBe('ERR_ABORTED');
      await expectUnchanged(e);
    }
  });

  it('a failure in any stage (the callback throws in embed, head, coreset or calibrate; the input throws) keeps the previous state', async () => {
    const e = await fitted({ ...base, head: { iterations: 3, batch: 64 } });
    for (const stage of ['embed', 'head', 'coreset', 'calibrate'] as Progress['stage'][]) {
      const boom = new Error(`boom in ${stage}`);
      const err = await failure(e.engine.fit(second, { onProgress: (p) => { if (p.stage === stage) throw boom; } }));
      expect(err.code, stage).toBe('ERR_CALLBACK');
      expect(err.cause).toBe(boom);
      expect(err.message).toContain(`boom in ${stage}`);
      await expectUnchanged(e);
    }
    const broken = new Error('camera went away');
    const input = (function* () {
      yield* second.slice(0, 5);
      throw broken;
    })();
    const err = await failure(e.engine.fit(input));
    expect(err.code).toBe('ERR_INPUT');
    expect(err.cause).toBe(broken);
    await expectUnchanged(e);

    // And then a fit that succeeds replaces model and calibration together.
    const summary = await e.engine.fit(second);
    expect(summary.images).toBe(second.length);
    expect(summary.calibrationImages).toBe(second.length);
    expect((await e.engine.score(probe)).score).not.toBe(e.score);
    expect(e.engine.info.calibration).not.toEqual(e.info.calibration);
    expect(e.engine.info.trainImages).toBe(summary.images);
  });

  it('an ensemble refit that fails in calibration keeps every member and the normalisers', async () => {
    const ensemble = await Ensemble.create({ members: [{ ...base, seed: 1 }, { ...base, seed: 2 }] });
    await ensemble.fit(first);
    const info = ensemble.info;
    const before = await ensemble.score(probe);
    const controller = new AbortController();
    const err = await failure(ensemble.fit(second, { signal: controller.signal, onProgress: (p) => { if (p.stage === 'calibrate') controller.abort(); } }));
    expect(err.code).toBe('ERR_ABORTED');
    expect(ensemble.info).toEqual(info);
    expect((await ensemble.score(probe)).score).toBe(before.score);
  });

  it('reading info during a fit never waits for it and shows the model still in use', async () => {
    // One intra-op thread: on a 2-core machine the other core stays free for the event loop.
    const e = await fitted({ ...base, head: { iterations: 20 }, threads: 1 });
    const histogram = monitorEventLoopDelay({ resolution: 5 });
    let reads = 0;
    let slowest = 0;
    let changed = false;
    const timer = setInterval(() => {
      const t = performance.now();
      const info = e.engine.info;
      slowest = Math.max(slowest, performance.now() - t);
      reads++;
      if (info.bankRows !== e.info.bankRows) changed = true;
    }, 5);
    histogram.enable();
    const started = performance.now();
    await e.engine.fit(second);
    const seconds = (performance.now() - started) / 1000;
    histogram.disable();
    clearInterval(timer);
    const maxMs = histogram.max / 1e6;
    console.info(`[transaction] fit with head: ${seconds.toFixed(1)} s, ${reads} info reads (slowest ${slowest.toFixed(2)} ms), event-loop delay max ${maxMs.toFixed(1)} ms, p99 ${(histogram.percentile(99) / 1e6).toFixed(1)} ms`);
    expect(seconds, 'the fit ran long enough to matter').toBeGreaterThan(0.5);
    expect(reads).toBeGreaterThan(20);
    expect(changed, 'info described the old model until the commit').toBe(false);
    // A read that waited for the fit would take about as long as the fit. On a quiet machine each
    // read takes well under a millisecond and the loop's delay stays near 9 ms, but on a loaded one
    // (CI ran 60 ms once) the thread waits for a core now and then, so only a delay on the scale of
    // the fit itself is counted as blocking; times belong in benchmarks, not assertions.
    expect(slowest).toBeLessThan((seconds * 1000) / 4);
    expect(maxMs).toBeLessThan((seconds * 1000) / 4);
  });
});
