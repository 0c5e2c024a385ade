/**
 * A fleet worker: a BullMQ Worker that takes score jobs from Redis, scores each frame with the
 * current version of the job's model (from a model store, through the LRU in ./model_cache.ts)
 * and returns the verdict as the job's result; and a second one that takes a distributed fit's
 * shard and merge jobs (./fit_jobs.ts), one at a time.
 *
 * Failures are split by who can fix them. A bad frame, an unknown model or a model that does not
 * load here completes the job with a verdict carrying the typed error: a retry cannot help, and
 * the worker goes on. A processing error outside those (the store unreadable: ERR_IO) throws, and
 * BullMQ retries the job (JOB_ATTEMPTS, with backoff). A worker that dies mid-job loses its lock;
 * another worker's stalled check puts the job back in the queue (STALLED_DEFAULTS).
 */
import { statSync } from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';

import { type Job, Worker } from 'bullmq';

import { ReconpatchError } from '../errors.js';
import { CANCEL_TTL_S, DEFAULT_FIT_QUEUE, type FitJobData, cancelKey, processFitJob } from './fit_jobs.js';
import { ModelCache } from './model_cache.js';
import { CONNECT_TIMEOUT_MS, DEFAULT_QUEUE, STALLED_DEFAULTS, type ScoreJobData, type Verdict, type VerdictError, checkQueueName, frameInput, readyWithin } from './protocol.js';
import { DirectoryModelStore, type ModelStore } from './store.js';

/** Options of {@link FleetWorker.start}. */
export interface FleetWorkerOptions {
  /** Redis URL, e.g. `redis://127.0.0.1:6379`. */
  redis: string;
  /** The model store (or its directory). */
  store: ModelStore | string;
  /** Queue name (default {@link DEFAULT_QUEUE}). */
  queue?: string;
  /** Jobs this process works on at once (default 1). */
  concurrency?: number;
  /** libtorch threads per loaded model (default: cores / concurrency, at least 1: concurrency × threads = cores). */
  threads?: number;
  /** Models kept loaded, least recently used evicted (default 2: the current version and the one before, for a rollout). */
  cacheSize?: number;
  /** Stalled-job recovery: lock, check interval, stalls allowed (defaults: STALLED_DEFAULTS). */
  lockDuration?: number;
  stalledInterval?: number;
  maxStalledCount?: number;
  /** When set, frames by reference must lie below this directory. */
  sharedRoot?: string;
  /** The queue of distributed fit jobs (default DEFAULT_FIT_QUEUE), or false to take none. Fit jobs run one at a time, on every core. */
  fitQueue?: string | false;
  /** Give up with ERR_QUEUE when Redis does not answer this soon at start (ms; default CONNECT_TIMEOUT_MS = 10 s). Later outages are waited out. */
  connectTimeoutMs?: number;
  /** One line per event worth a log (a model loaded or failing, a job failing, Redis errors); default: stderr. */
  log?: (line: string) => void;
}

/** The number of cores this process may use. */
export function cores(): number {
  return os.availableParallelism();
}

/**
 * The threads each model gets: `threads` if given, else cores / concurrency (at least 1), so that
 * `concurrency` jobs scoring at once use every core once and not more.
 */
export function threadsFor(concurrency: number, threads?: number): number {
  return threads ?? Math.max(1, Math.floor(cores() / concurrency));
}

/**
 * A running worker.
 * @example
 * const worker = await FleetWorker.start({ redis: 'redis://127.0.0.1:6379', store: '/srv/models' });
 * process.once('SIGTERM', () => worker.close().then(() => process.exit(0)));
 */
export class FleetWorker {
  readonly concurrency: number;
  readonly threads: number;
  readonly name = `${os.hostname()}:${process.pid}`;
  readonly #worker: Worker<ScoreJobData, Verdict>;
  readonly #fitWorker: Worker<FitJobData> | null;
  readonly #models: ModelCache;
  readonly #sharedRoot: string | undefined;
  readonly #log: (line: string) => void;
  #closing: Promise<void> | null = null;

  private constructor(options: FleetWorkerOptions) {
    const positive = (name: string, v: number | undefined, min = 1) => {
      if (v !== undefined && (!Number.isInteger(v) || v < min)) throw new ReconpatchError('ERR_INVALID_OPTION', `${name} must be an integer of at least ${min}, got ${v}`);
      return v;
    };
    this.concurrency = positive('concurrency', options.concurrency) ?? 1;
    this.threads = threadsFor(this.concurrency, positive('threads', options.threads));
    const queue = checkQueueName(options.queue ?? DEFAULT_QUEUE);
    // A store directory that is not there (a share not mounted yet) fails the start, not every job.
    if (typeof options.store === 'string' && !statSync(options.store, { throwIfNoEntry: false })?.isDirectory())
      throw new ReconpatchError('ERR_INVALID_OPTION', `no model store at ${options.store}: give the directory 'reconpatch models publish --store' wrote (mounted on this machine)`);
    const store = typeof options.store === 'string' ? new DirectoryModelStore(options.store) : options.store;
    this.#log = options.log ?? ((line) => process.stderr.write(`reconpatch worker: ${line}\n`));
    this.#sharedRoot = options.sharedRoot;
    this.#models = new ModelCache(store, { capacity: positive('cacheSize', options.cacheSize) ?? 2, load: { threads: this.threads }, log: this.#log });
    const lockDuration = positive('lockDuration', options.lockDuration, 100) ?? STALLED_DEFAULTS.lockDuration;
    this.#worker = new Worker<ScoreJobData, Verdict>(queue, (job) => this.#process(job), {
      connection: { url: options.redis, maxRetriesPerRequest: null },
      concurrency: this.concurrency,
      lockDuration,
      stalledInterval: positive('stalledInterval', options.stalledInterval, 100) ?? STALLED_DEFAULTS.stalledInterval,
      maxStalledCount: positive('maxStalledCount', options.maxStalledCount, 0) ?? STALLED_DEFAULTS.maxStalledCount,
      autorun: false,
    });
    const fitQueue = options.fitQueue === false ? null : checkQueueName(options.fitQueue ?? DEFAULT_FIT_QUEUE);
    this.#fitWorker = fitQueue === null ? null : new Worker<FitJobData>(fitQueue, async (job, _token, signal) => {
      const redis = await this.#fitWorker!.getBackend().client;
      return processFitJob(job, {
        store, sharedRoot: this.#sharedRoot, threads: options.threads ?? cores(), worker: this.name,
        cancelled: async (fit) => (await redis.get(cancelKey(fit))) !== null,
        cancel: async (fit) => void (await redis.set(cancelKey(fit), '1', { EX: CANCEL_TTL_S })),
      }, signal);
    }, {
      connection: { url: options.redis, maxRetriesPerRequest: null },
      concurrency: 1,
      lockDuration,
      stalledInterval: positive('stalledInterval', options.stalledInterval, 100) ?? STALLED_DEFAULTS.stalledInterval,
      maxStalledCount: positive('maxStalledCount', options.maxStalledCount, 0) ?? STALLED_DEFAULTS.maxStalledCount,
      autorun: false,
    });
    this.#fitWorker?.on('error', () => {}); // the score worker's listener reports the outage
    this.#fitWorker?.on('failed', (job, err) => this.#log(`fit job ${job?.id} failed (attempt ${job?.attemptsMade}): ${err.message}`));
    // Without a listener an ioredis error (Redis restarting) would be an unhandled 'error' event;
    // the connection reconnects by itself and the worker resumes.
    // Logged once per outage, not once per reconnect attempt.
    let lastError = '';
    this.#worker.on('error', (err) => {
      if (err.message !== lastError) this.#log(`queue error (retrying): ${err.message}`);
      lastError = err.message;
    });
    const back = () => {
      if (lastError) this.#log('queue connection back');
      lastError = '';
    };
    this.#worker.on('ready', back);
    this.#worker.on('failed', (job, err) => this.#log(`job ${job?.id} failed (attempt ${job?.attemptsMade}): ${err.message}`));
    // A finished job stays in Redis for KEEP_RESULTS (its verdict answers a repeated job id), but its
    // frame is not needed any more: dropped once the verdict is stored (before that, a worker that
    // dies would leave a job with no frame to score again).
    this.#worker.on('completed', (job) => {
      back(); // BullMQ's worker does not say 'ready' again after a reconnect; a finished job shows it
      if (job.data?.frame?.kind !== 'path') void job.updateData({ ...job.data, frame: { kind: 'dropped' } }).catch(() => {});
    });
  }

  /** Connects and starts taking jobs. Throws ERR_INVALID_OPTION for bad options, ERR_QUEUE when Redis cannot be reached. */
  static async start(options: FleetWorkerOptions): Promise<FleetWorker> {
    const w = new FleetWorker(options);
    try {
      await readyWithin(Promise.all([w.#worker.waitUntilReady(), w.#fitWorker?.waitUntilReady()]), options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS, options.redis);
    } catch (err) {
      void w.#worker.close(true).catch(() => {}); // BullMQ's close waits for a connection: not awaited
      void w.#fitWorker?.close(true).catch(() => {});
      throw err;
    }
    void w.#worker.run().catch((err: Error) => w.#log(`worker stopped: ${err.message}`));
    void w.#fitWorker?.run().catch((err: Error) => w.#log(`fit worker stopped: ${err.message}`));
    return w;
  }

  /** Models loaded now and loads so far. */
  get models(): { loaded: string[]; loads: number } {
    return this.#models.stats;
  }

  /** Stops taking jobs, lets the ones in flight finish, then disposes the models. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.all([this.#worker.close(), this.#fitWorker?.close()]);
      await this.#models.close();
    })();
    return this.#closing;
  }

  async #process(job: Job<ScoreJobData, Verdict>): Promise<Verdict> {
    const data = job.data;
    const base = { jobId: job.id!, path: typeof data?.name === 'string' ? data.name : String(job.id), worker: this.name };
    const failed = (err: unknown, extra: object = {}): Verdict => ({ ...base, ...extra, error: verdictError(err) });
    if (data?.v !== 1 || typeof data.model !== 'string')
      return failed(new ReconpatchError('ERR_INVALID_OPTION', `job ${job.id} is not a reconpatch score job (v1): submit with FleetClient or reconpatch submit of the same version as the workers`));
    const queueMs = Math.max(0, Date.now() - data.submitted);
    let lease;
    try {
      lease = await this.#models.acquire(data.model);
    } catch (err) {
      // The store unreadable may heal: BullMQ retries the job. A missing or broken model will not.
      if (err instanceof ReconpatchError && err.code === 'ERR_IO') throw new Error(`[ERR_IO] ${err.message}`);
      return failed(err);
    }
    const started = performance.now();
    try {
      const r = await lease.model.score(frameInput(data.frame, this.#sharedRoot));
      return {
        ...base, score: r.score, normalizedScore: r.normalizedScore, isAnomaly: r.isAnomaly, width: r.width, height: r.height,
        modelId: r.modelId, modelVersion: r.modelVersion, queueMs, scoreMs: performance.now() - started,
        ...(lease.fallback ? { fallback: lease.fallback } : {}),
      };
    } catch (err) {
      return failed(err, { modelId: lease.entry.id, modelVersion: lease.entry.version });
    } finally {
      lease.release();
    }
  }
}

/** An error as a verdict's `{ code, message }`. */
export function verdictError(err: unknown): VerdictError {
  return err instanceof ReconpatchError ? { code: err.code, message: err.message } : { code: 'ERR_INTERNAL', message: err instanceof Error ? err.message : String(err) };
}
