/**
 * reconpatch/fleet: beyond one process. The model store (versions by id, the current one,
 * rollback) that workers and the service read models from; workers on a Redis queue (BullMQ) that
 * score frames and run distributed fits, and the client that submits both.
 * @example
 * import { DirectoryModelStore, FleetClient } from 'reconpatch/fleet';
 * const store = new DirectoryModelStore('/srv/models');
 * const { version } = await store.publish('part.rcp', { id: 'line3-cam2' });
 * const fleet = new FleetClient({ redis: 'redis://127.0.0.1:6379' });
 * const verdict = await fleet.score('frame.png', { model: 'line3-cam2' });
 */
export { DirectoryModelStore, loadStoredModel } from './store.js';
export type { ModelStore, StoreModel, StoredVersion } from './store.js';
export { FleetClient } from './client.js';
export type { FleetClientOptions, FrameInput, FrameItem, SubmitOptions } from './client.js';
export type { FleetFitOptions } from './fit_client.js';
export { DEFAULT_FIT_BUDGET, DEFAULT_FIT_QUEUE, DEFAULT_SHARD_IMAGES } from './fit_jobs.js';
export type { FitJobProgress, FleetFitResult, ShardResult } from './fit_jobs.js';
export { FleetWorker, threadsFor } from './worker.js';
export type { FleetWorkerOptions } from './worker.js';
export { DEFAULT_QUEUE, INLINE_FRAME_MAX_BYTES, JOB_ATTEMPTS, KEEP_RESULTS, STALLED_DEFAULTS } from './protocol.js';
export type { FailedVerdict, JobFrame, ScoreJobData, ScoredVerdict, Verdict, VerdictError } from './protocol.js';
