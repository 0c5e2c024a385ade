// examples/embed-fastify (the plugin registered under /inspect in an app with its own routes) over
// real HTTP on 127.0.0.1: the app's routes and the plugin's side by side, the review page under the
// prefix and confined to its own files, a burst of concurrent scores with the sequential results,
// slow uploads that never hold a scoring slot and are cut (408), bounded uploads in flight, and a
// service without a token serving loopback clients only (the hardening of the old example server).
import { readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { SHARED_ABSENT, hasShared, repoRoot } from './support/data.js';
import { TOKEN, auth, errorOf, plateImages, plateModel, storeWith } from './support/serve.js';

if (!hasShared) console.warn(`[serve_embed] ${SHARED_ABSENT}`);
type Example = { createApp(o: { storeDir: string; token: string | null; logger?: boolean; limits?: object; requestTimeoutMs?: number }): Promise<FastifyInstance> };
const example = path.join(repoRoot, 'examples/embed-fastify/server.mjs');

/** Opens a /inspect/score upload that announces 100000 bytes, sends 10 and then one more every 200 ms; `stop()` hangs up. */
function slowUpload(port: number): { stop: () => void; answer: Promise<string> } {
  let got = '';
  let timer: NodeJS.Timeout | undefined;
  const socket = net.connect(port, '127.0.0.1', () => {
    socket.write(`POST /inspect/score?model=plate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n0123456789`);
    timer = setInterval(() => socket.write('x'), 200);
  });
  socket.on('data', (d) => (got += d.toString('latin1')));
  socket.on('error', () => undefined);
  const answer = new Promise<string>((resolve) => socket.on('close', () => {
    clearInterval(timer);
    resolve(got);
  }));
  return { stop: () => (clearInterval(timer), socket.destroy()), answer };
}

describe.skipIf(!hasShared)('the plugin in an existing fastify app (examples/embed-fastify)', () => {
  let storeDir = '';
  const started: FastifyInstance[] = [];
  const images = plateImages('test/defect', 6).map((f) => readFileSync(f));

  async function start(options: { token?: string | null; limits?: object; requestTimeoutMs?: number } = {}, host = '127.0.0.1') {
    const { createApp } = (await import(example)) as Example;
    const app = await createApp({ storeDir, token: TOKEN, logger: false, ...options });
    started.push(app);
    const address = await app.listen({ port: 0, host });
    const port = Number(new URL(address).port);
    return { app, base: `http://127.0.0.1:${port}`, port };
  }
  const score = (base: string, image: Buffer, headers: Record<string, string> = auth) =>
    fetch(`${base}/inspect/score?model=plate`, { method: 'POST', body: new Uint8Array(image), headers: { 'content-type': 'image/png', ...headers } });

  beforeAll(async () => {
    ({ dir: storeDir } = await storeWith('serve-embed', { plate: await plateModel(8) }));
  });
  afterAll(async () => {
    for (const app of started) await app.close();
  });

  it("keeps the app's own routes beside the plugin's, under its prefix, with the review page confined to its files", async () => {
    const { base } = await start();
    expect(await (await fetch(`${base}/line/status`)).json()).toEqual({ line: 'press-3', running: true }); // the app's route: no token
    expect(await errorOf(await score(base, images[0], {}))).toEqual([401, 'ERR_UNAUTHORIZED']);
    expect((await score(base, images[0])).status).toBe(200);
    expect((await fetch(`${base}/inspect/health/ready`)).status).toBe(200);
    const page = await fetch(`${base}/inspect/review/`);
    expect([page.status, page.headers.get('content-type')]).toEqual([200, 'text/html; charset=utf-8']);
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(await page.text()).toContain('<script type="module" src="app.js">');
    expect((await fetch(`${base}/inspect/review/app.js`)).headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    const home = await fetch(`${base}/inspect/`, { redirect: 'manual' });
    expect([home.status, home.headers.get('location')]).toEqual([302, '/inspect/review/']);
    for (const p of ['review/plugin.js', 'review/..%2Fplugin.ts', 'review/%2e%2e%2f%2e%2e%2fpackage.json', 'review/../../package.json', 'review/index.html%00.js'])
      expect((await fetch(`${base}/inspect/${p}`)).status, p).toBeGreaterThanOrEqual(400);
    // Outside the prefix, the app's own 404 (the plugin's error shape stays inside it).
    expect((await fetch(`${base}/score?model=plate`, { method: 'POST', body: images[0], headers: { 'content-type': 'image/png', ...auth } })).status).toBe(404);
  });

  it('serves a burst of 18 concurrent scores with the sequential results', async () => {
    const { base } = await start();
    const sequential: number[] = [];
    for (const img of images) sequential.push(((await (await score(base, img)).json()) as { score: number }).score);
    const burst = await Promise.all(Array.from({ length: 18 }, (_, i) => score(base, images[i % images.length]).then((r) => r.json() as Promise<{ score: number }>)));
    expect(burst.map((b) => b.score)).toEqual(Array.from({ length: 18 }, (_, i) => sequential[i % images.length]));
  });

  it('scores promptly while slow uploads dribble in, bounds the uploads in flight, and cuts slow ones (408)', async () => {
    const { base, port } = await start({ limits: { maxConcurrentScores: 2, maxBodiesInFlight: 4 }, requestTimeoutMs: 4000 });
    const uploads = Array.from({ length: 3 }, () => slowUpload(port)); // more than the scoring slots
    try {
      await new Promise((r) => setTimeout(r, 300));
      const t = Date.now();
      expect((await score(base, images[0])).status).toBe(200);
      expect(Date.now() - t).toBeLessThan(3000);
      uploads.push(slowUpload(port)); // fills the four upload places: a fifth is refused at once
      await new Promise((r) => setTimeout(r, 300));
      expect(await errorOf(await score(base, images[0]))).toEqual([503, 'ERR_BUSY']);
      // The request timeout cuts the dribbling uploads, and their places come back.
      const answers = await Promise.all(uploads.map((u) => u.answer));
      for (const a of answers) expect(a).toMatch(/^HTTP\/1\.1 408/);
      expect((await score(base, images[0])).status).toBe(200);
    } finally {
      for (const u of uploads) u.stop();
    }
  });

  it('runs without a token only when asked to, and then for loopback clients only', async () => {
    const { createApp } = (await import(example)) as Example;
    await expect(createApp({ storeDir, token: null, logger: false })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    const { default: Fastify } = await import('fastify');
    const { reconpatchPlugin, DirectoryModelStore } = await import('../lib/serve/index.js');
    const app = Fastify();
    started.push(app);
    await app.register(reconpatchPlugin, { store: new DirectoryModelStore(storeDir), token: null, allowNoTokenOnLoopback: true, defaultMetrics: false });
    const port = Number(new URL(await app.listen({ port: 0, host: '0.0.0.0' })).port);
    expect((await fetch(`http://127.0.0.1:${port}/score?model=plate`, { method: 'POST', body: images[0], headers: { 'content-type': 'image/png' } })).status).toBe(200);
    const other = Object.values(os.networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal);
    if (!other) console.warn('[serve_embed] no non-loopback IPv4 interface here: the remote-client case is not exercised');
    else {
      const r = await fetch(`http://${other.address}:${port}/score?model=plate`, { method: 'POST', body: images[0], headers: { 'content-type': 'image/png' } });
      expect(await errorOf(r)).toEqual([403, 'ERR_FORBIDDEN']);
    }
  });
});
