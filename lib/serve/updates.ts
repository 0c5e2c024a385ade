/**
 * "Update model from confirmed-good images": the current stored version is loaded apart from the
 * one serving (so scoring goes on undisturbed), `update(images)` takes the images an operator
 * labelled good, and the result is published to the store as a new version, which the pool then
 * picks up on the next score (hot reload). One update per model at a time; progress is pollable.
 */
import { randomUUID } from 'node:crypto';

import type { FastifyBaseLogger } from 'fastify';

import type { LoadOptions } from '../engine/types.js';
import { ServeError, toHttpError } from './http_errors.js';
import type { ServeMetrics } from './metrics.js';
import { type ModelStore, loadStoredModel } from '../fleet/store.js';
import type { VerdictLog } from './verdicts.js';

export interface UpdateJob {
  id: string;
  model: string;
  state: 'running' | 'done' | 'failed';
  /** The engine's stage ('load', 'embed', 'coreset', 'calibrate', 'publish') and its progress. */
  stage: string;
  done: number;
  total: number | null;
  images: number;
  fromVersion: string;
  /** The published version, once done. */
  version: string | null;
  addedRows: number | null;
  threshold: number | null;
  error: { code: string; message: string } | null;
  started: string;
  finished: string | null;
}

export class Updates {
  readonly #jobs = new Map<string, UpdateJob>();
  readonly #running = new Set<string>();

  constructor(
    private readonly store: ModelStore,
    private readonly verdicts: VerdictLog,
    private readonly load: LoadOptions,
    private readonly metrics: ServeMetrics,
    private readonly log: FastifyBaseLogger,
    private readonly hide: string[],
  ) {}

  get(id: string): UpdateJob | undefined {
    const job = this.#jobs.get(id);
    return job && { ...job };
  }

  /** Starts an update of `model` from its good-labelled verdicts; answers at once with the job. */
  async start(model: string): Promise<UpdateJob> {
    const entry = await this.store.current(model); // ERR_MODEL_NOT_FOUND before anything else
    if (this.#running.has(model)) throw new ServeError(409, 'ERR_BUSY', `an update of '${model}' is already running; poll it and retry when it is done`);
    const good = this.verdicts.goodImages(model);
    if (good.length === 0)
      throw new ServeError(400, 'ERR_NO_GOOD_IMAGES', `no verdict of '${model}' is labelled good (with its image still kept): label false alarms 'good' first`);
    const job: UpdateJob = {
      id: randomUUID(), model, state: 'running', stage: 'load', done: 0, total: null, images: good.length, fromVersion: entry.version,
      version: null, addedRows: null, threshold: null, error: null, started: new Date().toISOString(), finished: null,
    };
    this.#jobs.set(job.id, job);
    this.#running.add(model);
    void this.#run(job, good).finally(() => this.#running.delete(model));
    return { ...job };
  }

  async #run(job: UpdateJob, good: { id: string; image: Buffer }[]): Promise<void> {
    const images = good.map((g) => g.image);
    const log = this.log.child({ update: job.id, model: job.model });
    try {
      const { bytes } = await this.store.read(job.model, job.fromVersion);
      const model = await loadStoredModel(bytes, this.load);
      try {
        const summary = await model.update(images, {
          onProgress: (p) => Object.assign(job, { stage: p.stage, done: p.done, total: p.total ?? null }),
        });
        job.stage = 'publish';
        const published = await this.store.publish(await model.saveBytes(), { id: job.model });
        this.verdicts.learned(good.map((g) => g.id), published.version);
        Object.assign(job, { version: published.version, addedRows: summary.addedRows, threshold: summary.calibration?.threshold ?? null, state: 'done' });
        log.info({ version: published.version, images: images.length, addedRows: summary.addedRows }, 'model updated and published');
        this.metrics.updates.inc({ model: job.model, outcome: 'done' });
      } finally {
        await model.dispose();
      }
    } catch (err) {
      const e = toHttpError(err, this.hide);
      job.state = 'failed';
      job.error = { code: e.code, message: e.message };
      log.error({ err }, 'model update failed');
      this.metrics.updates.inc({ model: job.model, outcome: 'failed' });
    } finally {
      job.finished = new Date().toISOString();
    }
  }
}
