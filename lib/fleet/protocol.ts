/**
 * What travels on the queue between a FleetClient and a worker: the score job's data, the verdict
 * it returns, the sizes and defaults both sides agree on. Plain JSON both ways (BullMQ stores job
 * data and return values as JSON strings in Redis), so encoded frames travel as base64.
 */
import { isAbsolute, relative, resolve } from 'node:path';

import { ReconpatchError } from '../errors.js';
import type { RawImage } from '../io/images.js';

/** The queue workers and clients use unless told otherwise. */
export const DEFAULT_QUEUE = 'reconpatch-score';

/**
 * Largest frame sent inline in the job (bytes before base64, which adds a third): 4 MiB. Redis
 * holds every job's data until the job is removed, so a larger frame travels by reference (a path
 * on storage the workers share) instead.
 */
export const INLINE_FRAME_MAX_BYTES = 4 * 1024 * 1024;

/**
 * How long finished jobs (and their verdicts) stay in Redis: a submit that repeats a job id within
 * this window gets the stored verdict instead of a second run (1 hour, and at most 100,000 jobs).
 */
export const KEEP_RESULTS = { age: 3600, count: 100_000 } as const;

/** Attempts for a job whose processing throws (infrastructure: the store unreadable, Redis gone mid-job). */
export const JOB_ATTEMPTS = 3;

/**
 * Worker lock and stalled-job recovery: a job whose worker dies (SIGKILL, OOM, power) has its lock
 * expire after `lockDuration`; the next stalled check (every `stalledInterval`) puts it back in the
 * queue for another worker. A job that stalls more than `maxStalledCount` times (it keeps killing
 * workers) fails instead of cycling forever.
 */
export const STALLED_DEFAULTS = { lockDuration: 30_000, stalledInterval: 15_000, maxStalledCount: 2 } as const;

/** A frame in a job: an encoded image (PNG, JPEG, ...) or raw pixels inline, or a path on shared storage. */
export type JobFrame =
  | { kind: 'encoded'; data: string }
  | { kind: 'raw'; data: string; width: number; height: number; channels: 1 | 2 | 3 | 4 }
  | { kind: 'path'; path: string }
  /** What a finished job keeps: the frame is dropped once its verdict is stored. */
  | { kind: 'dropped' };

/** A score job's data (`v` versions the layout: a worker refuses layouts it does not know). */
export interface ScoreJobData {
  v: 1;
  /** The model id; the worker resolves its current version in the store before each job. */
  model: string;
  /** The frame's name for the caller (a file path, a camera tag): echoed in the verdict. */
  name: string;
  frame: JobFrame;
  /** When the client submitted it (ms since the epoch), for queue latency. */
  submitted: number;
}

/** An error in a verdict: a stable code (lib/errors.ts, or ERR_QUEUE) and what to do. */
export interface VerdictError {
  code: string;
  message: string;
}

interface VerdictBase {
  /** The job id: the client's key for this frame (a repeated submit with the same id gets this verdict again, not a second run). */
  jobId: string;
  /** The frame's name (a path or tag given at submit). */
  path: string;
  /** The worker that produced it (`host:pid`); null when no worker did (the job failed in the queue). */
  worker: string | null;
}

/**
 * A scored frame: the same fields as a `reconpatch score` row, the model id and version that
 * scored it, and timings. `fallback` is set when the model's current version failed to load on
 * this worker and the previous version it had loaded scored the frame instead.
 */
export interface ScoredVerdict extends VerdictBase {
  score: number;
  normalizedScore: number | null;
  isAnomaly: boolean | null;
  width: number;
  height: number;
  modelId: string | null;
  modelVersion: string;
  /** Milliseconds from submit to the start of scoring (waiting in the queue), and of the scoring itself. */
  queueMs: number;
  scoreMs: number;
  fallback?: { version: string; error: VerdictError };
  error?: undefined;
}

/** A frame that could not be scored: its typed error (ERR_INVALID_IMAGE, ERR_MODEL_NOT_FOUND, ERR_QUEUE...). */
export interface FailedVerdict extends VerdictBase {
  error: VerdictError;
  modelId?: string | null;
  modelVersion?: string;
}

/** One frame's outcome. */
export type Verdict = ScoredVerdict | FailedVerdict;

/** A queue name checked (BullMQ keys are `bull:<queue>:...`: no ':'). Throws ERR_INVALID_OPTION. */
export function checkQueueName(queue: unknown): string {
  if (typeof queue !== 'string' || !/^[A-Za-z0-9._-]{1,100}$/.test(queue))
    throw new ReconpatchError('ERR_INVALID_OPTION', `queue must be 1 to 100 letters, digits, '.', '_' or '-', got ${JSON.stringify(queue)}`);
  return queue;
}

/** A job id checked: BullMQ refuses ':' and integers (its own ids are integers). Throws ERR_INVALID_OPTION. */
export function checkJobId(id: unknown): string {
  if (typeof id !== 'string' || id === '' || id.length > 256 || id.includes(':') || /^\d+$/.test(id))
    throw new ReconpatchError('ERR_INVALID_OPTION', `jobId must be 1 to 256 characters, not all digits and without ':', got ${JSON.stringify(id)}`);
  return id;
}

/** An inline frame from bytes or a raw image; ERR_INVALID_OPTION when it is over INLINE_FRAME_MAX_BYTES. */
export function inlineFrame(image: Uint8Array | RawImage, name: string): JobFrame {
  const bytes = image instanceof Uint8Array ? image : image.data;
  if (bytes.byteLength > INLINE_FRAME_MAX_BYTES)
    throw new ReconpatchError('ERR_INVALID_OPTION', `${name}: ${bytes.byteLength} bytes is over the ${INLINE_FRAME_MAX_BYTES} bytes a frame may take inline; pass a path on storage the workers share instead`);
  const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
  if (image instanceof Uint8Array) return { kind: 'encoded', data };
  return { kind: 'raw', data, width: image.width, height: image.height, channels: image.channels };
}

/**
 * The job's frame as an engine input. A path must be absolute and, with `sharedRoot`, inside it
 * (job data comes from whoever can write to Redis: the worker reads only where it was told it may).
 * The engine bounds what it reads and decodes (its input limits). Throws ERR_INVALID_IMAGE.
 */
export function frameInput(frame: JobFrame, sharedRoot: string | undefined): string | Uint8Array | RawImage {
  const bad = (why: string) => new ReconpatchError('ERR_INVALID_IMAGE', `the job's frame ${why}`);
  if (frame === null || typeof frame !== 'object') throw bad('is missing');
  if (frame.kind === 'path') {
    if (typeof frame.path !== 'string' || !isAbsolute(frame.path)) throw bad('path must be absolute');
    if (sharedRoot !== undefined) {
      const rel = relative(sharedRoot, resolve(frame.path));
      if (rel.startsWith('..') || isAbsolute(rel)) throw bad(`path ${frame.path} is outside the shared root ${sharedRoot} this worker reads from`);
    }
    return frame.path;
  }
  if (frame.kind === 'dropped' || typeof frame.data !== 'string') throw bad('has no data');
  const bytes = Buffer.from(frame.data, 'base64');
  if (bytes.byteLength > INLINE_FRAME_MAX_BYTES) throw bad(`is over ${INLINE_FRAME_MAX_BYTES} bytes inline`);
  if (frame.kind === 'encoded') return bytes;
  if (frame.kind === 'raw') return { data: bytes, width: frame.width, height: frame.height, channels: frame.channels };
  throw bad(`kind ${JSON.stringify((frame as { kind: unknown }).kind)} is unknown`);
}

/** How long a client or worker waits for Redis when it starts before giving up with ERR_QUEUE (ms). */
export const CONNECT_TIMEOUT_MS = 10_000;

/**
 * Waits for `ready` (a BullMQ connection), at most `ms`: ERR_QUEUE naming the URL when Redis does
 * not answer (ioredis would otherwise retry forever, and a command would hang without a word).
 */
export async function readyWithin(ready: Promise<unknown>, ms: number, redis: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const fail = (why: string, cause?: unknown) => new ReconpatchError('ERR_QUEUE', `cannot reach Redis at ${redis}: ${why}; check the URL and that redis-server runs there`, { cause });
  try {
    await Promise.race([
      ready.catch((err: unknown) => { throw fail((err as Error)?.message ?? String(err), err); }),
      new Promise((_, reject) => { timer = setTimeout(() => reject(fail(`no answer in ${ms} ms`)), ms); }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
