// examples/inspection-server over real HTTP on 127.0.0.1: fit, score, every bad request, a
// concurrent burst, reload from disk, and the server staying up throughout.
import { readFileSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { repoRoot, syntheticDataset, tempDir } from './support/data.js';

type ServerModule = { createServer(o: { modelPath: string; backbone?: string; engineOptions?: object }): Promise<Server> };
const serverModule = path.join(repoRoot, 'examples/inspection-server/server.mjs');
const engineOptions = { resize: null, crop: null, coreset: { ratio: 0.25 } };

async function start(modelPath: string): Promise<{ server: Server; base: string }> {
  const { createServer } = (await import(serverModule)) as ServerModule;
  const server = await createServer({ modelPath, engineOptions });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

describe('inspection server example', () => {
  const dir = tempDir('server');
  const modelPath = path.join(dir, 'model.rcp');
  let server: Server;
  let base: string;
  let data: Awaited<ReturnType<typeof syntheticDataset>>;

  beforeAll(async () => {
    data = await syntheticDataset();
    ({ server, base } = await start(modelPath));
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  const post = (route: string, body: BodyInit, type: string) => fetch(`${base}${route}`, { method: 'POST', body, headers: { 'content-type': type } });
  const png = (i: number) => readFileSync(data.test[i].path);

  it('refuses to score before a fit, then fits and scores', async () => {
    let r = await post('/score', png(0), 'image/png');
    expect(r.status).toBe(409);
    expect((await r.json()).error.code).toBe('ERR_NOT_FITTED');
    r = await post('/fit', JSON.stringify({ dir: path.join(data.root, data.category, 'train/good') }), 'application/json');
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ images: 24, calibrationImages: 24 }); // all in the bank, all scored leave-one-out
    r = await post('/score?heatmap=png', png(0), 'image/png');
    expect(r.status).toBe(200);
    const body = await r.json();
    expect(body).toMatchObject({ width: 96, height: 96 });
    expect(typeof body.isAnomaly).toBe('boolean');
    expect((await sharp(Buffer.from(body.heatmap, 'base64')).metadata()).format).toBe('png');
  });

  it('answers every bad request with a 4xx and a code, and stays up', async () => {
    const cases: Array<[Promise<Response>, number, string]> = [
      [post('/score', Buffer.from('definitely not an image'), 'image/png'), 400, 'ERR_INVALID_IMAGE'],
      [post('/score', png(0).subarray(0, 200), 'image/png'), 400, 'ERR_INVALID_IMAGE'],
      [post('/score', png(0), 'text/plain'), 415, 'ERR_CONTENT_TYPE'],
      [post('/fit', '{not json', 'application/json'), 400, 'ERR_BAD_JSON'],
      [post('/fit', JSON.stringify({ folder: 'x' }), 'application/json'), 400, 'ERR_BAD_REQUEST'],
      [post('/fit', JSON.stringify({ dir: path.join(dir, 'missing') }), 'application/json'), 400, 'ERR_IO'],
      [post('/fit', 'dir=x', 'application/x-www-form-urlencoded'), 415, 'ERR_CONTENT_TYPE'],
      [fetch(`${base}/nope`), 404, 'ERR_NOT_FOUND'],
      [post('/score', Buffer.alloc(33 * 1024 * 1024), 'image/png'), 413, 'ERR_BODY_TOO_LARGE'],
    ];
    // A decompression bomb: a tiny PNG header claiming 10000 x 10000 pixels.
    const bomb = await sharp({ create: { width: 10000, height: 10000, channels: 3, background: '#000' } }).png({ compressionLevel: 9 }).toBuffer();
    cases.push([post('/score', bomb, 'image/png'), 413, 'ERR_IMAGE_TOO_LARGE']);
    for (const [request, status, code] of cases) {
      const r = await request;
      expect([r.status, (await r.json()).error.code]).toEqual([status, code]);
    }
    const health = await (await fetch(`${base}/health`)).json();
    expect(health).toMatchObject({ ok: true, fitted: true });
  });

  it('serves a burst of 24 concurrent requests with the sequential results', async () => {
    const images = Array.from({ length: 24 }, (_, i) => png(i % data.test.length));
    const sequential: number[] = [];
    for (const img of images.slice(0, data.test.length)) sequential.push((await (await post('/score', img, 'image/png')).json()).score);
    const burst = await Promise.all(images.map((img) => post('/score', img, 'image/png').then((r) => r.json())));
    expect(burst.map((b) => b.score)).toEqual(images.map((_, i) => sequential[i % data.test.length]));
  });

  it('reloads the saved model at start', async () => {
    const again = await start(modelPath);
    try {
      const r = await (await fetch(`${again.base}/health`)).json();
      expect(r.fitted).toBe(true);
      const a = await (await post('/score', png(1), 'image/png')).json();
      const b = await (await fetch(`${again.base}/score`, { method: 'POST', body: png(1), headers: { 'content-type': 'image/png' } })).json();
      expect(b.score).toBe(a.score);
    } finally {
      await new Promise((r) => again.server.close(r));
    }
  });
});
