// A small HTTP inspection service on reconpatch (node:http, no framework).
//
//   GET  /health                      -> { ok, fitted, model }
//   POST /fit    {"dir": "<folder>"}  -> fits on the images in a folder, saves the model
//   POST /score  <image bytes>        -> { score, normalizedScore, isAnomaly, width, height }
//        /score?heatmap=png           -> the same, plus "heatmap": base64 PNG overlay
//
// The model is saved to MODEL_PATH after each fit and loaded from there at start. Bad requests get
// a 4xx JSON body { error: { code, message } } and never take the service down.
//   node examples/inspection-server/server.mjs   (PORT, HOST, MODEL_PATH, BACKBONE in the environment)
import { existsSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import sharp from 'sharp';

// Only the package's public exports (a copy of this file elsewhere imports the installed package).
import { Engine, ReconpatchError } from 'reconpatch';
import { listImages } from 'reconpatch/eval';

const MAX_BODY_BYTES = 32 * 1024 * 1024;
const MAX_PIXELS = 40_000_000; // decompression bombs: checked from the header before decoding

class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size <= MAX_BODY_BYTES) chunks.push(c);
      else if (chunks.length) {
        // Answer 413 at once; the rest of the upload is drained and dropped.
        chunks.length = 0;
        reject(new HttpError(413, 'ERR_BODY_TOO_LARGE', `request body over ${MAX_BODY_BYTES} bytes`));
      }
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function send(res, status, body) {
  const text = JSON.stringify(body);
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...(status === 413 ? { connection: 'close' } : {}) });
  res.end(text);
}

// Engine errors caused by the request are 4xx; the rest are 500.
const CLIENT_ERRORS = { ERR_INVALID_IMAGE: 400, ERR_INVALID_OPTION: 400, ERR_IO: 400, ERR_EMPTY_TRAINING_SET: 400, ERR_NOT_FITTED: 409 };

export async function createServer({ modelPath, backbone = 'random_cnn', engineOptions = {} }) {
  let engine = existsSync(modelPath) ? await Engine.load(modelPath) : null;
  let fitting = false;

  async function handle(req, res) {
    const url = new URL(req.url, 'http://localhost');
    if (req.method === 'GET' && url.pathname === '/health') {
      return send(res, 200, { ok: true, fitted: Boolean(engine?.info.fitted), model: modelPath });
    }
    if (req.method === 'POST' && url.pathname === '/fit') {
      if (!(req.headers['content-type'] ?? '').startsWith('application/json'))
        throw new HttpError(415, 'ERR_CONTENT_TYPE', 'POST /fit takes application/json: {"dir": "<folder of good images>"}');
      let body;
      try {
        body = JSON.parse((await readBody(req)).toString('utf8'));
      } catch {
        throw new HttpError(400, 'ERR_BAD_JSON', 'POST /fit body is not valid JSON');
      }
      if (typeof body?.dir !== 'string') throw new HttpError(400, 'ERR_BAD_REQUEST', 'POST /fit needs {"dir": "<folder>"}');
      if (fitting) throw new HttpError(409, 'ERR_BUSY', 'a fit is already running');
      fitting = true;
      try {
        const next = await Engine.create({ backbone, ...engineOptions });
        const summary = await next.fit(await listImages(body.dir));
        await next.save(modelPath); // written atomically; the old model stays valid until then
        engine = next;
        return send(res, 200, { ...summary, model: modelPath });
      } finally {
        fitting = false;
      }
    }
    if (req.method === 'POST' && url.pathname === '/score') {
      const type = req.headers['content-type'] ?? '';
      if (!type.startsWith('image/') && type !== 'application/octet-stream')
        throw new HttpError(415, 'ERR_CONTENT_TYPE', 'POST /score takes an image body (image/png, image/jpeg, ...)');
      const bytes = await readBody(req);
      if (!engine) throw new HttpError(409, 'ERR_NOT_FITTED', 'no model yet: POST /fit first');
      let meta;
      try {
        meta = await sharp(bytes).metadata();
      } catch {
        throw new HttpError(400, 'ERR_INVALID_IMAGE', 'the body is not a decodable image');
      }
      if ((meta.width ?? 0) * (meta.height ?? 0) > MAX_PIXELS)
        throw new HttpError(413, 'ERR_IMAGE_TOO_LARGE', `image has ${meta.width}x${meta.height} pixels; the limit is ${MAX_PIXELS}`);
      const heatmap = url.searchParams.get('heatmap') === 'png' ? 'png' : false;
      const r = await engine.score(bytes, { heatmap });
      return send(res, 200, {
        score: r.score, normalizedScore: r.normalizedScore, isAnomaly: r.isAnomaly, width: r.width, height: r.height,
        ...(r.heatmap ? { heatmap: r.heatmap.toString('base64') } : {}),
      });
    }
    throw new HttpError(404, 'ERR_NOT_FOUND', `no route ${req.method} ${url.pathname}`);
  }

  return http.createServer((req, res) => {
    handle(req, res).catch((err) => {
      if (err instanceof HttpError) return send(res, err.status, { error: { code: err.code, message: err.message } });
      if (err instanceof ReconpatchError && CLIENT_ERRORS[err.code])
        return send(res, CLIENT_ERRORS[err.code], { error: { code: err.code, message: err.message } });
      console.error(err);
      return send(res, 500, { error: { code: err?.code ?? 'ERR_INTERNAL', message: String(err?.message ?? err) } });
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const server = await createServer({
    modelPath: process.env.MODEL_PATH ?? path.resolve('model.rcp'),
    backbone: process.env.BACKBONE ?? 'random_cnn',
  });
  const port = Number(process.env.PORT ?? 8080);
  server.listen(port, process.env.HOST ?? '127.0.0.1', () => console.log(`inspection server on http://${process.env.HOST ?? '127.0.0.1'}:${port}`));
}
