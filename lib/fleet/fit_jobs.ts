/**
 * A distributed fit on the queue: a BullMQ flow whose children are shard jobs and whose parent is
 * the merge job, on the fit queue. Each shard job embeds its images on whichever worker takes it
 * and reduces their patches within the budget (`Engine.stage`), leaving the staged features in
 * the model store's scratch space; once every shard is done, BullMQ hands the merge job to a
 * worker, which reads the shards one at a time into one fit (`Engine.fit(heldOut, { shards })`:
 * the same merge and reduce), calibrates it on the held-out good images, publishes the model and
 * drops the scratch files. Shards and merge are retried and recovered like score jobs; a
 * cancelled fit, or one whose job failed for good, is marked in Redis (`cancelKey`), and every
 * job of it stops at its next batch and drops the fit's scratch files.
 */
import { performance } from 'node:perf_hooks';

import { type Job, UnrecoverableError } from 'bullmq';

import { Engine } from '../engine/engine.js';
import type { Progress } from '../engine/staged_fit.js';
import { ReconpatchError } from '../errors.js';
import type { EngineOptions } from '../options.js';
import { frameInput } from './protocol.js';
import type { ModelStore } from './store.js';

/** The queue fit jobs use unless told otherwise. */
export const DEFAULT_FIT_QUEUE = 'reconpatch-fit';

/**
 * The staged-patch budget of a distributed fit's shards and merge unless told otherwise: 131,072
 * rows, 512 MiB at 1024 float32 features. A shard file is at most this size; the merge reduces
 * to half of it whenever the shards it has read exceed it (Engine options' `maxStagedPatches`).
 */
export const DEFAULT_FIT_BUDGET = 131_072;

/** Images per shard unless told otherwise. */
export const DEFAULT_SHARD_IMAGES = 128;

/** How long a cancel mark stays in Redis (s): longer than any job of the fit waits to be picked up, in practice. */
export const CANCEL_TTL_S = 3600;

/** The Redis key that marks fit `fit` cancelled (CANCEL_TTL_S, then it expires). */
export function cancelKey(fit: string): string {
  return `reconpatch:fit-cancel:${fit}`;
}

interface FitJobBase {
  v: 1;
  /** The fit's id: its jobs' ids start with it, its scratch files are filed under it. */
  fit: string;
  /** The engine options every shard and the merge create their engine with (threads: the worker's). */
  options: EngineOptions;
  maxStagedPatches: number;
}

/** One shard: images (absolute paths on the workers' shared storage) to stage. */
export interface ShardJobData extends FitJobBase {
  kind: 'shard';
  shard: number;
  images: string[];
}

/** The merge: the flow's parent, run once every shard is done. */
export interface MergeJobData extends FitJobBase {
  kind: 'merge';
  modelId: string;
  /** How many shards the flow has (the merge checks it got every one). */
  shards: number;
  /** Good images held out from the shards: the calibration scores them against the merged model. */
  calibrationImages: string[];
}

export type FitJobData = ShardJobData | MergeJobData;

/** What a shard job returns. */
export interface ShardResult {
  kind: 'shard';
  shard: number;
  /** The scratch part (store.readPart(fit, part)) holding the staged features. */
  part: string;
  images: number;
  patches: number;
  rows: number;
  worker: string;
  seconds: number;
}

/** What the merge job returns, and FleetClient.fit resolves with. */
export interface FleetFitResult {
  kind: 'merge';
  modelId: string;
  /** The published version (the store's current version of `modelId` from now on). */
  version: string;
  images: number;
  patches: number;
  bankRows: number;
  calibrationImages: number;
  threshold: number | null;
  warnings: string[];
  shards: ShardResult[];
  worker: string;
  /** The merge job's own time (reading shards, head, coreset, calibration, publish). */
  seconds: number;
}

/** A fit job's progress, as workers report it on the queue. */
export interface FitJobProgress {
  stage: Progress['stage'] | 'publish';
  done: number;
  total?: number;
  /** The worker running the job (`host:pid`). */
  worker: string;
}

/** What a worker gives the fit jobs it runs. */
export interface FitJobContext {
  store: ModelStore;
  /** When set, images and backbone files must lie below it. */
  sharedRoot: string | undefined;
  threads: number;
  /** `host:pid`, named in results. */
  worker: string;
  /** Whether the fit was cancelled (reads cancelKey). */
  cancelled: (fit: string) => Promise<boolean>;
  /** Marks the fit cancelled (sets cancelKey): a job that fails for good stops its siblings. */
  cancel: (fit: string) => Promise<void>;
}

/** How often a running fit job looks for its fit's cancel mark (ms). */
const CANCEL_POLL_MS = 500;

/** Errors a retry cannot mend: the job fails at once, and so does its fit. */
const FINAL_CODES = new Set(['ERR_INVALID_IMAGE', 'ERR_INVALID_OPTION', 'ERR_MODEL_FILE', 'ERR_ABORTED', 'ERR_EMPTY_TRAINING_SET', 'ERR_INPUT', 'ERR_BACKBONE']);

/**
 * Runs one fit job (a shard or the merge). Failures carry their code as `[ERR_...] message`;
 * those a retry cannot mend are UnrecoverableError, which BullMQ does not retry.
 */
export async function processFitJob(job: Job<FitJobData>, ctx: FitJobContext, signal?: AbortSignal): Promise<ShardResult | FleetFitResult> {
  const started = performance.now();
  const data = job.data;
  let engine: Engine | null = null;
  const abort = new AbortController();
  const poll = setInterval(() => {
    void ctx.cancelled(data.fit).then((yes) => yes && abort.abort(), () => {});
  }, CANCEL_POLL_MS);
  const onSignal = () => abort.abort();
  signal?.addEventListener('abort', onSignal);
  try {
    checkFitJob(data);
    if (await ctx.cancelled(data.fit)) throw new ReconpatchError('ERR_ABORTED', `fit ${data.fit} was cancelled`);
    const options = confinedOptions(data.options, ctx.sharedRoot);
    engine = await Engine.create({ ...options, threads: ctx.threads });
    const images = (list: string[]) => list.map((p) => frameInput({ kind: 'path', path: p }, ctx.sharedRoot) as string);
    const report = progressReporter(job, ctx.worker);
    if (data.kind === 'shard') {
      const s = await engine.stage(images(data.images), { maxStagedPatches: data.maxStagedPatches, signal: abort.signal, onProgress: report });
      const part = `shard-${data.shard}`;
      await ctx.store.writePart(data.fit, part, s.bytes);
      // A cancel that came while this part was written: its siblings may have dropped the fit's parts already.
      if (await ctx.cancelled(data.fit)) throw new ReconpatchError('ERR_ABORTED', `fit ${data.fit} was cancelled`);
      return { kind: 'shard', shard: data.shard, part, images: s.images, patches: s.patches, rows: s.rows, worker: ctx.worker, seconds: (performance.now() - started) / 1000 };
    }
    const shards = shardResults(await job.getChildrenValues(), data.shards);
    const store = ctx.store;
    async function* read() {
      for (const r of shards) yield await store.readPart(data.fit, r.part);
    }
    const summary = await engine.fit(images(data.calibrationImages), {
      shards: read(), maxStagedPatches: data.maxStagedPatches, modelId: data.modelId, signal: abort.signal, onProgress: report,
    });
    if (abort.signal.aborted) throw new ReconpatchError('ERR_ABORTED', `fit ${data.fit} was cancelled`);
    report({ stage: 'publish', done: 0, total: 1 });
    const entry = await store.publish(await engine.saveBytes(), { id: data.modelId });
    await store.dropParts(data.fit);
    return {
      kind: 'merge', modelId: entry.id, version: entry.version, images: summary.images, patches: summary.patches, bankRows: summary.bankRows,
      calibrationImages: summary.calibrationImages, threshold: summary.calibration?.threshold ?? null, warnings: summary.warnings,
      shards, worker: ctx.worker, seconds: (performance.now() - started) / 1000,
    };
  } catch (err) {
    const e = err instanceof ReconpatchError ? err : null;
    const message = `[${e?.code ?? 'ERR_INTERNAL'}] ${err instanceof Error ? err.message : String(err)}`;
    const final = e !== null && FINAL_CODES.has(e.code);
    if (final || job.attemptsMade + 1 >= (job.opts.attempts ?? 1)) {
      // The fit cannot succeed now: its other jobs stop at their next batch (or as they start),
      // and the shards already staged are dropped (a sibling that writes later drops them too).
      await ctx.cancel(data.fit).catch(() => {});
      await ctx.store.dropParts(data.fit).catch(() => {});
    }
    throw final ? new UnrecoverableError(message) : new Error(message);
  } finally {
    clearInterval(poll);
    signal?.removeEventListener('abort', onSignal);
    await engine?.dispose();
  }
}

/** Progress to the queue, at most every 250 ms and at each stage's end (each report is a Redis write). */
function progressReporter(job: Job<FitJobData>, worker: string): (p: Progress | Omit<FitJobProgress, 'worker'>) => void {
  let last = 0;
  let stage = '';
  return (p) => {
    const now = performance.now();
    if (now - last < 250 && p.done !== p.total && p.stage === stage) return;
    stage = p.stage;
    last = now;
    const progress: FitJobProgress = { stage: p.stage, done: p.done, ...(p.total === undefined ? {} : { total: p.total }), worker };
    void job.updateProgress(progress as unknown as object).catch(() => {});
  };
}

/** The shards' results from the merge job's children, in shard order; ERR_INTERNAL unless every shard is there. */
function shardResults(values: Record<string, unknown>, count: number): ShardResult[] {
  const shards = Object.values(values).map((v) => (typeof v === 'string' ? JSON.parse(v) : v) as ShardResult).filter((r) => r?.kind === 'shard');
  shards.sort((a, b) => a.shard - b.shard);
  if (shards.length !== count || shards.some((r, i) => r.shard !== i))
    throw new ReconpatchError('ERR_INTERNAL', `the merge found ${shards.length} of its ${count} shards' results`);
  return shards;
}

function checkFitJob(data: FitJobData): void {
  const bad = (why: string) => new ReconpatchError('ERR_INVALID_OPTION', `not a reconpatch fit job (v1): ${why}; submit it with FleetClient.fit or reconpatch fit --redis of the same version as the workers`);
  if (data?.v !== 1 || (data.kind !== 'shard' && data.kind !== 'merge')) throw bad('unknown layout');
  if (typeof data.fit !== 'string' || typeof data.options !== 'object' || data.options === null) throw bad('no fit id or options');
  const paths = data.kind === 'shard' ? data.images : data.calibrationImages;
  if (!Array.isArray(paths) || !paths.every((p) => typeof p === 'string')) throw bad('images are not a list of paths');
}

/** The job's engine options with its files (backbone, weights) held to the shared root like images: job data comes from whoever can write to Redis. */
function confinedOptions(options: EngineOptions, sharedRoot: string | undefined): EngineOptions {
  for (const key of ['backbone', 'weights'] as const) {
    const file = options[key];
    if (typeof file === 'string' && (file.includes('/') || file.includes('\\'))) {
      try {
        frameInput({ kind: 'path', path: file }, sharedRoot);
      } catch (err) {
        throw new ReconpatchError('ERR_INVALID_OPTION', `the fit's ${key} ${(err as Error).message.replace("the job's frame ", '')}`);
      }
    }
  }
  return options;
}
