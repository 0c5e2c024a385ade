// The fleet on a real Redis with real worker processes (built dist/cli/main.js worker) and real
// model files in a model store: frames submitted through `reconpatch submit` and the FleetClient
// get exactly one verdict each, equal to a local engine's score; a poison frame yields its error
// code and the workers go on; publish and rollback switch versions between jobs; a version that
// does not load leaves the previous one serving; a worker SIGKILLed mid-run loses nothing.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import { Job, Queue, QueueEvents } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/engine/engine.js';
import { FleetClient } from '../lib/fleet/client.js';
import { INLINE_FRAME_MAX_BYTES, type ScoredVerdict, type Verdict } from '../lib/fleet/protocol.js';
import { DirectoryModelStore } from '../lib/fleet/store.js';
import { type WorkerProc, startWorkerProcess } from './support/fleet.js';
import { type RedisHandle, freePort, redisServer, startRedis } from './support/redis.js';
import { repoRoot, syntheticDataset, tempDir } from './support/data.js';

const run = promisify(execFile);
const cli = path.join(repoRoot, 'dist/cli/main.js');
const QUEUE = 'fleet-test';

/** A worker on the test queue (short locks: a dead worker's job is taken over within ~2 s). */
function startWorker(redis: string, store: string, extra: string[] = []): Promise<WorkerProc> {
  return startWorkerProcess(redis, store, ['--queue', QUEUE, '--threads', '1', '--lock-duration', '1500', '--stalled-interval', '500', ...extra]);
}

const scored = (v: Verdict): ScoredVerdict => {
  if (v.error) throw new Error(`${v.path}: ${v.error.code} ${v.error.message}`);
  return v;
};

describe.skipIf(!redisServer)('fleet: workers on Redis', () => {
  const dir = tempDir('fleet');
  const storeDir = path.join(dir, 'store');
  const modelFile = path.join(dir, 'part.rcp');
  let redis: RedisHandle;
  let store: DirectoryModelStore;
  let local: Engine;
  let frames: string[];
  let expected: Map<string, number>;
  let v1: string;
  const workers: WorkerProc[] = [];

  beforeAll(async () => {
    if (!existsSync(path.join(repoRoot, 'dist/fleet/worker.js'))) await run('npm', ['run', 'build:ts'], { cwd: repoRoot });
    const data = await syntheticDataset();
    const engine = await Engine.create({ head: false, backbone: 'random_cnn', resize: null, coreset: { ratio: 0.25 }, seed: 1 });
    await engine.fit(data.train, { modelId: 'part' });
    await engine.save(modelFile);
    await engine.dispose();
    redis = await startRedis();
    store = new DirectoryModelStore(storeDir);
    v1 = (await store.publish(modelFile)).version;
    local = await Engine.load(modelFile, { threads: 1 });
    expect(local.info.model!.version).toBe(v1);
    frames = data.test.map((t) => t.path);
    expected = new Map((await local.scoreMany(frames)).map((r, i) => [frames[i], r.score]));
    workers.push(await startWorker(redis.url, storeDir), await startWorker(redis.url, storeDir));
  });

  afterAll(async () => {
    for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
    await local?.dispose();
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Each verdict's score equals the local engine's (threads 1 on both sides; 1e-5 relative). */
  function expectLocalScores(verdicts: Verdict[], version = v1): void {
    for (const v of verdicts) {
      const s = scored(v);
      const want = expected.get(s.path)!;
      expect(Math.abs(s.score - want) / Math.abs(want), s.path).toBeLessThan(1e-5);
      expect(s).toMatchObject({ modelId: 'part', modelVersion: version });
    }
  }

  it('reconpatch submit: one jsonl row per frame, the score columns, equal to a local engine', async () => {
    const { stdout } = await run(process.execPath, [cli, 'submit', '--redis', redis.url, '--queue', QUEUE, '--model', 'part', '--format', 'jsonl', ...frames], { maxBuffer: 1 << 24 });
    const rows = stdout.trim().split('\n').map((l) => JSON.parse(l) as Verdict & { path: string });
    expect(rows).toHaveLength(frames.length);
    expect(new Set(rows.map((r) => r.path))).toEqual(new Set(frames));
    for (const r of rows) expect(Object.keys(r).sort()).toEqual(['height', 'isAnomaly', 'modelId', 'modelVersion', 'normalizedScore', 'path', 'score', 'width']);
    expectLocalScores(rows);
    expect(workers.some((w) => w.stderr().includes(`model part@${v1} loaded in `))).toBe(true);
  });

  it('reconpatch submit --run-id: a second run with the same id answers from the stored verdicts (csv rows, the score columns), scoring nothing again', async () => {
    const args = [cli, 'submit', '--redis', redis.url, '--queue', QUEUE, '--model', 'part', '--format', 'csv', '--run-id', 'rerun', ...frames.slice(0, 3)];
    const first = await run(process.execPath, args);
    const lines = first.stdout.trim().split('\n');
    expect(lines[0]).toBe('path,score,normalizedScore,isAnomaly,width,height,heatmap,error');
    expect(lines).toHaveLength(4);
    const queue = new Queue(QUEUE, { connection: { url: redis.url } });
    try {
      const processedOn = async () => Promise.all([0, 1, 2].map(async (i) => (await Job.fromId(queue, `rerun.${i}`))?.processedOn));
      const before = await processedOn();
      expect(before.every((t) => typeof t === 'number')).toBe(true);
      const second = await run(process.execPath, args);
      expect(new Set(second.stdout.trim().split('\n'))).toEqual(new Set(lines));
      expect(await processedOn()).toEqual(before);
    } finally {
      await queue.close();
    }
  });

  it('FleetClient: frames inline (bytes) and by reference, exactly one verdict each, spread over both workers; a repeated job id returns the same verdict', async () => {
    const client = new FleetClient({ redis: redis.url, queue: QUEUE, maxInFlight: 4 });
    try {
      const items = frames.flatMap((f, i) => [
        { image: readFileSync(f), name: f, jobId: `api-bytes-${i}` },
        { image: f, name: f, jobId: `api-path-${i}` },
      ]);
      const verdicts: (Verdict & { index: number })[] = [];
      let peak = 0;
      const counts = setInterval(() => void client.counts().then((c) => (peak = Math.max(peak, c.waiting + c.active))), 20);
      for await (const v of client.submit(items, { model: 'part', files: 'reference' })) verdicts.push(v);
      clearInterval(counts);
      expect(verdicts).toHaveLength(items.length);
      expect(verdicts.map((v) => v.index).sort((a, b) => a - b)).toEqual(items.map((_, i) => i));
      expect(verdicts.map((v) => v.jobId).sort()).toEqual(items.map((i) => i.jobId).sort());
      expectLocalScores(verdicts);
      expect(peak).toBeLessThanOrEqual(4); // backpressure: never more than maxInFlight in the queue
      expect(new Set(verdicts.map((v) => v.worker)).size).toBe(2);
      // The same job id again: the stored verdict (same worker, same timings), not a second run.
      const { index: _index, ...first } = verdicts.find((v) => v.jobId === 'api-path-0')!;
      const again = await client.score({ image: frames[0], jobId: 'api-path-0' }, { model: 'part' });
      expect(again).toEqual({ ...first, index: 0 });
      // Finished jobs keep their verdict but not their frame (Redis memory): the inline bytes are dropped.
      const queue = new Queue(QUEUE, { connection: { url: redis.url } });
      try {
        let kind: string | undefined;
        for (let i = 0; i < 40 && kind !== 'dropped'; i++) {
          kind = (await Job.fromId(queue, 'api-bytes-0'))?.data.frame.kind;
          if (kind !== 'dropped') await new Promise((r) => setTimeout(r, 50));
        }
        expect(kind).toBe('dropped');
        expect((await Job.fromId(queue, 'api-bytes-0'))?.returnvalue).toMatchObject({ jobId: 'api-bytes-0', modelVersion: v1 });
      } finally {
        await queue.close();
      }
    } finally {
      await client.close();
    }
  });

  it('a slow source (a camera) does not hold back the verdicts of frames already submitted', async () => {
    const client = new FleetClient({ redis: redis.url, queue: QUEUE });
    try {
      async function* camera() {
        yield frames[0];
        await new Promise((r) => setTimeout(r, 3000));
        yield frames[1];
      }
      const started = Date.now();
      const at: number[] = [];
      for await (const v of client.submit(camera(), { model: 'part' })) {
        scored(v);
        at.push(Date.now() - started);
      }
      expect(at).toHaveLength(2);
      expect(at[0]).toBeLessThan(2500);
      expect(at[1]).toBeGreaterThanOrEqual(3000);
    } finally {
      await client.close();
    }
  });

  it('a poison frame completes with ERR_INVALID_IMAGE in its verdict (not retried), and the workers go on', async () => {
    const poison = path.join(dir, 'poison.png');
    writeFileSync(poison, Buffer.from('this is not a png at all, just bytes'));
    const client = new FleetClient({ redis: redis.url, queue: QUEUE });
    try {
      const verdicts: Verdict[] = [];
      for await (const v of client.submit([frames[0], poison, frames[1], Buffer.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]), frames[2]], { model: 'part' })) verdicts.push(v);
      expect(verdicts).toHaveLength(5);
      const bad = verdicts.filter((v) => v.error);
      expect(bad.map((v) => v.error!.code)).toEqual(['ERR_INVALID_IMAGE', 'ERR_INVALID_IMAGE']);
      expect(bad.every((v) => v.worker !== null)).toBe(true); // answered by a worker, not failed in the queue
      expectLocalScores(verdicts.filter((v) => !v.error));
      // Over the inline bound: refused at the client, with what to do instead, before it reaches Redis.
      const big = await client.score(new Uint8Array(INLINE_FRAME_MAX_BYTES + 1), { model: 'part' });
      expect(big).toMatchObject({ worker: null, error: { code: 'ERR_INVALID_OPTION', message: expect.stringContaining('storage the workers share') } });
      const absent = await client.score(path.join(dir, 'absent.png'), { model: 'part' });
      expect(absent).toMatchObject({ worker: null, error: { code: 'ERR_IO' } });
      const unknown = await client.score(frames[0], { model: 'no-such-model' });
      expect(unknown.error?.code).toBe('ERR_MODEL_NOT_FOUND');
      for (const w of workers) expect(w.child.exitCode).toBeNull();
    } finally {
      await client.close();
    }
  });

  it('publish switches versions between jobs, rollback switches back; a version that does not load leaves the previous one serving', async () => {
    const client = new FleetClient({ redis: redis.url, queue: QUEUE });
    try {
      const tuned = await Engine.load(modelFile);
      await tuned.setThreshold(tuned.info.calibration!.threshold * 1.5); // a new threshold is a new version
      const v2 = (await store.publish(await tuned.saveBytes())).version;
      await tuned.dispose();
      expect(v2).not.toBe(v1);
      const batch = async () => { const out: Verdict[] = []; for await (const v of client.submit(frames.slice(0, 6), { model: 'part' })) out.push(v); return out; };
      expectLocalScores(await batch(), v2);
      expect((await store.rollback('part')).version).toBe(v1);
      expectLocalScores(await batch(), v1);
      // A third version whose file is damaged after publishing: every job still gets a verdict, from v1.
      const tuned3 = await Engine.load(modelFile);
      await tuned3.setThreshold(tuned3.info.calibration!.threshold * 2);
      const v3 = await store.publish(await tuned3.saveBytes());
      await tuned3.dispose();
      writeFileSync(v3.file, readFileSync(v3.file).subarray(0, 100));
      const out = await batch();
      expect(out).toHaveLength(6);
      for (const v of out) {
        // The version each worker served last (v1 after the rollback, or v2 on a worker that took no job since).
        expect([v1, v2]).toContain(scored(v).modelVersion);
        expect(Math.abs(scored(v).score - expected.get(v.path)!) / expected.get(v.path)!).toBeLessThan(1e-5);
        expect(scored(v).fallback).toMatchObject({ version: v3.version, error: { code: expect.stringMatching(/^ERR_/) } });
      }
      expect(workers.some((w) => w.stderr().includes(`model part@${v3.version} failed to load`))).toBe(true);
      await store.rollback('part', v1);
    } finally {
      await client.close();
    }
  });

  it('a worker SIGKILLed mid-run: its job is taken over (stalled recovery), every frame still gets exactly one verdict', async () => {
    const client = new FleetClient({ redis: redis.url, queue: QUEUE, maxInFlight: 64 });
    const events = new QueueEvents(QUEUE, { connection: { url: redis.url } });
    const stalled = new Set<string>();
    events.on('stalled', ({ jobId }) => stalled.add(jobId));
    await events.waitUntilReady();
    try {
      const items = Array.from({ length: 48 }, (_, i) => ({ image: frames[i % frames.length], name: frames[i % frames.length], jobId: `kill-${i}` }));
      const verdicts: Verdict[] = [];
      const [victim] = workers;
      for await (const v of client.submit(items, { model: 'part' })) {
        verdicts.push(v);
        if (verdicts.length === 8) victim.child.kill('SIGKILL');
      }
      expect(victim.child.signalCode).toBe('SIGKILL');
      expect(verdicts).toHaveLength(items.length);
      expect(new Set(verdicts.map((v) => v.jobId)).size).toBe(items.length);
      expectLocalScores(verdicts);
      expect(stalled.size).toBeGreaterThanOrEqual(1); // the job it held was recovered, not lost
      for (const id of stalled) expect(verdicts.find((v) => v.jobId === id)!.worker).toMatch(new RegExp(`:${workers[1].child.pid}$`));
    } finally {
      await events.close();
      await client.close();
    }
  });

  it('Redis unreachable: ERR_QUEUE naming the URL after connectTimeoutMs, not a hang; a missing store: the worker does not start', async () => {
    const url = `redis://127.0.0.1:${await freePort()}`;
    const client = new FleetClient({ redis: url, connectTimeoutMs: 500 });
    const started = Date.now();
    await expect(client.score(frames[0], { model: 'part' })).rejects.toMatchObject({ code: 'ERR_QUEUE', message: expect.stringContaining(url) });
    expect(Date.now() - started).toBeLessThan(5000);
    await client.close();
    // A worker whose store is not there (a share not mounted) refuses to start: exit 2, saying why.
    const missing = await run(process.execPath, [cli, 'worker', '--redis', redis.url, '--store', path.join(dir, 'not-mounted')]).catch((e: { code: number; stderr: string }) => e);
    expect(missing).toMatchObject({ code: 2, stderr: expect.stringContaining('no model store at') });
  });

  it('Redis killed and restarted: the worker and a connected client reconnect and go on', async () => {
    const client = new FleetClient({ redis: redis.url, queue: QUEUE });
    try {
      expectLocalScores([await client.score(frames[0], { model: 'part' })]);
      await redis.restart(1000); // down long enough for the reconnect attempts to fail first
      const v = await client.score(frames[1], { model: 'part' });
      expectLocalScores([v]);
      expect(v.worker).toMatch(new RegExp(`:${workers[1].child.pid}$`));
      // The outage's log lines ('queue error (retrying)', later 'queue connection back') come when
      // the worker notices: their timing depends on the machine's load, so they are not asserted.
    } finally {
      await client.close();
    }
  });

  it('SIGTERM: the worker finishes, frees its models and exits 0', async () => {
    const w = workers[1];
    const exited = new Promise<number | null>((r) => w.child.once('exit', (code) => r(code)));
    w.child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(w.stderr()).toContain('reconpatch worker: stopped');
  });
});
