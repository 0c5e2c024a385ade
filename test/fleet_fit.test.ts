// Distributed fits on a real Redis with real worker processes (dist/cli/main.js worker) and a real
// model store: shard jobs staged on both workers, one merge job that publishes the model. With a
// budget the shards never exceed, the published model equals a single-machine fit of the same
// images (the staged rows are the same rows, in the same order); a bad image fails the fit with its
// code and publishes nothing; a cancelled fit stops and publishes nothing; the CLI does the same.
// On real data (../shared), a fit whose shards and merge reduce is within the stated tolerance of
// the single-machine fit (docs/results.md, "Distributed fit").
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/engine/engine.js';
import { auroc } from '../lib/eval/metrics.js';
import { FleetClient } from '../lib/fleet/client.js';
import type { FitJobProgress } from '../lib/fleet/fit_jobs.js';
import { DirectoryModelStore } from '../lib/fleet/store.js';
import type { EngineOptions } from '../lib/options.js';
import { type WorkerProc, startWorkerProcess } from './support/fleet.js';
import { type RedisHandle, redisServer, startRedis } from './support/redis.js';
import { SHARED_ABSENT, hasShared, repoRoot, sharedBackbones, sharedDatasets, syntheticDataset, tempDir } from './support/data.js';

const run = promisify(execFile);
const cli = path.join(repoRoot, 'dist/cli/main.js');
const FIT_QUEUE = 'fleet-fit-test';

/** A worker taking fit jobs only (score jobs go to a queue nobody fills). */
function startWorker(redis: string, store: string): Promise<WorkerProc> {
  return startWorkerProcess(redis, store, ['--queue', `${FIT_QUEUE}-score`, '--fit-queue', FIT_QUEUE, '--threads', '1', '--lock-duration', '3000', '--stalled-interval', '1000']);
}

describe.skipIf(!redisServer)('fleet: distributed fit', () => {
  const dir = tempDir('fleet-fit');
  const storeDir = path.join(dir, 'store');
  let redis: RedisHandle;
  let client: FleetClient;
  let store: DirectoryModelStore;
  let train: string[];
  let test: string[];
  const workers: WorkerProc[] = [];
  const options: EngineOptions = { head: false, backbone: 'random_cnn', resize: null, coreset: { ratio: 0.25 }, seed: 1, threads: 1 };

  beforeAll(async () => {
    if (!existsSync(path.join(repoRoot, 'dist/fleet/fit_jobs.js'))) await run('npm', ['run', 'build:ts'], { cwd: repoRoot });
    const data = await syntheticDataset();
    train = data.train;
    test = data.test.map((t) => t.path);
    redis = await startRedis();
    store = new DirectoryModelStore(storeDir);
    mkdirSync(storeDir, { recursive: true });
    workers.push(await startWorker(redis.url, storeDir), await startWorker(redis.url, storeDir));
    client = new FleetClient({ redis: redis.url, fitQueue: FIT_QUEUE });
  });

  afterAll(async () => {
    await client?.close();
    for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('3 shards on 2 workers publish a model equal to a single-machine fit of the same images (budget never exceeded): bank, threshold and scores', async () => {
    const progress: (FitJobProgress & { job: string })[] = [];
    const r = await client.fit(train, { modelId: 'dist', engine: options, shards: 3, maxStagedPatches: 1 << 20, onProgress: (p) => progress.push(p) });
    expect(r.shards.map((s) => s.shard)).toEqual([0, 1, 2]);
    expect(new Set(r.shards.map((s) => s.worker)).size).toBe(2);
    expect(r.shards.reduce((n, s) => n + s.images, 0) + r.calibrationImages).toBe(train.length);
    expect(progress.some((p) => p.job.startsWith('shard-') && p.stage === 'embed')).toBe(true);
    expect(progress.some((p) => p.job === 'merge' && p.stage === 'publish')).toBe(true);
    expect((await store.current('dist')).version).toBe(r.version);
    // The scratch files went with the publish.
    expect(readdirSync(path.join(storeDir, '.parts'))).toEqual([]);

    // The same images, the same budget and held-out share, on one engine.
    const single = await Engine.create(options);
    const s = await single.fit(train, { maxStagedPatches: 1 << 20 });
    const published = await Engine.loadBytes((await store.read('dist')).bytes, { threads: 1 });
    try {
      expect(r.bankRows).toBe(s.bankRows);
      expect(r.images).toBe(s.images);
      expect(published.info.model!.trainingSet.images).toBe(s.images);
      expect(Math.abs(r.threshold! - s.calibration!.threshold) / s.calibration!.threshold).toBeLessThan(1e-6);
      const [a, b] = [await published.scoreMany(test), await single.scoreMany(test)];
      for (let i = 0; i < test.length; i++) expect(Math.abs(a[i].score - b[i].score) / b[i].score, test[i]).toBeLessThan(1e-5);
    } finally {
      await Promise.all([single.dispose(), published.dispose()]);
    }
  }, 120_000);

  it('an image that does not decode fails the fit with ERR_INVALID_IMAGE naming it; nothing is published; the workers go on', async () => {
    const bad = path.join(dir, 'broken.png');
    writeFileSync(bad, 'not a png');
    const before = (await store.list()).length;
    await expect(client.fit([...train.slice(0, 6), bad, ...train.slice(6)], { modelId: 'poisoned', engine: options, shards: 2 }))
      .rejects.toMatchObject({ code: 'ERR_INVALID_IMAGE', message: expect.stringContaining('broken.png') });
    expect((await store.list()).length).toBe(before);
    // The shard that staged its images has its scratch file dropped: the fit cannot finish.
    await expect.poll(() => readdirSync(path.join(storeDir, '.parts')), { timeout: 10_000, interval: 100 }).toEqual([]);
    expect(workers.every((w) => w.child.exitCode === null)).toBe(true);
  }, 60_000);

  it('bad options fail before anything is queued: head auto, no budget, too many shards, a fit id that is a path, a relative backbone path', async () => {
    await expect(client.fit(train, { modelId: 'x', engine: { ...options, head: 'auto' } })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    await expect(client.fit(train, { modelId: 'x', engine: options, maxStagedPatches: 0 })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    await expect(client.fit(train, { modelId: 'x', engine: options, shards: train.length + 1 })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    await expect(client.fit(train, { modelId: 'x', engine: options, fitId: '../escape' })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    await expect(client.fit(train, { modelId: 'x', engine: { ...options, backbone: 'relative/dir/model.pt' }, shards: 1 }))
      .rejects.toMatchObject({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining('the backbone path must be absolute') });
  }, 60_000);

  it('a cancelled fit rejects with ERR_ABORTED, publishes nothing, and the workers take the next fit', async () => {
    const controller = new AbortController();
    const many = Array.from({ length: 8 }, () => train).flat(); // a fit of a few seconds
    const fit = client.fit(many, {
      modelId: 'cancelled', engine: options, shards: 4,
      signal: controller.signal, onProgress: (p) => p.stage === 'embed' && controller.abort(),
    });
    await expect(fit).rejects.toMatchObject({ code: 'ERR_ABORTED' });
    await expect(store.current('cancelled')).rejects.toMatchObject({ code: 'ERR_MODEL_NOT_FOUND' });
    // Every job of it stops (failed, not retried) within a few batches, and its scratch files go.
    await expect.poll(() => workers.map((w) => (w.stderr().match(/fit job fit-\S+ failed/g) ?? []).length).reduce((a, b) => a + b), { timeout: 30_000, interval: 200 })
      .toBeGreaterThanOrEqual(1);
    const next = await client.fit(train, { modelId: 'after-cancel', engine: options, shards: 2 });
    expect((await store.current('after-cancel')).version).toBe(next.version);
    expect(readdirSync(path.join(storeDir, '.parts'))).toEqual([]);
  }, 120_000);

  it('a worker SIGKILLed mid-shard: its shard is taken over (stalled-job recovery) and the fit publishes a model of every image', async () => {
    const many = Array.from({ length: 8 }, () => train).flat(); // shards of a few seconds
    let killed: string | null = null;
    const r = await client.fit(many, {
      modelId: 'survivor', engine: options, shards: 2,
      onProgress: (p) => {
        if (killed || !p.job.startsWith('shard-') || p.stage !== 'embed') return;
        const victim = workers.find((w) => p.worker.endsWith(`:${w.child.pid}`));
        if (!victim) return;
        killed = p.job;
        victim.child.kill('SIGKILL');
      },
    });
    expect(killed).not.toBeNull();
    expect(r.shards.reduce((n, s) => n + s.images, 0) + r.calibrationImages).toBe(many.length);
    expect((await store.current('survivor')).version).toBe(r.version);
    // Every shard finished on a worker still alive.
    const alive = workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null).map((w) => `:${w.child.pid}`);
    expect(r.shards.every((s) => alive.some((a) => s.worker.endsWith(a)))).toBe(true);
    workers.push(await startWorker(redis.url, storeDir)); // two workers again for the tests after this one
  }, 120_000);

  it('reconpatch fit --redis: publishes to the workers\' store and prints the result; models list shows it', async () => {
    const { stdout } = await run(process.execPath, [cli, 'fit', '--redis', redis.url, '--fit-queue', FIT_QUEUE, '--model-id', 'from-cli', '--shards', '2',
      '--backbone', 'random_cnn', '--no-head', '--resize', 'none', '--seed', '1', '--json', ...train], { maxBuffer: 1 << 24 });
    const r = JSON.parse(stdout.trim()) as { modelId: string; version: string; shards: unknown[] };
    expect(r).toMatchObject({ modelId: 'from-cli', shards: [expect.anything(), expect.anything()] });
    const list = await run(process.execPath, [cli, 'models', 'list', '--store', storeDir, '--json']);
    expect(list.stdout).toContain(r.version);
    // What it cannot do is refused before anything is queued.
    for (const extra of [['-o', path.join(dir, 'x.rcp')], ['--threshold', '3'], ['--backbone', 'random_cnn']]) {
      const failed = await run(process.execPath, [cli, 'fit', '--redis', redis.url, '--fit-queue', FIT_QUEUE, '--model-id', 'refused', '--backbone', 'random_cnn', ...extra, ...train.slice(0, 4)]).catch((e: { stderr: string }) => e);
      expect((failed as { stderr: string }).stderr, extra.join(' ')).toContain('ERR_INVALID_OPTION');
    }
  }, 120_000);

  describe.skipIf(!hasShared)('on real data (metal_plate, mobilenet_v1, head off)', () => {
    if (!hasShared) it.skip(SHARED_ABSENT, () => {});

    it('shards and merge that reduce (budget 16,384 rows, as in docs/results.md) stay within the tolerance of the single-machine fit with that budget: image AUROC within 0.01, threshold within 5% (docs/results.md)', async () => {
      const root = path.join(sharedDatasets, 'metal_plate');
      const good = readdirSync(path.join(root, 'train/good')).sort().map((f) => path.join(root, 'train/good', f));
      const tests = readdirSync(path.join(root, 'test')).flatMap((d) => readdirSync(path.join(root, 'test', d)).sort().map((f) => ({ path: path.join(root, 'test', d, f), label: d === 'good' ? 0 : 1 })));
      const engine: EngineOptions = { backbone: path.join(sharedBackbones, 'mobilenet_v1_imagenet.pt'), head: false, seed: 0, threads: 1 };
      const budget = 16_384;
      const r = await client.fit(good, { modelId: 'metal-plate', engine, shards: 2, maxStagedPatches: budget });
      expect(r.shards.every((s) => s.rows <= budget && s.rows < s.patches)).toBe(true);
      const single = await Engine.create(engine);
      await single.fit(good, { maxStagedPatches: budget });
      const published = await Engine.loadBytes((await store.read('metal-plate')).bytes, { threads: 1 });
      try {
        const labels = tests.map((t) => t.label);
        const aucOf = async (e: Engine) => auroc((await e.scoreMany(tests.map((t) => t.path))).map((x) => x.score), labels);
        const [dist, one] = [await aucOf(published), await aucOf(single)];
        expect(Math.abs(dist - one), `distributed ${dist} vs single ${one}`).toBeLessThanOrEqual(0.01);
        const t1 = single.info.calibration!.threshold;
        expect(Math.abs(r.threshold! - t1) / t1).toBeLessThanOrEqual(0.05);
      } finally {
        await Promise.all([single.dispose(), published.dispose()]);
      }
    }, 240_000);
  });
});
