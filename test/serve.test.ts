// The service (lib/serve) over real HTTP on 127.0.0.1, on a real model store holding a model fitted
// on metal_plate: auth, typed errors (unknown model, bad image, oversized body), score parity with
// a local Engine, raw and multipart bodies, metrics, readiness, verdicts, labels, an update that
// publishes a new version and hot reload; then `reconpatch serve` as a process drained by SIGTERM.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/engine/engine.js';
import { buildServer } from '../lib/serve/server.js';
import { SHARED_ABSENT, hasShared, repoRoot, tempDir } from './support/data.js';
import { TOKEN, auth, errorOf, plateImages, plateModel, storeWith } from './support/serve.js';

if (!hasShared) console.warn(`[serve] ${SHARED_ABSENT}`);

interface VerdictBody { id: string; score: number; normalizedScore: number; isAnomaly: boolean; borderline: boolean; model: string; version: string; modelVersion: string; time: string; label: string | null }

describe.skipIf(!hasShared)('reconpatch service (in process)', () => {
  let app: FastifyInstance;
  let base = '';
  let modelBytes: Buffer;
  let storeDir = '';
  let store: Awaited<ReturnType<typeof storeWith>>['store'];
  const good = plateImages('test/good', 3);
  const defect = plateImages('test/defect', 2);

  beforeAll(async () => {
    modelBytes = await plateModel();
    ({ dir: storeDir, store } = await storeWith('serve', { plate: modelBytes }));
    app = await buildServer({ store, token: TOKEN, logger: false, defaultMetrics: false, limits: { maxImageBytes: 2 * 1024 * 1024 }, hidePaths: [storeDir] });
    base = await app.listen({ port: 0, host: '127.0.0.1' });
  });
  afterAll(async () => app?.close());

  const score = (file: string, query = 'model=plate', headers: Record<string, string> = auth) =>
    fetch(`${base}/score?${query}`, { method: 'POST', body: readFileSync(file), headers: { 'content-type': 'image/png', ...headers } });

  it('refuses requests without the token (401) but answers the health probes', async () => {
    expect(await errorOf(await score(good[0], 'model=plate', {}))).toEqual([401, 'ERR_UNAUTHORIZED']);
    expect(await errorOf(await score(good[0], 'model=plate', { authorization: `Bearer ${TOKEN}x` }))).toEqual([401, 'ERR_UNAUTHORIZED']);
    expect(await errorOf(await fetch(`${base}/verdicts`))).toEqual([401, 'ERR_UNAUTHORIZED']);
    expect(await errorOf(await fetch(`${base}/metrics`))).toEqual([401, 'ERR_UNAUTHORIZED']);
    expect((await fetch(`${base}/health/live`)).status).toBe(200);
    const ready = await fetch(`${base}/health/ready`);
    expect(ready.status).toBe(200);
    expect(((await ready.json()) as { models: { id: string }[] }).models.map((m) => m.id)).toEqual(['plate']);
  });

  it('answers typed errors: unknown model 404, bad image 400, oversized body 413, bad query 400, none naming server paths', async () => {
    const unknown = await score(good[0], 'model=nope');
    const body = (await unknown.json()) as { error: { code: string; message: string } };
    expect([unknown.status, body.error.code]).toEqual([404, 'ERR_MODEL_NOT_FOUND']);
    expect(body.error.message).not.toContain(storeDir);
    const bad = await fetch(`${base}/score?model=plate`, { method: 'POST', body: Buffer.from('not an image at all, just text'), headers: { 'content-type': 'image/png', ...auth } });
    expect(await errorOf(bad)).toEqual([400, 'ERR_INVALID_IMAGE']);
    const big = await fetch(`${base}/score?model=plate`, { method: 'POST', body: Buffer.alloc(3 * 1024 * 1024), headers: { 'content-type': 'image/png', ...auth } });
    expect(await errorOf(big)).toEqual([413, 'ERR_BODY_TOO_LARGE']);
    expect(await errorOf(await score(good[0], 'model=../etc'))).toEqual([400, 'ERR_BAD_REQUEST']);
    expect(await errorOf(await score(good[0], ''))).toEqual([400, 'ERR_BAD_REQUEST']);
    const json = await fetch(`${base}/score?model=plate`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json', ...auth } });
    expect(await errorOf(json)).toEqual([415, 'ERR_CONTENT_TYPE']);
    expect(await errorOf(await fetch(`${base}/nowhere`, { headers: auth }))).toEqual([404, 'ERR_NOT_FOUND']);
  });

  it('scores as a local Engine does, from a raw body and from multipart', async () => {
    const local = await Engine.loadBytes(modelBytes);
    try {
      for (const file of [good[0], defect[0]]) {
        const r = await score(file, `model=plate&tag=line1&name=${path.basename(file)}`);
        expect(r.status).toBe(200);
        const v = (await r.json()) as VerdictBody & { name: string | null };
        expect(v.name).toBe(path.basename(file)); // kept with the verdict, and written in its heatmap's banner
        const want = await local.score(file);
        expect(v.score).toBeCloseTo(want.score, 4);
        expect(v.normalizedScore).toBeCloseTo(want.normalizedScore!, 4);
        expect(v.isAnomaly).toBe(want.isAnomaly);
        expect(v.model).toBe('plate');
        expect(v.version).toBe((await store.current('plate')).version);
        expect(v.modelVersion).toBe(want.modelVersion);
        expect(v.id).toMatch(/^[0-9a-f-]{36}$/);
      }
      const form = new FormData();
      form.append('image', new Blob([readFileSync(defect[1])], { type: 'image/png' }), 'part.png');
      const m = await fetch(`${base}/score?model=plate`, { method: 'POST', body: form, headers: auth });
      expect(m.status).toBe(200);
      expect(((await m.json()) as VerdictBody).score).toBeCloseTo((await local.score(defect[1])).score, 4);
    } finally {
      await local.dispose();
    }
  });

  it('exposes the counters in /metrics after scoring', async () => {
    const text = await (await fetch(`${base}/metrics`, { headers: auth })).text();
    const count = (re: RegExp) => [...text.matchAll(re)].reduce((s, m) => s + Number(m[1]), 0);
    expect(count(/^reconpatch_verdicts_total\{model="plate",[^}]*\} (\d+)$/gm)).toBe(3);
    expect(count(/^reconpatch_score_seconds_count\{model="plate"\} (\d+)$/gm)).toBe(3);
    expect(count(/^reconpatch_errors_total\{code="ERR_UNAUTHORIZED"\} (\d+)$/gm)).toBeGreaterThanOrEqual(4);
    expect(count(/^reconpatch_errors_total\{code="ERR_MODEL_NOT_FOUND"\} (\d+)$/gm)).toBe(1);
    expect(count(/^reconpatch_errors_total\{code="ERR_INVALID_IMAGE"\} (\d+)$/gm)).toBe(1);
    const version = (await store.current('plate')).version;
    expect(text).toContain(`reconpatch_model_loaded{model="plate",version="${version}"} 1`);
  });

  it('lists recent verdicts newest first with filters, serves their image and heatmap, takes labels', async () => {
    const all = ((await (await fetch(`${base}/verdicts`, { headers: auth })).json()) as { verdicts: VerdictBody[] }).verdicts;
    expect(all).toHaveLength(3);
    expect(all.map((v) => v.time)).toEqual([...all.map((v) => v.time)].sort().reverse());
    const tagged = ((await (await fetch(`${base}/verdicts?tag=line1`, { headers: auth })).json()) as { verdicts: VerdictBody[] }).verdicts;
    expect(tagged).toHaveLength(2);
    const anomalies = ((await (await fetch(`${base}/verdicts?filter=anomalies`, { headers: auth })).json()) as { verdicts: VerdictBody[] }).verdicts;
    expect(anomalies.every((v) => v.isAnomaly)).toBe(true);
    expect(await errorOf(await fetch(`${base}/verdicts?filter=odd`, { headers: auth }))).toEqual([400, 'ERR_BAD_REQUEST']);
    const heat = await fetch(`${base}/verdicts/${all[0].id}/heatmap`, { headers: auth });
    expect([heat.status, heat.headers.get('content-type')]).toEqual([200, 'image/png']);
    expect(Buffer.from(await heat.arrayBuffer()).subarray(1, 4).toString()).toBe('PNG');
    const image = await fetch(`${base}/verdicts/${all[0].id}/image`, { headers: auth });
    expect(Buffer.from(await image.arrayBuffer()).equals(readFileSync(defect[1]))).toBe(true);
    expect(await errorOf(await fetch(`${base}/verdicts/nope/image`, { headers: auth }))).toEqual([404, 'ERR_VERDICT_NOT_FOUND']);
    const label = (l: string, id = all[1].id) =>
      fetch(`${base}/verdicts/${id}/label`, { method: 'POST', body: JSON.stringify({ label: l }), headers: { 'content-type': 'application/json', ...auth } });
    expect(await errorOf(await label('maybe'))).toEqual([400, 'ERR_BAD_REQUEST']);
    expect(((await (await label('good')).json()) as VerdictBody).label).toBe('good');
  });

  it('updates the model from the verdicts labelled good: publishes a new version that the next score uses', async () => {
    const before = (await store.current('plate')).version;
    const start = await fetch(`${base}/models/plate/update`, { method: 'POST', headers: auth });
    expect(start.status).toBe(202);
    let job = (await start.json()) as { id: string; state: string; images: number; version: string | null; fromVersion: string };
    expect([job.images, job.fromVersion]).toEqual([1, before]);
    for (let i = 0; i < 300 && job.state === 'running'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      job = (await (await fetch(`${base}/updates/${job.id}`, { headers: auth })).json()) as typeof job;
    }
    expect(job.state).toBe('done');
    expect(job.version).not.toBe(before);
    expect((await store.current('plate')).version).toBe(job.version);
    const v = (await (await score(good[2])).json()) as VerdictBody;
    expect(v.version).toBe(job.version);
    const models = (await (await fetch(`${base}/models`, { headers: auth })).json()) as { models: { id: string; version: string; loadedVersion: string }[] };
    expect(models.models).toEqual([expect.objectContaining({ id: 'plate', version: job.version, loadedVersion: job.version, goodLabelled: 0 })]);
    const calib = (await (await fetch(`${base}/models/plate/calibration`, { headers: auth })).json()) as { calibration: { threshold: number }; nominalScores: number[]; labelled: unknown[] };
    expect(calib.calibration.threshold).toBeGreaterThan(0);
    expect(calib.nominalScores.length).toBeGreaterThanOrEqual(16);
    expect(calib.labelled).toHaveLength(1);
    expect(await errorOf(await fetch(`${base}/models/nope/update`, { method: 'POST', headers: auth }))).toEqual([404, 'ERR_MODEL_NOT_FOUND']);
    // The batch was learned: the verdict says by which version, and a second update has nothing to take.
    const learned = ((await (await fetch(`${base}/verdicts`, { headers: auth })).json()) as { verdicts: (VerdictBody & { learnedIn: string | null })[] }).verdicts;
    expect(learned.filter((x) => x.label === 'good').map((x) => x.learnedIn)).toEqual([job.version]);
    expect(await errorOf(await fetch(`${base}/models/plate/update`, { method: 'POST', headers: auth }))).toEqual([400, 'ERR_NO_GOOD_IMAGES']);
  });

  it('hot-reloads a version published behind its back, without a restart', async () => {
    const serving = (await store.current('plate')).version;
    const published = await store.publish(modelBytes, { id: 'plate' }); // the version before the update, made current again
    expect(published.version).not.toBe(serving);
    const v = (await (await score(good[1])).json()) as VerdictBody;
    expect(v.version).toBe(published.version);
  });

  it('swaps versions under load without failing a request: the requests in flight finish on theirs', async () => {
    const serving = (await store.current('plate')).version;
    const other = (await store.list())[0].versions.find((x) => x.version !== serving)!;
    const { bytes } = await store.read('plate', other.version);
    const first = Array.from({ length: 4 }, () => score(good[0]));
    await new Promise((r) => setTimeout(r, 30)); // the first ones arrive and start
    await store.publish(bytes, { id: 'plate' });
    const second = Array.from({ length: 4 }, () => score(good[0]));
    const answers = await Promise.all([...first, ...second]);
    expect(answers.map((r) => r.status)).toEqual(new Array(8).fill(200));
    const versions = (await Promise.all(answers.map((r) => r.json() as Promise<VerdictBody>))).map((v) => v.version);
    for (const v of versions.slice(0, 4)) expect([serving, other.version]).toContain(v);
    expect(versions.slice(4)).toEqual(new Array(4).fill(other.version));
  });

  it('refuses images over the pixel limit (400) and answers a score over its time limit 503 ERR_TIMEOUT', async () => {
    const strict = await buildServer({ store, token: TOKEN, logger: false, defaultMetrics: false, limits: { maxPixels: 100_000 } });
    const hasty = await buildServer({ store, token: TOKEN, logger: false, defaultMetrics: false, limits: { scoreTimeoutMs: 1 } });
    try {
      const post = async (app: FastifyInstance) =>
        fetch(`${await app.listen({ port: 0, host: '127.0.0.1' })}/score?model=plate`, { method: 'POST', body: readFileSync(good[0]), headers: { 'content-type': 'image/png', ...auth } });
      const big = await post(strict); // 512 x 512 = 262144 pixels
      const body = (await big.json()) as { error: { code: string; message: string } };
      expect([big.status, body.error.code]).toEqual([400, 'ERR_INVALID_IMAGE']);
      expect(body.error.message).toMatch(/pixel/i);
      expect(await errorOf(await post(hasty))).toEqual([503, 'ERR_TIMEOUT']);
    } finally {
      await strict.close();
      await hasty.close();
    }
  });

  it('is not ready with an empty store, and runs without a token only when asked (loopback clients)', async () => {
    const { store: empty } = await storeWith('serve-empty', {});
    await expect(buildServer({ store: empty, token: null, logger: false })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    await expect(buildServer({ store: empty, token: 'short', logger: false })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    const open = await buildServer({ store: empty, token: null, allowNoTokenOnLoopback: true, logger: false, defaultMetrics: false });
    try {
      const at = await open.listen({ port: 0, host: '127.0.0.1' });
      expect((await fetch(`${at}/health/live`)).status).toBe(200);
      expect((await fetch(`${at}/health/ready`)).status).toBe(503);
      expect((await fetch(`${at}/verdicts`)).status).toBe(200);
      // A model published after the start makes it ready, without a score first.
      await empty.publish(modelBytes, { id: 'late' });
      const ready = await fetch(`${at}/health/ready`);
      expect([ready.status, ((await ready.json()) as { models: { id: string }[] }).models.map((m) => m.id)]).toEqual([200, ['late']]);
    } finally {
      await open.close();
    }
  });
});

describe.skipIf(!hasShared)('reconpatch serve (the command)', () => {
  const cli = path.join(repoRoot, 'dist/cli/main.js');
  let child: ChildProcess | undefined;
  afterAll(() => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
  });

  it('refuses to start without a token, and without a store', async () => {
    expect(existsSync(cli), 'dist/cli/main.js: run npm run build:ts first').toBe(true);
    const run = (args: string[]) => new Promise<number>((resolve) => spawn(process.execPath, [cli, ...args], { stdio: 'ignore' }).on('exit', (c) => resolve(c ?? -1)));
    expect(await run(['serve', '--store', tempDir('serve-cli-empty')])).toBe(2);
    expect(await run(['serve', '--store', tempDir('serve-cli-empty2'), '--no-token', '--host', '0.0.0.0'])).toBe(2);
    expect(await run(['serve', '--store', '/nonexistent/store', '--token', TOKEN])).toBe(2);
  });

  it('on SIGTERM finishes the scores in flight and exits 0', async () => {
    const { dir } = await storeWith('serve-cli', { plate: await plateModel(8) });
    child = spawn(process.execPath, [cli, 'serve', '--store', dir, '--token', TOKEN, '--port', '0', '--threads', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    child.stderr!.on('data', (d) => (log += d));
    const lines: Record<string, unknown>[] = [];
    let onLine: (l: Record<string, unknown>) => void = () => {};
    let buffered = '';
    child.stdout!.on('data', (d: Buffer) => {
      buffered += d.toString();
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = JSON.parse(buffered.slice(0, nl)) as Record<string, unknown>;
        buffered = buffered.slice(nl + 1);
        lines.push(line);
        onLine(line);
      }
    });
    const exited = new Promise<number | null>((resolve) => child!.on('exit', (c) => resolve(c)));
    // A line the service logs; fails (with what it logged) if the process ends or 60 s pass first.
    const waitFor = (pred: (l: Record<string, unknown>) => boolean, what: string) =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        const hit = lines.find(pred);
        if (hit) return resolve(hit);
        const fail = (why: string) => reject(new Error(`waiting for ${what}: ${why}\nstdout: ${lines.slice(-10).map((l) => JSON.stringify(l)).join('\n')}\nstderr: ${log.slice(-2000)}`));
        const timer = setTimeout(() => fail('60 s passed'), 60_000);
        void exited.then((code) => fail(`the process exited (${code})`));
        const prev = onLine;
        onLine = (l) => {
          prev(l);
          if (pred(l)) {
            clearTimeout(timer);
            resolve(l);
          }
        };
      });
    const listening = await waitFor((l) => l.msg === 'reconpatch serve listening', 'the service to listen');
    const base = String(listening.address);
    expect(lines.some((l) => typeof l.reqId === 'string' || l.msg === 'model loaded')).toBe(true);
    // Four scores at once; SIGTERM as soon as all four have arrived (a request arriving after it is
    // refused with 503: the drain stops accepting): every one must still answer 200.
    const images = plateImages('test/defect', 4);
    const answers = images.map((f) => fetch(`${base}/score?model=plate`, { method: 'POST', body: readFileSync(f), headers: { 'content-type': 'image/png', ...auth } }));
    const arrived = () => lines.filter((l) => l.msg === 'incoming request' && String((l.req as { url?: string })?.url).startsWith('/score')).length;
    await waitFor(() => arrived() === 4, 'the four requests to arrive');
    expect(lines.filter((l) => l.msg === 'scored')).toHaveLength(0); // still in flight
    child.kill('SIGTERM');
    const results = await Promise.all(answers);
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    for (const r of results) expect(((await r.json()) as VerdictBody).model).toBe('plate');
    expect(await exited, log).toBe(0);
    expect(lines.some((l) => l.msg === 'drained; exiting')).toBe(true);
    // Every request line carries its request id (pino, fastify's logger).
    expect(lines.filter((l) => l.msg === 'scored').every((l) => typeof l.reqId === 'string')).toBe(true);
    await expect(fetch(`${base}/health/live`)).rejects.toThrow();
  }, 150_000);
});
