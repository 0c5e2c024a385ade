/**
 * The reconpatch service as a fastify plugin: register it in your own fastify app (any prefix)
 * or run it with `reconpatch serve`. Routes (all but /health/* and the review page's files need
 * `Authorization: Bearer <token>`):
 *
 *   POST /score?model=<id>[&tag=<line/camera>][&name=<file name>]  image body (image/*, application/octet-stream) or multipart -> verdict
 *   GET  /verdicts?filter=anomalies|borderline|all&tag=&model=&limit=                        recent, newest first
 *   GET  /verdicts/:id/image, /verdicts/:id/heatmap                                           the kept bytes (PNG heatmap)
 *   POST /verdicts/:id/label {label: 'good'|'defect'}
 *   POST /models/:id/update -> 202 job;  GET /updates/:job                                    update from good-labelled images
 *   GET  /models, /models/:id/calibration;  GET /metrics;  GET /health/live, /health/ready;  GET /review
 *
 * Encapsulated (no fastify-plugin): its parsers, hooks and error handler apply to its own routes only.
 */
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';

import { ReconpatchError } from '../errors.js';
import { BORDERLINE_BAND } from '../heatmap.js';
import { runtimeInfo } from '../native.js';
import { ServeError, isLoopback, toHttpError, tokenMatches } from './http_errors.js';
import { ServeMetrics } from './metrics.js';
import { ModelPool } from './models.js';
import { registerReview } from './review.js';
import type { ModelStore } from '../fleet/store.js';
import { Updates } from './updates.js';
import { type Label, type VerdictFilter, VerdictLog } from './verdicts.js';

export interface ServeLimits {
  /** Largest image body (raw or the multipart file), bytes. */
  maxImageBytes: number;
  /** Largest image, pixels (checked from the header before decoding). */
  maxPixels: number;
  /** A score taking longer is answered 503 ERR_TIMEOUT (the work finishes in the background). */
  scoreTimeoutMs: number;
  /** Images being scored at once; more get 503 ERR_BUSY. */
  maxConcurrentScores: number;
  /** Score bodies being received at once (at most this x maxImageBytes buffered); more get 503 ERR_BUSY. */
  maxBodiesInFlight: number;
  /** Verdicts kept in memory, and how many of the newest keep their image and heatmap. */
  recentVerdicts: number;
  recentImages: number;
}

export const SERVE_LIMITS: Readonly<ServeLimits> = Object.freeze({
  maxImageBytes: 32 * 1024 * 1024, maxPixels: 40_000_000, scoreTimeoutMs: 60_000, maxConcurrentScores: 32, maxBodiesInFlight: 64, recentVerdicts: 2000, recentImages: 200,
});

export interface ReconpatchPluginOptions {
  /** Where the models come from, by id (lib/fleet/store.ts's DirectoryModelStore, or anything of its shape). */
  store: ModelStore;
  /** The bearer token (at least 16 characters). Null only with `allowNoTokenOnLoopback`, and then loopback clients only. */
  token: string | null;
  allowNoTokenOnLoopback?: boolean;
  limits?: Partial<ServeLimits>;
  /** libtorch threads per loaded model. */
  threads?: number;
  /** A verdict is borderline when its normalizedScore is within this of 0.5 (the threshold). Default 0.1 (BORDERLINE_BAND, as heatmap banners). */
  borderlineBand?: number;
  /** Server paths never to show in error messages (the store's directory). */
  hidePaths?: string[];
  /** Also collect prom-client's process metrics (default true). */
  defaultMetrics?: boolean;
  /** Load every stored model when the plugin starts (default true): readiness then means "can score". */
  preload?: boolean;
}

const MODEL_ID = { type: 'string', pattern: '^[A-Za-z0-9._-]{1,128}$' } as const;
const ID_PARAMS = { type: 'object', properties: { id: { type: 'string', maxLength: 128 } }, required: ['id'] } as const;

export const reconpatchPlugin: FastifyPluginAsync<ReconpatchPluginOptions> = async (app: FastifyInstance, opts) => {
  const token = opts.token ?? null;
  if (token === null || token === '') {
    if (!opts.allowNoTokenOnLoopback) throw new ReconpatchError('ERR_INVALID_OPTION', 'reconpatch serve: a token is required (or token: null with allowNoTokenOnLoopback: true, which serves loopback clients only)');
  } else if (typeof token !== 'string' || token.length < 16) throw new ReconpatchError('ERR_INVALID_OPTION', 'reconpatch serve: the token must be a string of at least 16 characters');
  const L: ServeLimits = { ...SERVE_LIMITS, ...opts.limits };
  const band = opts.borderlineBand ?? BORDERLINE_BAND; // the heatmap banner's band too
  const hide = opts.hidePaths ?? [];
  const load = { input: { maxPixels: L.maxPixels }, ...(opts.threads ? { threads: opts.threads } : {}) };
  const metrics = new ServeMetrics(opts.defaultMetrics ?? true);
  const pool = new ModelPool(opts.store, load, app.log);
  pool.onChange = (loaded) => metrics.setLoaded(loaded);
  const verdicts = new VerdictLog(L.recentVerdicts, L.recentImages);
  const updates = new Updates(opts.store, verdicts, load, metrics, app.log, hide);
  let scoring = 0;
  let receiving = 0;
  // Each score body being received holds one of maxBodiesInFlight until it is whole (or its client is gone).
  const uploads = new WeakMap<FastifyRequest, () => void>();
  const busy = (what: string) => new ServeError(503, 'ERR_BUSY', `too many ${what}; retry shortly`, { 'retry-after': '1' });

  app.addHook('onClose', async () => pool.close());
  if (opts.preload ?? true) await pool.preload();

  app.setErrorHandler((err, req, reply) => {
    const e = toHttpError(err, hide);
    if (e.status >= 500) req.log.error({ err }, 'request failed');
    else req.log.info({ code: e.code }, e.message);
    metrics.errors.inc({ code: e.code });
    return reply.code(e.status).headers(e.headers).send({ error: { code: e.code, message: e.message } });
  });
  app.setNotFoundHandler((req, reply) => {
    metrics.errors.inc({ code: 'ERR_NOT_FOUND' });
    return reply.code(404).send({ error: { code: 'ERR_NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` } });
  });

  // Auth: every route but the health probes and the review page's static files (which hold no data).
  app.addHook('onRequest', async (req) => {
    if (req.routeOptions.config && (req.routeOptions.config as { open?: boolean }).open) return;
    if (token) {
      if (!tokenMatches(req.headers.authorization, token))
        throw new ServeError(401, 'ERR_UNAUTHORIZED', 'send Authorization: Bearer <token>', { 'www-authenticate': 'Bearer' });
    } else if (!isLoopback(req.socket.remoteAddress)) {
      throw new ServeError(403, 'ERR_FORBIDDEN', 'this service runs without a token and serves loopback clients only');
    }
  });

  // Image bodies arrive whole (bounded by bodyLimit and fastify's request timeout) before a scoring slot is taken.
  const asBuffer = (_req: FastifyRequest, body: Buffer, done: (err: Error | null, body?: Buffer) => void) => done(null, body);
  app.addContentTypeParser(/^image\/[a-z0-9.+-]+$/, { parseAs: 'buffer', bodyLimit: L.maxImageBytes }, asBuffer);
  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer', bodyLimit: L.maxImageBytes }, asBuffer);
  await app.register(multipart, { limits: { fileSize: L.maxImageBytes, files: 1, fields: 4, parts: 5, fieldSize: 1024 }, throwFileSizeLimit: true });

  const open = { config: { open: true } };
  app.get('/health/live', open, async () => ({ live: true }));
  app.get('/health/ready', open, async (_req, reply) => {
    const why: string[] = [];
    try {
      runtimeInfo();
    } catch {
      why.push('the native addon does not load');
    }
    // A store that was empty at start may have a model now: load it, so readiness does not wait for a score that a not-ready service never gets.
    if (pool.loaded.length === 0) await pool.preload().catch((err: unknown) => app.log.warn({ err }, 'readiness: loading the store failed'));
    if (pool.loaded.length === 0) why.push('no model is loaded (publish one to the store)');
    return reply.code(why.length ? 503 : 200).send({ ready: why.length === 0, models: pool.loaded, ...(why.length ? { why } : {}) });
  });

  app.get('/metrics', async (_req, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));

  app.post('/score', {
    bodyLimit: L.maxImageBytes,
    preParsing: async (req) => {
      if (receiving >= L.maxBodiesInFlight) throw busy('uploads in progress');
      receiving++;
      let held = true;
      const giveBack = () => {
        if (held) receiving--;
        held = false;
      };
      uploads.set(req, giveBack);
      req.raw.once('close', giveBack);
    },
    schema: {
      querystring: { type: 'object', properties: { model: MODEL_ID, tag: { type: 'string', maxLength: 64 }, name: { type: 'string', maxLength: 200 } }, required: ['model'], additionalProperties: false },
    },
  }, async (req: FastifyRequest<{ Querystring: { model: string; tag?: string; name?: string } }>, reply: FastifyReply) => {
    let image: Buffer;
    try {
      image = await imageOf(req);
    } finally {
      uploads.get(req)?.();
    }
    // A scoring slot is taken only once the body is whole: slow uploads never hold one.
    if (scoring >= L.maxConcurrentScores) throw busy('images being scored');
    const { model, tag, name } = req.query;
    scoring++;
    const started = process.hrtime.bigint();
    let lease;
    try {
      lease = await pool.acquire(model);
    } catch (err) {
      scoring--;
      throw err;
    }
    const { entry } = lease;
    // Read now: once the lease is given back, a model replaced by a newer version may be disposed.
    const threshold = lease.model.info.calibration?.threshold ?? null;
    // The lease is given back when the score really ends, even after a timeout answered the client.
    const work = lease.model.score(image, { heatmap: L.recentImages > 0 ? 'png' : false, ...(name ? { label: name } : {}) }).finally(() => {
      scoring--;
      lease.release();
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new ServeError(503, 'ERR_TIMEOUT', `scoring took over ${L.scoreTimeoutMs} ms; retry later or send a smaller image`)), L.scoreTimeoutMs);
    });
    const r = await Promise.race([work, timeout]).finally(() => clearTimeout(timer));
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const borderline = r.normalizedScore !== null && Math.abs(r.normalizedScore - 0.5) <= band;
    const v = verdicts.add({
      score: r.score, normalizedScore: r.normalizedScore, isAnomaly: r.isAnomaly, borderline, threshold,
      model, version: entry.version, time: new Date().toISOString(), tag: tag ?? null, name: name ?? null,
    }, image, r.heatmap ?? null);
    metrics.scoreSeconds.observe({ model }, seconds);
    metrics.verdicts.inc({ model, result: r.isAnomaly === null ? 'uncalibrated' : r.isAnomaly ? 'anomaly' : 'ok', borderline: String(borderline) });
    req.log.info({ model, version: entry.version, verdict: v.id, score: r.score, isAnomaly: r.isAnomaly, ms: Math.round(seconds * 1000) }, 'scored');
    return reply.send({ ...v, modelVersion: r.modelVersion, width: r.width, height: r.height });
  });

  app.get('/verdicts', {
    schema: {
      querystring: {
        type: 'object', additionalProperties: false,
        properties: { filter: { type: 'string', enum: ['anomalies', 'borderline', 'all'] }, tag: { type: 'string', maxLength: 64 }, model: MODEL_ID, limit: { type: 'integer', minimum: 1, maximum: 1000 } },
      },
    },
  }, async (req: FastifyRequest<{ Querystring: { filter?: VerdictFilter; tag?: string; model?: string; limit?: number } }>) => ({ verdicts: verdicts.list(req.query) }));

  const verdictOf = (id: string) => {
    const v = verdicts.get(id);
    if (!v) throw new ServeError(404, 'ERR_VERDICT_NOT_FOUND', `no recent verdict '${id}' (only the newest ${L.recentVerdicts} are kept)`);
    return v;
  };
  for (const kind of ['image', 'heatmap'] as const) {
    app.get(`/verdicts/:id/${kind}`, { schema: { params: ID_PARAMS } }, async (req: FastifyRequest<{ Params: { id: string } }>, reply) => {
      const bytes = verdictOf(req.params.id)[kind];
      if (!bytes) throw new ServeError(404, 'ERR_IMAGE_GONE', `the ${kind} of this verdict is no longer kept (only the newest ${L.recentImages})`);
      return reply.type(kind === 'heatmap' ? 'image/png' : imageType(bytes)).header('cache-control', 'private, max-age=3600').send(bytes);
    });
  }

  app.post('/verdicts/:id/label', {
    schema: { params: ID_PARAMS, body: { type: 'object', properties: { label: { type: 'string', enum: ['good', 'defect'] } }, required: ['label'], additionalProperties: false } },
  }, async (req: FastifyRequest<{ Params: { id: string }; Body: { label: Label } }>) => {
    verdictOf(req.params.id);
    return verdicts.label(req.params.id, req.body.label);
  });

  app.get('/models', async () => {
    const models = await opts.store.list();
    const loaded = new Map(pool.loaded.map((l) => [l.id, l.version]));
    return {
      models: models.map((m) => ({
        id: m.id, version: m.current.version, kind: m.current.kind, published: m.current.published, versions: m.versions.length,
        loadedVersion: loaded.get(m.id) ?? null, goodLabelled: verdicts.goodImages(m.id).length,
      })),
    };
  });

  app.get('/models/:id/calibration', { schema: { params: ID_PARAMS } }, async (req: FastifyRequest<{ Params: { id: string } }>) => {
    const lease = await pool.acquire(req.params.id);
    try {
      const c = lease.model.info.calibration;
      return {
        model: req.params.id, version: lease.entry.version, borderlineBand: band,
        calibration: c && { method: c.method, images: c.images, threshold: c.threshold, falseAlarmRate: c.falseAlarmRate, low: c.low, scoreMedian: c.scoreMedian, warnings: c.warnings },
        // The nominal scores the threshold was set from (leave-one-out evidence), when the model kept them.
        nominalScores: c?.evidence?.map((e) => e.score) ?? [],
        labelled: verdicts.labelled(req.params.id),
      };
    } finally {
      lease.release();
    }
  });

  app.post('/models/:id/update', { schema: { params: ID_PARAMS } }, async (req: FastifyRequest<{ Params: { id: string } }>, reply) =>
    reply.code(202).send(await updates.start(req.params.id)));
  app.get('/updates/:id', { schema: { params: ID_PARAMS } }, async (req: FastifyRequest<{ Params: { id: string } }>) => {
    const job = updates.get(req.params.id);
    if (!job) throw new ServeError(404, 'ERR_UPDATE_NOT_FOUND', `no update job '${req.params.id}'`);
    return job;
  });

  await registerReview(app, open);
};

/** The image of a score request: the raw body, or the one file of a multipart form. */
async function imageOf(req: FastifyRequest): Promise<Buffer> {
  if (req.isMultipart()) {
    const file = await req.file();
    if (!file) throw new ServeError(400, 'ERR_INVALID_IMAGE', 'the multipart form holds no file: send the image as its one file field');
    return file.toBuffer();
  }
  if (!Buffer.isBuffer(req.body) || req.body.length === 0)
    throw new ServeError(415, 'ERR_CONTENT_TYPE', 'POST /score takes the image as the body (Content-Type image/png, image/jpeg, ... or application/octet-stream) or as multipart/form-data');
  return req.body;
}

function imageType(b: Buffer): string {
  if (b[0] === 0x89 && b[1] === 0x50) return 'image/png';
  if (b[0] === 0xff && b[1] === 0xd8) return 'image/jpeg';
  if (b[0] === 0x42 && b[1] === 0x4d) return 'image/bmp';
  return 'application/octet-stream';
}
