/** `reconpatch worker`, `submit` and `fit --redis`: the fleet of workers on Redis (lib/fleet/). */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';

import { ReconpatchError } from '../errors.js';
import { FleetClient } from '../fleet/client.js';
import { DEFAULT_QUEUE, INLINE_FRAME_MAX_BYTES, STALLED_DEFAULTS } from '../fleet/protocol.js';
import { FleetWorker, cores } from '../fleet/worker.js';
import { DEFAULT_FIT_QUEUE } from '../fleet/fit_jobs.js';
import { engineOptions, ensembleMembers, numberFlag, parseCommandArgs } from './args.js';
import { expandInputs } from './inputs.js';
import { help, report, rowFormat, rowWriter } from './output.js';
import { progressLogger } from './progress.js';

const WORKER_HELP = `reconpatch worker --redis <url> --store <dir> [options]

Takes score jobs from a Redis queue (BullMQ) and scores each frame with the current version of the
job's model in the model store; the verdict is the job's result. Also takes a distributed fit's
jobs ('reconpatch fit --redis'), one at a time on every core: shards it embeds, and the merge that
publishes the model to the store. Before each job the store says
which version is current, so 'reconpatch models publish' and 'models rollback' switch versions
between jobs (a job in flight finishes on its version). A version that fails to load here is
reported and the previous version this worker loaded keeps serving. SIGTERM or SIGINT: stop
taking jobs, finish the ones in flight, free the models, exit 0.
  --redis <url>               Redis, e.g. redis://127.0.0.1:6379
  --store <dir>               the model store ('reconpatch models publish ... --store <dir>')
  --queue <name>              queue name (default ${DEFAULT_QUEUE})
  --concurrency <n>           jobs worked on at once (default 1)
  --threads <n>               libtorch threads per model (default: cores / concurrency, here ${cores()} cores;
                              concurrency x threads = cores: more oversubscribes the cores)
  --cache <n>                 models kept loaded, least recently used freed first (default 2; ~100 MB each)
  --shared-root <dir>         frames sent by reference must lie below <dir> (default: any absolute path)
  --lock-duration <ms>        a job's lock; a dead worker's job is taken over after it expires (default ${STALLED_DEFAULTS.lockDuration})
  --stalled-interval <ms>     how often stalled jobs are looked for (default ${STALLED_DEFAULTS.stalledInterval})
  --max-stalled <n>           stalls before a job fails instead of being retried (default ${STALLED_DEFAULTS.maxStalledCount})
  --fit-queue <name>          the distributed fits' queue (default ${DEFAULT_FIT_QUEUE})
  --no-fits                   take no fit jobs (score only)`;

export async function workerCommand(rest: string[]): Promise<number> {
  const { values } = parseCommandArgs({
    args: rest,
    options: {
      help: { type: 'boolean', short: 'h' }, redis: { type: 'string' }, store: { type: 'string' }, queue: { type: 'string' },
      concurrency: { type: 'string' }, threads: { type: 'string' }, cache: { type: 'string' }, 'shared-root': { type: 'string' },
      'lock-duration': { type: 'string' }, 'stalled-interval': { type: 'string' }, 'max-stalled': { type: 'string' },
      'fit-queue': { type: 'string' }, 'no-fits': { type: 'boolean' },
    },
  });
  if (values.help || !values.redis || !values.store) return help(WORKER_HELP, !values.help);
  const worker = await FleetWorker.start({
    redis: values.redis, store: values.store, queue: values.queue, sharedRoot: values['shared-root'],
    fitQueue: values['no-fits'] ? false : values['fit-queue'],
    concurrency: numberFlag('concurrency', values.concurrency), threads: numberFlag('threads', values.threads),
    cacheSize: numberFlag('cache', values.cache), lockDuration: numberFlag('lock-duration', values['lock-duration']),
    stalledInterval: numberFlag('stalled-interval', values['stalled-interval']), maxStalledCount: numberFlag('max-stalled', values['max-stalled']),
  });
  process.stderr.write(`reconpatch worker: ${worker.name} ready on queue ${values.queue ?? DEFAULT_QUEUE}: concurrency ${worker.concurrency} x ${worker.threads} threads\n`);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  process.stderr.write(`reconpatch worker: ${signal}: finishing the jobs in flight (a second signal stops at once)\n`);
  const now = () => {
    process.stderr.write('reconpatch worker: stopped at once; jobs in flight go back to the queue when their locks expire\n');
    process.exit(1);
  };
  process.once('SIGTERM', now);
  process.once('SIGINT', now);
  await worker.close();
  process.stderr.write('reconpatch worker: stopped\n');
  return 0;
}

const SUBMIT_HELP = `reconpatch submit --redis <url> --model <id> <dir|glob|image>... [options]

Submits frames to the workers on the queue and prints one row per frame as its verdict arrives
(the columns of 'reconpatch score', and the model id and version that scored it; rows come in the
order verdicts arrive). Files up to ${INLINE_FRAME_MAX_BYTES} bytes travel in the job; larger ones by reference:
their absolute path must be readable by the workers (shared storage).
  --redis <url>               Redis, e.g. redis://127.0.0.1:6379
  --model <id>                the model id in the workers' store
  --queue <name>              queue name (default ${DEFAULT_QUEUE})
  --format text|jsonl|csv     output rows (default text; --json means jsonl)
  --max-in-flight <n>         frames in the queue and not yet answered at once (default 64)
  --run-id <id>               job ids are <id>.<n>: submitting again with the same run id (after this command
                              was interrupted) returns the verdicts already made instead of scoring twice
  --by-reference              send every file by path, never inline
The exit code is 1 when any frame failed (its row carries the error).`;

export async function submitCommand(rest: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs({
    args: rest, allowPositionals: true,
    options: {
      help: { type: 'boolean', short: 'h' }, redis: { type: 'string' }, model: { type: 'string' }, queue: { type: 'string' },
      format: { type: 'string' }, json: { type: 'boolean' }, 'max-in-flight': { type: 'string' }, 'run-id': { type: 'string' },
      'by-reference': { type: 'boolean' },
    },
  });
  if (values.help || !values.redis || !values.model || positionals.length === 0) return help(SUBMIT_HELP, !values.help);
  const writeRow = rowWriter(rowFormat(values.format, values.json));
  const runId = values['run-id'] ?? randomUUID();
  if (!/^[A-Za-z0-9_-]{1,100}$/.test(runId)) throw new ReconpatchError('ERR_INVALID_OPTION', `--run-id must be 1 to 100 letters, digits, '_' or '-', got '${runId}'`);
  const images = await expandInputs(positionals);
  const client = new FleetClient({ redis: values.redis, queue: values.queue, maxInFlight: numberFlag('max-in-flight', values['max-in-flight']) });
  let failed = 0;
  try {
    const frames = images.map((im, i) => ({ image: im.path, name: im.path, jobId: `${runId}.${i}` }));
    for await (const v of client.submit(frames, { model: values.model, files: values['by-reference'] ? 'reference' : 'auto' })) {
      if (v.error) {
        failed++;
        writeRow({ path: v.path, error: v.error, ...(v.modelId !== undefined ? { modelId: v.modelId, modelVersion: v.modelVersion } : {}) });
        continue;
      }
      writeRow({
        path: v.path, score: v.score, normalizedScore: v.normalizedScore, isAnomaly: v.isAnomaly, width: v.width, height: v.height,
        modelId: v.modelId, modelVersion: v.modelVersion, ...(v.fallback ? { fallback: v.fallback } : {}),
      });
    }
  } finally {
    await client.close();
  }
  return failed ? 1 : 0;
}

/** `reconpatch fit --redis <url> --model-id <id> <inputs>`: a distributed fit on the workers (FleetClient.fit). */
export async function distributedFitCommand(values: Record<string, string | boolean | string[] | undefined>, positionals: string[]): Promise<number> {
  const modelId = values['model-id'];
  if (typeof modelId !== 'string') throw new ReconpatchError('ERR_INVALID_OPTION', 'fit --redis publishes to the workers\' store: give the model\'s id with --model-id <id>');
  if (values.output) throw new ReconpatchError('ERR_INVALID_OPTION', 'fit --redis publishes to the workers\' store, not to a file: leave out -o (read it back with reconpatch models list --store <dir>)');
  if (ensembleMembers(values)) throw new ReconpatchError('ERR_INVALID_OPTION', 'fit --redis builds one engine: give one --backbone (an ensemble is fitted on one machine: leave out --redis)');
  for (const flag of ['threshold', 'continue-on-error'])
    if (values[flag] !== undefined) throw new ReconpatchError('ERR_INVALID_OPTION', `--${flag} is not available to fit --redis: the workers fit and publish (set a threshold afterwards on the published model)`);
  const engine = engineOptions(values);
  // The workers read the backbone file: pass it as an absolute path (a built-in name stays a name).
  if (existsSync(engine.backbone)) engine.backbone = path.resolve(engine.backbone);
  if (engine.weights !== undefined && existsSync(engine.weights)) engine.weights = path.resolve(engine.weights);
  const falseAlarmRate = numberFlag('false-alarm-rate', values['false-alarm-rate'] as string | undefined);
  if (falseAlarmRate !== undefined) engine.calibration = { falseAlarmRate };
  const images = (await expandInputs(positionals)).map((i) => i.path);
  const client = new FleetClient({ redis: values.redis as string, fitQueue: values['fit-queue'] as string | undefined });
  const log = progressLogger();
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGINT', stop);
  try {
    const maxStagedPatches = numberFlag('max-staged-patches', values['max-staged-patches'] as string | undefined);
    const r = await client.fit(images, {
      modelId, engine, shards: numberFlag('shards', values.shards as string | undefined), signal: controller.signal,
      ...(maxStagedPatches === undefined ? {} : { maxStagedPatches }),
      onProgress: (p) => log({ ...p, stage: `${p.job} ${p.stage}` }),
    });
    for (const w of r.warnings) process.stderr.write(`reconpatch: warning: ${w}\n`);
    report({ ...r }, values.json as boolean | undefined);
  } finally {
    process.off('SIGINT', stop);
    await client.close();
  }
  return 0;
}
