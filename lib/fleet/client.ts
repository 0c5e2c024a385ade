/**
 * The client side of the fleet: submit frames as score jobs, get one verdict per frame.
 *
 * Semantics: workers process a job at least once (a worker that dies mid-job has it picked up by
 * another); results are keyed by job id, and the client waits for each job's one recorded result,
 * so it yields exactly one verdict per frame. A job id chosen by the caller (a stable frame key)
 * makes a repeated submit return the job already there (or its stored verdict) instead of a second
 * run. Backpressure: at most `maxInFlight` jobs of one `submit` are in the queue and not yet
 * answered; the input is read only as answers come back, so memory stays bounded however long the
 * input, and the queue holds at most clients × maxInFlight jobs from clients that use this API.
 */
import { randomUUID } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import path from 'node:path';

import { type Job, Queue, QueueEvents } from 'bullmq';

import { ReconpatchError } from '../errors.js';
import type { RawImage } from '../io/images.js';
import { DEFAULT_FIT_QUEUE, type FleetFitResult } from './fit_jobs.js';
import { type FleetFitOptions, FitSubmitter, planFit } from './fit_client.js';
import { CONNECT_TIMEOUT_MS, DEFAULT_QUEUE, INLINE_FRAME_MAX_BYTES, JOB_ATTEMPTS, KEEP_RESULTS, type JobFrame, type ScoreJobData, type Verdict, checkJobId, checkQueueName, inlineFrame, readyWithin } from './protocol.js';

/** Options of {@link FleetClient}. */
export interface FleetClientOptions {
  /** Redis URL, e.g. `redis://127.0.0.1:6379`. */
  redis: string;
  /** Queue name (default `'reconpatch-score'`): the workers' `--queue`. */
  queue?: string;
  /** Jobs of one `submit` in the queue and not yet answered (default 64): the bound on memory and on this client's share of the queue. */
  maxInFlight?: number;
  /** Give up with ERR_QUEUE when Redis does not answer this soon at the first call (ms; default CONNECT_TIMEOUT_MS = 10 s). */
  connectTimeoutMs?: number;
  /** The queue of distributed fit jobs (default `'reconpatch-fit'`): the workers' `--fit-queue`. */
  fitQueue?: string;
  /** Give up waiting for a verdict after this long (ms; default 0 = wait as long as it takes; the job stays queued). */
  timeoutMs?: number;
}

/** A frame: a file path, encoded image bytes, or raw pixels. */
export type FrameInput = string | Uint8Array | RawImage;

/** A frame with its name and job id (both optional). */
export interface FrameItem {
  image: FrameInput;
  /** The name the verdict carries as `path` (default: the path, or `frame-<index>`). */
  name?: string;
  /** The job id: a stable key for this frame makes a repeated submit return the same job (default: a fresh id). */
  jobId?: string;
}

/** Options of {@link FleetClient.score} and {@link FleetClient.submit}. */
export interface SubmitOptions {
  /** The model id in the workers' store (its current version scores the frame). */
  model: string;
  /**
   * Files: `'auto'` (default) sends files up to INLINE_FRAME_MAX_BYTES inline and larger ones by
   * reference; `'reference'` always sends the path (absolute: it must be the same path on the
   * workers' shared storage); `'inline'` always sends the bytes (ERR_INVALID_OPTION when too large).
   */
  files?: 'auto' | 'inline' | 'reference';
}

/**
 * A connection to a fleet of workers.
 * @example
 * import { FleetClient } from 'reconpatch/fleet';
 * const fleet = new FleetClient({ redis: 'redis://127.0.0.1:6379' });
 * const verdict = await fleet.score('frame.png', { model: 'line3-cam2' });
 * for await (const v of fleet.submit(['a.png', 'b.png'], { model: 'line3-cam2' })) console.log(v.path, v.error ?? v.isAnomaly);
 * await fleet.close();
 */
export class FleetClient {
  readonly #queue: Queue<ScoreJobData, Verdict>;
  readonly #events: QueueEvents;
  readonly #maxInFlight: number;
  readonly #timeoutMs: number;
  readonly #redis: string;
  readonly #connectTimeoutMs: number;
  readonly #fitQueue: string;
  #fits: FitSubmitter | null = null;
  #ready: Promise<void> | null = null;
  #tried = false;
  #connected = false;

  constructor(options: FleetClientOptions) {
    const { redis, maxInFlight = 64, timeoutMs = 0, connectTimeoutMs = CONNECT_TIMEOUT_MS } = options;
    if (typeof redis !== 'string' || redis === '') throw new ReconpatchError('ERR_INVALID_OPTION', 'FleetClient needs a redis URL, e.g. redis://127.0.0.1:6379');
    if (!Number.isInteger(maxInFlight) || maxInFlight < 1) throw new ReconpatchError('ERR_INVALID_OPTION', `maxInFlight must be an integer of at least 1, got ${maxInFlight}`);
    if (!Number.isFinite(timeoutMs) || timeoutMs < 0) throw new ReconpatchError('ERR_INVALID_OPTION', `timeoutMs must be 0 or more, got ${timeoutMs}`);
    const queue = checkQueueName(options.queue ?? DEFAULT_QUEUE);
    this.#fitQueue = checkQueueName(options.fitQueue ?? DEFAULT_FIT_QUEUE);
    this.#redis = redis;
    this.#maxInFlight = maxInFlight;
    this.#timeoutMs = timeoutMs;
    this.#connectTimeoutMs = connectTimeoutMs;
    const connection = { url: redis, maxRetriesPerRequest: null };
    this.#queue = new Queue<ScoreJobData, Verdict>(queue, { connection });
    this.#events = new QueueEvents(queue, { connection });
    // One listener per job waiting: up to maxInFlight per submit, several submits at once.
    this.#events.setMaxListeners(0);
    this.#queue.setMaxListeners(0); // waitUntilFinished listens for the queue closing, once per job waiting
    this.#queue.on('error', () => {}); // ioredis reconnects by itself; a call that fails says so
    this.#events.on('error', () => {});
  }

  /** Scores one frame on the fleet. Errors of the frame come back in the verdict (`error`), not thrown; ERR_QUEUE when Redis cannot be reached. */
  async score(image: FrameInput | FrameItem, options: SubmitOptions): Promise<Verdict> {
    for await (const v of this.submit([image], options)) return v;
    throw new ReconpatchError('ERR_INTERNAL', 'submit yielded no verdict');
  }

  /**
   * Submits frames and yields one verdict per frame as they complete (not in input order: `index`
   * is the frame's position). At most `maxInFlight` wait at once; the input is read as room frees.
   */
  async *submit(frames: Iterable<FrameInput | FrameItem> | AsyncIterable<FrameInput | FrameItem>, options: SubmitOptions): AsyncGenerator<Verdict & { index: number }> {
    if (typeof options?.model !== 'string' || options.model === '') throw new ReconpatchError('ERR_INVALID_OPTION', 'submit needs { model: <model id> }');
    const files = options.files ?? 'auto';
    if (files !== 'auto' && files !== 'inline' && files !== 'reference') throw new ReconpatchError('ERR_INVALID_OPTION', `files must be 'auto', 'inline' or 'reference', got ${JSON.stringify(files)}`);
    await this.#connect();
    const source = Symbol.asyncIterator in frames ? frames[Symbol.asyncIterator]() : frames[Symbol.iterator]();
    const done: (Verdict & { index: number })[] = [];
    let wake: (() => void) | null = null;
    const woken = () => new Promise<'wake'>((resolve) => (wake = () => resolve('wake')));
    let inFlight = 0;
    let exhausted = false;
    let index = 0;
    // The next input, asked for once and kept while verdicts are yielded: a slow source (a camera)
    // does not hold back the verdicts of frames already submitted.
    let next: Promise<IteratorResult<FrameInput | FrameItem>> | null = null;
    while (true) {
      const v = done.shift();
      if (v) {
        yield v;
        continue;
      }
      if (exhausted && inFlight === 0) return;
      if (exhausted || inFlight >= this.#maxInFlight) {
        await woken();
        continue;
      }
      next ??= Promise.resolve(source.next());
      const r = await Promise.race([next, woken()]);
      wake = null;
      if (r === 'wake') continue;
      next = null;
      if (r.done) {
        exhausted = true;
        continue;
      }
      const i = index++;
      inFlight++;
      void this.#run(r.value, i, options.model, files).then((verdict) => {
        inFlight--;
        done.push({ ...verdict, index: i });
        wake?.();
      });
    }
  }

  /**
   * A distributed fit: the images (paths on storage the workers share) are split into shard jobs
   * that workers embed in parallel, each reducing its patches within `maxStagedPatches`; one merge
   * job then builds the model from the shards, calibrates it on the held-out images and publishes
   * it to the workers' store as `modelId`'s current version. Resolves with what was published.
   * Throws the first failing job's code (ERR_INVALID_IMAGE, ERR_INVALID_OPTION, ...), ERR_ABORTED
   * (`signal`), ERR_QUEUE.
   * @example
   * const r = await fleet.fit(goodPaths, { modelId: 'line3-cam2', engine: { backbone: '/srv/backbones/mobilenet_v1_imagenet.pt' }, shards: 4 });
   * console.log(r.version, r.threshold);
   */
  async fit(images: string[], options: FleetFitOptions): Promise<FleetFitResult> {
    planFit(images, options); // bad options fail before anything connects
    await this.#connect();
    if (!this.#fits) {
      const fits = new FitSubmitter(this.#redis, this.#fitQueue);
      await readyWithin(fits.ready(), this.#connectTimeoutMs, this.#redis);
      this.#fits = fits;
    }
    return this.#fits.fit(images, options);
  }

  /** Jobs waiting, running, and finished but kept (for the dashboard or a health check). */
  async counts(): Promise<{ waiting: number; active: number; completed: number; failed: number; delayed: number }> {
    const c = await this.#queue.getJobCounts('waiting', 'active', 'completed', 'failed', 'delayed');
    return { waiting: c.waiting ?? 0, active: c.active ?? 0, completed: c.completed ?? 0, failed: c.failed ?? 0, delayed: c.delayed ?? 0 };
  }

  /** Closes the connections (jobs already submitted stay in the queue and are scored). */
  async close(): Promise<void> {
    if (this.#ready) await this.#ready.catch(() => {});
    await this.#fits?.close();
    if (this.#connected || !this.#tried) {
      await Promise.all([this.#events.close(), this.#queue.close()]);
      return;
    }
    // Never connected (Redis down): BullMQ's close waits for a connection that may never come, so
    // it is started, not awaited; its sockets may go on retrying until the process exits.
    void this.#events.close().catch(() => {});
    void this.#queue.close().catch(() => {});
  }

  #connect(): Promise<void> {
    this.#ready ??= (async () => {
      try {
        this.#tried = true;
        await readyWithin(Promise.all([this.#queue.waitUntilReady(), this.#events.waitUntilReady()]), this.#connectTimeoutMs, this.#redis);
        this.#connected = true;
      } catch (err) {
        this.#ready = null;
        throw err;
      }
    })();
    return this.#ready;
  }

  /** One frame: encode, add (or find) its job, wait for its one result. Never rejects: a failure is the verdict's error. */
  async #run(item: FrameInput | FrameItem, index: number, model: string, files: 'auto' | 'inline' | 'reference'): Promise<Verdict> {
    const { image, name, jobId } = isItem(item) ? item : { image: item, name: undefined, jobId: undefined };
    const label = name ?? (typeof image === 'string' ? image : `frame-${index}`);
    let id = jobId ?? randomUUID();
    try {
      id = checkJobId(id);
      const data: ScoreJobData = { v: 1, model, name: label, frame: await jobFrame(image, label, files), submitted: Date.now() };
      const job: Job<ScoreJobData, Verdict> = await this.#queue.add('score', data, {
        jobId: id, attempts: JOB_ATTEMPTS, backoff: { type: 'exponential', delay: 1000 },
        removeOnComplete: KEEP_RESULTS, removeOnFail: { age: 24 * 3600 },
      });
      const result = (await job.waitUntilFinished(this.#events, this.#timeoutMs || undefined)) as Verdict | string;
      return typeof result === 'string' ? (JSON.parse(result) as Verdict) : result;
    } catch (err) {
      return { jobId: id, path: label, worker: null, error: queueError(err) };
    }
  }
}

function isItem(x: FrameInput | FrameItem): x is FrameItem {
  return typeof x === 'object' && x !== null && 'image' in x && !('width' in x);
}

/** The job's frame: a path read (inline) or referenced, bytes or raw pixels inline. */
async function jobFrame(image: FrameInput, label: string, files: 'auto' | 'inline' | 'reference'): Promise<JobFrame> {
  if (typeof image !== 'string') return inlineFrame(image, label);
  const file = path.resolve(image);
  if (files === 'reference') return { kind: 'path', path: file };
  let size: number;
  try {
    size = (await stat(file)).size;
  } catch (err) {
    throw new ReconpatchError('ERR_IO', `cannot read ${image}: ${(err as Error).message}`, { cause: err });
  }
  if (size > INLINE_FRAME_MAX_BYTES && files === 'auto') return { kind: 'path', path: file };
  if (size > INLINE_FRAME_MAX_BYTES) throw new ReconpatchError('ERR_INVALID_OPTION', `${image}: ${size} bytes is over the ${INLINE_FRAME_MAX_BYTES} bytes a frame may take inline; use files: 'auto' or 'reference' with storage the workers share`);
  // Read at most the bound (the file may grow between stat and read).
  let buf: Buffer;
  try {
    const handle = await open(file, 'r');
    try {
      buf = Buffer.alloc(size);
      buf = buf.subarray(0, (await handle.read(buf, 0, size, 0)).bytesRead);
    } finally {
      await handle.close();
    }
  } catch (err) {
    throw new ReconpatchError('ERR_IO', `cannot read ${image}: ${(err as Error).message}`, { cause: err });
  }
  return inlineFrame(buf, label);
}

/** A failure outside the worker (Redis, the job failed after its attempts, a timeout) as a verdict error: the code a worker gave (`[ERR_IO] ...`), else ERR_QUEUE. */
function queueError(err: unknown): { code: string; message: string } {
  if (err instanceof ReconpatchError) return { code: err.code, message: err.message };
  const message = err instanceof Error ? err.message : String(err);
  const coded = /^\[(ERR_[A-Z_]+)\] (.*)$/s.exec(message);
  if (coded) return { code: coded[1], message: coded[2] };
  return { code: 'ERR_QUEUE', message: `${message} (the job stays in the queue's failed set for a day: inspect it there)` };
}
