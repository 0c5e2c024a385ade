/**
 * The client side of a distributed fit (./fit_jobs.ts): split the images into shards and a
 * held-out calibration set, add the flow (shard jobs under one merge job) to the fit queue, report
 * its progress, wait for the published model, and cancel it through Redis when asked.
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';

import { FlowProducer, Job, Queue, QueueEvents } from 'bullmq';

import { holdoutPicker } from '../calibration.js';
import { BUDGET_HOLDOUT, checkMaxStagedPatches } from '../engine/staged_fit.js';
import { ReconpatchError } from '../errors.js';
import { type EngineOptions, resolveCalibration } from '../options.js';
import { CANCEL_TTL_S, DEFAULT_FIT_BUDGET, DEFAULT_SHARD_IMAGES, type FitJobData, type FitJobProgress, type FleetFitResult, type MergeJobData, type ShardJobData, cancelKey } from './fit_jobs.js';
import { JOB_ATTEMPTS, KEEP_RESULTS, checkJobId } from './protocol.js';

/** Options of {@link FleetClient.fit}. */
export interface FleetFitOptions {
  /** The id the model is published under in the workers' store (its new current version). */
  modelId: string;
  /**
   * The engine options, as `Engine.create` takes them (`head: 'auto'` aside). Files (`backbone`,
   * `weights`) are paths the workers read: on their shared storage, like the images.
   */
  engine: EngineOptions;
  /** Shard jobs (default: one per DEFAULT_SHARD_IMAGES = 128 images): at most as many workers embed at once. */
  shards?: number;
  /** The staged-patch budget of every shard and of the merge (default DEFAULT_FIT_BUDGET = 131,072 rows). */
  maxStagedPatches?: number;
  /** Share of the images held out of the bank to calibrate on (default `engine.calibration.holdout`, else 0.1). */
  holdout?: number;
  /** Called as the fit's jobs advance: `job` is `'shard-<k>'` or `'merge'`. */
  onProgress?: (p: FitJobProgress & { job: string }) => void;
  /** Cancels the fit: every job stops at its next batch, nothing is published, the promise rejects with ERR_ABORTED. */
  signal?: AbortSignal;
  /** The fit's id (default: a new one): its jobs' ids start with it. Letters, digits, '.', '_', '-'. */
  fitId?: string;
}

/** Runs distributed fits on one fit queue (a FleetClient's, made on its first fit). */
export class FitSubmitter {
  readonly #flows: FlowProducer;
  readonly #queue: Queue<FitJobData>;
  readonly #events: QueueEvents;

  constructor(redis: string, queue: string) {
    const connection = { url: redis, maxRetriesPerRequest: null };
    this.#flows = new FlowProducer({ connection });
    this.#queue = new Queue<FitJobData>(queue, { connection });
    this.#events = new QueueEvents(queue, { connection });
    this.#events.setMaxListeners(0);
    this.#queue.setMaxListeners(0);
    this.#flows.on('error', () => {});
    this.#queue.on('error', () => {});
    this.#events.on('error', () => {});
  }

  ready(): Promise<unknown> {
    return Promise.all([this.#flows.waitUntilReady(), this.#queue.waitUntilReady(), this.#events.waitUntilReady()]);
  }

  async close(): Promise<void> {
    await Promise.all([this.#flows.close(), this.#queue.close(), this.#events.close()]);
  }

  /** See FleetClient.fit. */
  async fit(images: string[], options: FleetFitOptions): Promise<FleetFitResult> {
    const plan = planFit(images, options);
    const { signal, onProgress } = options;
    if (signal?.aborted) throw aborted(plan.fit);
    const jobOptions = { attempts: JOB_ATTEMPTS, backoff: { type: 'exponential', delay: 1000 }, removeOnComplete: KEEP_RESULTS, removeOnFail: { age: 24 * 3600 } };
    const onEvent = ({ jobId, data }: { jobId: string; data: unknown }) => {
      if (jobId.startsWith(`${plan.fit}.`) && onProgress) onProgress({ ...(data as FitJobProgress), job: jobId.slice(plan.fit.length + 1) });
    };
    // The cancel is listened for before the flow exists: a progress callback may abort at once.
    let cancel: (() => void) | undefined;
    const cancelled = new Promise<never>((_, reject) => {
      cancel = () => {
        void this.#queue.getBackend().client.then((c) => c.set(cancelKey(plan.fit), '1', { EX: CANCEL_TTL_S })).catch(() => {});
        reject(aborted(plan.fit));
      };
    });
    cancelled.catch(() => {});
    signal?.addEventListener('abort', cancel!);
    this.#events.on('progress', onEvent);
    try {
      const tree = await this.#flows.add({
        name: 'merge', queueName: this.#queue.name, data: plan.merge, opts: { ...jobOptions, jobId: `${plan.fit}.merge` },
        children: plan.shards.map((data) => ({ name: 'shard', queueName: this.#queue.name, data, opts: { ...jobOptions, jobId: `${plan.fit}.shard-${data.shard}`, failParentOnFailure: true } })),
      });
      try {
        const result = await Promise.race([tree.job.waitUntilFinished(this.#events), cancelled]);
        return (typeof result === 'string' ? JSON.parse(result) : result) as FleetFitResult;
      } catch (err) {
        throw await this.#explain(err);
      }
    } finally {
      this.#events.off('progress', onEvent);
      signal?.removeEventListener('abort', cancel!);
    }
  }

  /** A failed fit as a typed error: the failed shard's code (`[ERR_...] ...`) when a shard failed it, else the merge's, else ERR_QUEUE. */
  async #explain(err: unknown): Promise<unknown> {
    if (err instanceof ReconpatchError) return err;
    let reason = err instanceof Error ? err.message : String(err);
    // A failed child fails its parent with "child <prefix>:<queue>:<job id> failed".
    const child = /child \S+:([^:\s]+) failed/.exec(reason);
    const failed = child ? await Job.fromId(this.#queue, child[1]).catch(() => undefined) : undefined;
    if (failed?.failedReason) reason = failed.failedReason;
    const coded = /^\[(ERR_[A-Z_]+)\] (.*)$/s.exec(reason);
    if (coded) return new ReconpatchError(coded[1] as 'ERR_INTERNAL', coded[2]);
    return new ReconpatchError('ERR_QUEUE', `the distributed fit failed: ${reason} (its jobs stay in the fit queue's failed set for a day: inspect them there)`);
  }
}

/** The fit's jobs: images split into shards and a held-out calibration set. Throws ERR_INVALID_OPTION, ERR_EMPTY_TRAINING_SET. */
export function planFit(images: string[], options: FleetFitOptions): { fit: string; shards: ShardJobData[]; merge: MergeJobData } {
  if (!Array.isArray(images) || !images.every((p) => typeof p === 'string'))
    throw new ReconpatchError('ERR_INVALID_OPTION', 'a distributed fit takes a list of image paths (on storage the workers share)');
  if (options === null || typeof options !== 'object' || typeof options.modelId !== 'string')
    throw new ReconpatchError('ERR_INVALID_OPTION', 'a distributed fit needs { modelId, engine }');
  const engine = options.engine;
  if (engine === null || typeof engine !== 'object') throw new ReconpatchError('ERR_INVALID_OPTION', 'a distributed fit needs engine options ({ backbone, ... })');
  for (const key of ['backbone', 'weights'] as const) {
    const file = engine[key];
    if (typeof file === 'string' && /[\\/]|\.(pt|pth)$/.test(file) && !path.isAbsolute(file))
      throw new ReconpatchError('ERR_INVALID_OPTION', `the ${key} path must be absolute: the workers read it on their shared storage, got ${JSON.stringify(file)}`);
  }
  if (engine.head === 'auto') throw new ReconpatchError('ERR_INVALID_OPTION', "head: 'auto' is not available to a distributed fit (its check needs the images on one machine); use head true or false");
  const fit = checkJobId(options.fitId ?? `fit-${randomUUID()}`);
  // It names the fit's scratch folder too: the model id rule (no '/', no leading '.').
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(fit)) throw new ReconpatchError('ERR_INVALID_OPTION', `fitId must be letters, digits, '.', '_' or '-' (at most 128, starting with a letter or digit), got ${JSON.stringify(fit)}`);
  const maxStagedPatches = checkMaxStagedPatches(options.maxStagedPatches ?? DEFAULT_FIT_BUDGET);
  if (maxStagedPatches === 0) throw new ReconpatchError('ERR_INVALID_OPTION', 'a distributed fit needs a staged-patch budget (maxStagedPatches > 0): its shards travel through storage');
  const calibration = resolveCalibration(engine.calibration);
  const holdout = options.holdout ?? (calibration.holdout || BUDGET_HOLDOUT);
  if (!(typeof holdout === 'number' && holdout >= 0 && holdout <= 0.5)) throw new ReconpatchError('ERR_INVALID_OPTION', `holdout must be a number in [0, 0.5], got ${JSON.stringify(holdout)}`);
  const paths = images.map((p) => path.resolve(p));
  const heldOut = calibration.enabled ? holdoutPicker(paths.length, holdout, calibration.minImages) : () => false;
  const calibrationImages = paths.filter((_, i) => heldOut(i));
  const rest = paths.filter((_, i) => !heldOut(i));
  if (rest.length === 0) throw new ReconpatchError('ERR_EMPTY_TRAINING_SET', 'a distributed fit received no images to fit on; pass good images (at least 2 with calibration on)');
  const count = options.shards ?? Math.ceil(rest.length / DEFAULT_SHARD_IMAGES);
  if (!Number.isInteger(count) || count < 1 || count > rest.length)
    throw new ReconpatchError('ERR_INVALID_OPTION', `shards must be an integer from 1 to the ${rest.length} images fitted, got ${JSON.stringify(options.shards)}`);
  const base = { v: 1 as const, fit, options: engine, maxStagedPatches };
  // Contiguous runs of the input, as even as can be.
  const shards: ShardJobData[] = [];
  for (let k = 0; k < count; k++)
    shards.push({ ...base, kind: 'shard', shard: k, images: rest.slice(Math.floor((k * rest.length) / count), Math.floor(((k + 1) * rest.length) / count)) });
  return { fit, shards, merge: { ...base, kind: 'merge', modelId: options.modelId, shards: count, calibrationImages } };
}

function aborted(fit: string): ReconpatchError {
  return new ReconpatchError('ERR_ABORTED', `fit ${fit} was cancelled: its jobs stop at their next batch and nothing is published`);
}
