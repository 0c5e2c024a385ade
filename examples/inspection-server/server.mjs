// A small HTTP inspection service on reconpatch (node:http, no framework).
//
//   GET  /health                      -> { ok, fitted, fitting }                  (no token needed)
//   POST /fit    {"dir": "<subdir>"}  -> fits on the images in a subdirectory of the training root, saves the model
//   POST /score  <image bytes>        -> { score, normalizedScore, isAnomaly, width, height }
//        /score?heatmap=png           -> the same, plus "heatmap": base64 PNG overlay
//
// Every route but /health needs `Authorization: Bearer <token>`. Running without a token must be
// asked for (`token: null, allowNoAuthOnLoopback: true`) and then serves loopback clients only.
// /fit reads only regular files (no symlinks) directly inside a subdirectory of `trainRoot`, at
// most `maxTrainImages` of at most `maxTrainImageBytes` each; a fit is cancelled when its client
// disconnects. Bodies over their limit get 413, slow headers or bodies are cut (408), wrong
// methods get 405. An image is received whole before it takes a scoring slot, so slow uploads
// cannot hold the slots; at most `maxBodiesInFlight` are received at once (then 503). Errors are { error: { code, message } } and never name server paths.
// The model is saved to MODEL_PATH after each fit and loaded from there at start.
//   TOKEN=... TRAIN_ROOT=/data/good MODEL_PATH=part.rcp node examples/inspection-server/server.mjs
//   (also PORT, HOST, BACKBONE; NO_AUTH=1 instead of TOKEN, on a loopback HOST only)
import { createHash, timingSafeEqual } from 'node:crypto';
import { constants, existsSync } from 'node:fs';
import { open, readdir, realpath, stat } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// Only the package's public exports (a copy of this file elsewhere imports the installed package).
import { Engine, ReconpatchError } from 'reconpatch';

export const DEFAULT_LIMITS = Object.freeze({
  maxImageBytes: 32 * 1024 * 1024, // POST /score body
  maxFitBodyBytes: 4096, // POST /fit body (a small JSON object)
  maxPixels: 40_000_000, // per image, checked by the engine from the header before decoding
  maxTrainImages: 2000,
  maxTrainImageBytes: 32 * 1024 * 1024,
  maxConcurrentScores: 32, // images being scored at once; a slot is taken only once the whole body has arrived
  maxBodiesInFlight: 64, // /score bodies being received at once (at most this x maxImageBytes buffered); slow ones are cut by requestTimeoutMs
  headersTimeoutMs: 10_000, // the whole request head must arrive within this
  requestTimeoutMs: 60_000, // the whole request (head and body) must arrive within this
  connectionsCheckingIntervalMs: 1_000, // how often node checks the two timeouts above
});

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp']);

class HttpError extends Error {
  constructor(status, code, message, headers = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

const isLoopback = (address) => /^(127\.|::1$|::ffff:127\.)/.test(address ?? '');

function readBody(req, limit) {
  const declared = Number(req.headers['content-length']);
  if (declared > limit) return Promise.reject(new HttpError(413, 'ERR_BODY_TOO_LARGE', `request body over ${limit} bytes`));
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      if (size > limit) return; // already refused: the rest is drained and dropped
      size += c.length;
      if (size <= limit) chunks.push(c);
      else {
        chunks.length = 0; // the connection closes after the 413
        reject(new HttpError(413, 'ERR_BODY_TOO_LARGE', `request body over ${limit} bytes`));
      }
    });
    const cutOff = () => reject(new HttpError(400, 'ERR_BODY_ABORTED', 'the request body was cut off'));
    req.on('end', () => {
      if (size <= limit) resolve(joinInSlices(chunks, size));
    });
    req.on('error', cutOff);
    // The client gone, or the request timeout cutting a slow body: settle, so the upload's count is given back.
    req.on('close', () => {
      if (!req.complete) cutOff();
    });
  });
}

// Buffer.concat of a 32 MB body is one copy of 30-100 ms that stalls every other request: the
// chunks are joined a few megabytes per turn of the event loop instead.
async function joinInSlices(chunks, size) {
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  let sinceYield = 0;
  for (const c of chunks) {
    c.copy(out, at);
    at += c.length;
    sinceYield += c.length;
    if (sinceYield >= 2 * 1024 * 1024) {
      sinceYield = 0;
      await new Promise((r) => setImmediate(r));
    }
  }
  return out;
}

function send(res, status, body, headers = {}) {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  const close = status === 413 || status === 408 ? { connection: 'close' } : {};
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...close, ...headers });
  res.end(text);
}

// Constant-time comparison of the presented token with the configured one.
function tokenMatches(header, token) {
  const presented = /^Bearer (.+)$/.exec(header ?? '')?.[1] ?? '';
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(token).digest();
  return timingSafeEqual(a, b) && presented.length > 0;
}

// Engine errors caused by the request are 4xx; the rest are 500.
const CLIENT_ERRORS = { ERR_INVALID_IMAGE: 400, ERR_INVALID_OPTION: 400, ERR_EMPTY_TRAINING_SET: 400, ERR_NOT_FITTED: 409, ERR_ABORTED: 499 };

/**
 * @param {object} o
 * @param {string} o.modelPath   where the model is saved after each fit (and loaded from at start)
 * @param {string|null} o.token  the bearer token; null only with allowNoAuthOnLoopback
 * @param {string} [o.trainRoot] /fit takes subdirectories of this directory only (no trainRoot: /fit is off)
 */
export async function createServer({ modelPath, token, allowNoAuthOnLoopback = false, trainRoot, backbone = 'random_cnn', engineOptions = {}, limits = {} }) {
  const L = { ...DEFAULT_LIMITS, ...limits };
  if (token === null || token === undefined || token === '') {
    if (!allowNoAuthOnLoopback) throw new Error('createServer: a token is required (or token: null with allowNoAuthOnLoopback: true, which serves loopback clients only)');
  } else if (typeof token !== 'string' || token.length < 16) throw new Error('createServer: the token must be a string of at least 16 characters');
  const root = trainRoot === undefined ? null : await realpath(trainRoot);
  const options = { backbone, ...engineOptions, input: { maxPixels: L.maxPixels, ...engineOptions.input } };
  let engine = existsSync(modelPath) ? await Engine.load(modelPath, { input: options.input }) : null;
  let fitting = false;
  let scoring = 0;
  let receiving = 0;

  // `dir` -> the real path of a subdirectory of the root. One answer for every refusal, so that a
  // client learns nothing about what exists outside (or inside) the root.
  async function trainingDir(dir) {
    const refuse = () => new HttpError(400, 'ERR_BAD_DIR', '"dir" must name an existing subdirectory of the training root, as a relative path');
    if (typeof dir !== 'string' || dir === '' || dir.includes('\0') || path.isAbsolute(dir)) throw refuse();
    let real;
    try {
      real = await realpath(path.join(root, dir)); // symlinks resolved: the real place is checked
    } catch {
      throw refuse();
    }
    if (!real.startsWith(root + path.sep) || !(await stat(real)).isDirectory()) throw refuse();
    return real;
  }

  // The training images: regular files with an image extension directly in `dir` (symlinks are
  // skipped), within the caps; each is read when the fit asks for it, without following links.
  async function trainingImages(dir) {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => {
      throw new HttpError(400, 'ERR_BAD_DIR', '"dir" must name an existing subdirectory of the training root, as a relative path');
    });
    const names = entries.filter((e) => e.isFile() && IMAGE_EXTENSIONS.has(path.extname(e.name).toLowerCase())).map((e) => e.name).sort();
    if (names.length === 0) throw new HttpError(400, 'ERR_EMPTY_TRAINING_SET', 'the training directory holds no images');
    if (names.length > L.maxTrainImages) throw new HttpError(400, 'ERR_TOO_MANY_IMAGES', `the training directory holds ${names.length} images; the limit is ${L.maxTrainImages}`);
    async function* read() {
      for (const name of names) yield await readTrainingImage(path.join(dir, name), name);
    }
    return read();
  }

  async function readTrainingImage(file, name) {
    const handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(() => {
      throw new HttpError(400, 'ERR_BAD_IMAGE_FILE', `'${name}' cannot be opened as a regular file`);
    });
    try {
      const s = await handle.stat();
      if (!s.isFile()) throw new HttpError(400, 'ERR_BAD_IMAGE_FILE', `'${name}' is not a regular file`);
      if (s.size > L.maxTrainImageBytes)
        throw new HttpError(400, 'ERR_IMAGE_TOO_LARGE', `'${name}' has ${s.size} bytes; the limit per training image is ${L.maxTrainImageBytes}`);
      const bytes = Buffer.alloc(s.size);
      const { bytesRead } = await handle.read(bytes, 0, s.size, 0);
      return bytes.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  }

  async function fit(req, res) {
    if (!root) throw new HttpError(403, 'ERR_FIT_DISABLED', 'this server has no training root: /fit is off');
    if (!(req.headers['content-type'] ?? '').startsWith('application/json'))
      throw new HttpError(415, 'ERR_CONTENT_TYPE', 'POST /fit takes application/json: {"dir": "<subdirectory of the training root>"}');
    const raw = await readBody(req, L.maxFitBodyBytes);
    let body;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      throw new HttpError(400, 'ERR_BAD_JSON', 'POST /fit body is not valid JSON');
    }
    if (typeof body?.dir !== 'string') throw new HttpError(400, 'ERR_BAD_REQUEST', 'POST /fit needs {"dir": "<subdirectory of the training root>"}');
    const dir = await trainingDir(body.dir);
    if (fitting) throw new HttpError(409, 'ERR_BUSY', 'a fit is already running');
    fitting = true;
    // The client going away cancels its fit: nobody is left to receive the result.
    const controller = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) controller.abort();
    };
    res.on('close', onClose);
    try {
      const images = await trainingImages(dir);
      const next = await Engine.create(options);
      const summary = await next.fit(images, { signal: controller.signal });
      await next.save(modelPath); // written atomically; the old model stays valid until then
      engine = next;
      return send(res, 200, summary);
    } finally {
      fitting = false;
      res.off('close', onClose);
    }
  }

  async function score(req, res, url) {
    const type = req.headers['content-type'] ?? '';
    if (!type.startsWith('image/') && type !== 'application/octet-stream')
      throw new HttpError(415, 'ERR_CONTENT_TYPE', 'POST /score takes an image body (image/png, image/jpeg, ...)');
    const busy = (what) => new HttpError(503, 'ERR_BUSY', `too many ${what}; retry shortly`, { 'retry-after': '1' });
    // The body first (bounded in size, in time by requestTimeoutMs, and in number): a client that
    // sends slowly holds only its own upload, never a scoring slot.
    if (receiving >= L.maxBodiesInFlight) throw busy('uploads in progress');
    receiving++;
    let bytes;
    try {
      bytes = await readBody(req, L.maxImageBytes);
    } finally {
      receiving--;
    }
    if (!engine) throw new HttpError(409, 'ERR_NOT_FITTED', 'no model yet: POST /fit first');
    if (scoring >= L.maxConcurrentScores) throw busy('images being scored');
    scoring++;
    try {
      const heatmap = url.searchParams.get('heatmap') === 'png' ? 'png' : false;
      const r = await engine.score(bytes, { heatmap });
      return send(res, 200, {
        score: r.score, normalizedScore: r.normalizedScore, isAnomaly: r.isAnomaly, width: r.width, height: r.height,
        ...(r.heatmap ? { heatmap: r.heatmap.toString('base64') } : {}),
      });
    } finally {
      scoring--;
    }
  }

  const routes = {
    '/health': { GET: (req, res) => send(res, 200, { ok: true, fitted: Boolean(engine?.info.fitted), fitting }), open: true },
    '/fit': { POST: fit },
    '/score': { POST: score },
  };

  async function handle(req, res) {
    const url = new URL(req.url, 'http://localhost');
    const route = routes[url.pathname];
    if (!route) throw new HttpError(404, 'ERR_NOT_FOUND', `no route ${url.pathname}`);
    const methods = Object.keys(route).filter((k) => k !== 'open');
    if (!methods.includes(req.method)) throw new HttpError(405, 'ERR_METHOD', `${url.pathname} takes ${methods.join(', ')}`, { allow: methods.join(', ') });
    if (!route.open) {
      if (token) {
        if (!tokenMatches(req.headers.authorization, token))
          throw new HttpError(401, 'ERR_UNAUTHORIZED', 'send Authorization: Bearer <token>', { 'www-authenticate': 'Bearer' });
      } else if (!isLoopback(req.socket.remoteAddress)) {
        throw new HttpError(403, 'ERR_FORBIDDEN', 'this server runs without a token and serves loopback clients only');
      }
    }
    return route[req.method](req, res, url);
  }

  const server = http.createServer(
    { headersTimeout: L.headersTimeoutMs, requestTimeout: L.requestTimeoutMs, connectionsCheckingInterval: L.connectionsCheckingIntervalMs },
    (req, res) => {
      handle(req, res).catch((err) => {
        // A refusal while reading the training images reaches us as the fit's ERR_INPUT.
        if (err instanceof ReconpatchError && err.code === 'ERR_INPUT' && err.cause instanceof HttpError) err = err.cause;
        if (err instanceof HttpError) return send(res, err.status, { error: { code: err.code, message: err.message } }, err.headers);
        if (err instanceof ReconpatchError && CLIENT_ERRORS[err.code]) {
          // Engine messages may name server paths: the training root is not the client's business.
          const message = root ? err.message.split(root + path.sep).join('') : err.message;
          return send(res, CLIENT_ERRORS[err.code], { error: { code: err.code, message } });
        }
        console.error(err);
        return send(res, 500, { error: { code: 'ERR_INTERNAL', message: 'internal error (logged on the server)' } });
      });
    },
  );
  return server;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const host = process.env.HOST ?? '127.0.0.1';
  const noAuth = process.env.NO_AUTH === '1';
  if (noAuth && !isLoopback(host) && host !== 'localhost') {
    console.error('NO_AUTH=1 is allowed on a loopback HOST only; set TOKEN to serve other hosts');
    process.exit(2);
  }
  const server = await createServer({
    modelPath: process.env.MODEL_PATH ?? path.resolve('model.rcp'),
    token: noAuth ? null : process.env.TOKEN,
    allowNoAuthOnLoopback: noAuth,
    trainRoot: process.env.TRAIN_ROOT,
    backbone: process.env.BACKBONE ?? 'random_cnn',
  });
  const port = Number(process.env.PORT ?? 8080);
  server.listen(port, host, () => console.log(`inspection server on http://${host}:${port}`));
}
