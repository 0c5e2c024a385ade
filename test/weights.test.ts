// Weights management against a real HTTP server on 127.0.0.1 serving a generated file: a good
// download, a wrong hash, an interrupted transfer resumed with Range, a server that ignores
// Range, 404, --from a local file, a loopback forward proxy named by HTTP_PROXY (and bypassed by
// NO_PROXY), servers that stall (idle timeout), and the real `reconpatch weights` binary. Never the internet.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { type DownloadProgress, defaultCacheDir, fetchVerified, pullWeights } from '../lib/io/weights.js';
import { repoRoot, tempDir } from './support/data.js';

const run = promisify(execFile);
const cli = path.join(repoRoot, 'dist/cli/main.js');

const body = randomBytes(3 << 20);
const sha = createHash('sha256').update(body).digest('hex');
const goodName = `test-${sha.slice(0, 8)}.pth`;

interface Seen { url: string; range?: string }

describe('weights download', () => {
  const dir = tempDir('weights');
  const seen: Seen[] = [];
  let flakyServed = false;
  let base = '';
  let server: http.Server;
  // A forward proxy: absolute-URI requests are relayed, CONNECT requests tunnelled; it logs both.
  const proxied: string[] = [];
  let proxy: http.Server;
  let proxyUrl = '';
  // A server that accepts connections and never answers.
  const mute: net.Socket[] = [];
  let muteServer: net.Server;
  let muteBase = '';
  const proxyEnv = ['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'NO_PROXY', 'no_proxy'] as const;
  const savedEnv = Object.fromEntries(proxyEnv.map((k) => [k, process.env[k]]));
  const clearProxyEnv = () => proxyEnv.forEach((k) => delete process.env[k]);

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const url = req.url ?? '';
      seen.push({ url, range: req.headers.range });
      if (url.startsWith('/stall/')) {
        // Headers and a third of the body, then silence with the connection open.
        res.writeHead(200, { 'Content-Length': body.length });
        res.write(body.subarray(0, body.length / 3));
        return;
      }
      if (url.startsWith('/missing/')) {
        res.writeHead(404).end('not found');
        return;
      }
      const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
      if (url.startsWith('/flaky/') && !flakyServed) {
        // Promise the whole file, send a third of it, then drop the connection.
        flakyServed = true;
        res.writeHead(200, { 'Content-Length': body.length });
        res.write(body.subarray(0, body.length / 3), () => res.socket?.destroy());
        return;
      }
      if (range && !url.startsWith('/norange/')) {
        const start = Number(range[1]);
        if (start >= body.length) {
          res.writeHead(416, { 'Content-Range': `bytes */${body.length}` }).end();
          return;
        }
        res.writeHead(206, { 'Content-Length': body.length - start, 'Content-Range': `bytes ${start}-${body.length - 1}/${body.length}` });
        res.end(body.subarray(start));
        return;
      }
      res.writeHead(200, { 'Content-Length': body.length });
      res.end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    proxy = http.createServer((req, res) => {
      proxied.push(`${req.method} ${req.url}`);
      const upstream = http.request(new URL(req.url ?? ''), { method: req.method, headers: req.headers }, (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      });
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    });
    proxy.on('connect', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
      proxied.push(`CONNECT ${req.url}`);
      const [host, port] = (req.url ?? '').split(':');
      const upstream = net.connect(Number(port), host, () => {
        socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        upstream.write(head);
        upstream.pipe(socket);
        socket.pipe(upstream);
      });
      upstream.on('error', () => socket.destroy());
      socket.on('error', () => upstream.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;

    muteServer = net.createServer((socket) => void mute.push(socket));
    await new Promise<void>((resolve) => muteServer.listen(0, '127.0.0.1', resolve));
    muteBase = `http://127.0.0.1:${(muteServer.address() as AddressInfo).port}`;
    clearProxyEnv(); // the other tests talk to 127.0.0.1 directly, whatever this machine's proxy
  });
  afterAll(() => {
    clearProxyEnv();
    for (const [k, v] of Object.entries(savedEnv)) if (v !== undefined) process.env[k] = v;
    server.closeAllConnections();
    server.close();
    proxy.closeAllConnections();
    proxy.close();
    mute.forEach((s) => s.destroy());
    muteServer.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const fresh = (name: string) => {
    const d = path.join(dir, name);
    rmSync(d, { recursive: true, force: true });
    mkdirSync(d, { recursive: true });
    seen.length = 0;
    return d;
  };

  it('downloads a good file into the cache with progress, verified and renamed', async () => {
    const cache = fresh('good');
    const progress: DownloadProgress[] = [];
    const dest = path.join(cache, goodName);
    await fetchVerified(`${base}/good/${goodName}`, dest, { onProgress: (p) => progress.push(p) });
    expect(createHash('sha256').update(readFileSync(dest)).digest('hex')).toBe(sha);
    expect(existsSync(`${dest}.part`)).toBe(false);
    expect(progress.at(-1)).toEqual({ received: body.length, total: body.length });
    expect(seen).toEqual([{ url: `/good/${goodName}`, range: undefined }]);
  });

  it('rejects a file whose sha256 does not start with the prefix in its name, leaving nothing behind', async () => {
    const cache = fresh('wrong');
    const dest = path.join(cache, 'test-00000000.pth');
    const e = await fetchVerified(`${base}/good/x.pth`, dest).catch((err) => err);
    expect(e.code).toBe('ERR_WEIGHTS_CHECKSUM');
    expect(e.message).toContain(`starts with ${sha.slice(0, 8)}, expected 00000000`);
    expect(existsSync(dest) || existsSync(`${dest}.part`)).toBe(false);
    // By name: the table's official file name, from a mirror base URL (our file is not resnet18's).
    const byName = await pullWeights('resnet18', { cacheDir: cache, from: `${base}/good/` }).catch((err) => err);
    expect(byName.code).toBe('ERR_WEIGHTS_CHECKSUM');
    expect(seen.at(-1)?.url).toBe('/good/resnet18-f37072fd.pth');
  });

  it('resumes an interrupted transfer with an HTTP Range request', async () => {
    const cache = fresh('flaky');
    const dest = path.join(cache, goodName);
    const progress: DownloadProgress[] = [];
    await fetchVerified(`${base}/flaky/${goodName}`, dest, { onProgress: (p) => progress.push(p) });
    expect(createHash('sha256').update(readFileSync(dest)).digest('hex')).toBe(sha);
    expect(seen).toHaveLength(2);
    expect(seen[0].range).toBeUndefined();
    // It resumes after what arrived (the dropped connection may lose the last packets in flight).
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(seen[1].range ?? '')?.[1]);
    expect(resumedAt).toBeGreaterThan(body.length / 4);
    expect(resumedAt).toBeLessThanOrEqual(body.length / 3);
    expect(progress.at(-1)?.received).toBe(body.length);
  });

  it('resumes from a .part file left by an earlier run; restarts when the server ignores Range', async () => {
    const cache = fresh('part');
    const dest = path.join(cache, goodName);
    writeFileSync(`${dest}.part`, body.subarray(0, 1000));
    await fetchVerified(`${base}/good/${goodName}`, dest);
    expect(seen.map((s) => s.range)).toEqual(['bytes=1000-']);
    expect(createHash('sha256').update(readFileSync(dest)).digest('hex')).toBe(sha);
    rmSync(dest);
    writeFileSync(`${dest}.part`, Buffer.alloc(5000, 7)); // stale bytes; the server answers 200
    await fetchVerified(`${base}/norange/${goodName}`, dest);
    expect(createHash('sha256').update(readFileSync(dest)).digest('hex')).toBe(sha);
  });

  it('reports a 404 as ERR_DOWNLOAD with what to do', async () => {
    const cache = fresh('404');
    const e = await fetchVerified(`${base}/missing/${goodName}`, path.join(cache, goodName)).catch((err) => err);
    expect(e.code).toBe('ERR_DOWNLOAD');
    expect(e.message).toMatch(/HTTP 404.*--from/);
    expect(existsSync(path.join(cache, goodName))).toBe(false);
  });

  it('goes through the proxy HTTP_PROXY names', async () => {
    const cache = fresh('proxy');
    const dest = path.join(cache, goodName);
    proxied.length = 0;
    process.env.HTTP_PROXY = proxyUrl;
    try {
      await fetchVerified(`${base}/good/${goodName}`, dest);
    } finally {
      clearProxyEnv();
    }
    expect(createHash('sha256').update(readFileSync(dest)).digest('hex')).toBe(sha);
    expect(proxied.length).toBeGreaterThanOrEqual(1);
    expect(proxied[0]).toMatch(new RegExp(`^(CONNECT 127\\.0\\.0\\.1:\\d+|GET ${base}/good/${goodName})$`));
    expect(seen.map((s) => s.url)).toEqual([`/good/${goodName}`]); // relayed once, to the server
  });

  it('goes around the proxy to the hosts NO_PROXY (or no_proxy) lists', async () => {
    const cache = fresh('noproxy');
    const dest = path.join(cache, goodName);
    proxied.length = 0;
    try {
      process.env.http_proxy = proxyUrl;
      process.env.NO_PROXY = 'example.invalid,127.0.0.1';
      await fetchVerified(`${base}/good/${goodName}`, dest);
      expect(proxied).toEqual([]);
      expect(seen).toHaveLength(1); // it reached the server directly
      rmSync(dest);
      // The same download without NO_PROXY takes the proxy: the check above was not vacuous.
      delete process.env.NO_PROXY;
      process.env.no_proxy = 'example.invalid';
      await fetchVerified(`${base}/good/${goodName}`, dest);
      expect(proxied.length).toBeGreaterThanOrEqual(1);
    } finally {
      clearProxyEnv();
    }
  });

  it('gives up on a server that stops answering, with ERR_DOWNLOAD, within the idle timeout', async () => {
    const cache = fresh('stall');
    const dest = path.join(cache, goodName);
    // Connected, request sent, no response at all.
    let t0 = Date.now();
    const silent = await fetchVerified(`${muteBase}/${goodName}`, dest, { attempts: 1, timeouts: { idleMs: 300 } }).catch((err) => err);
    expect(Date.now() - t0).toBeLessThan(5000); // undici's timers tick once a second; the default is 60 s
    expect(mute.length).toBeGreaterThanOrEqual(1);
    expect(silent.code).toBe('ERR_DOWNLOAD');
    expect(silent.message).toMatch(/nothing received for 0\.3 s.*HTTPS_PROXY/);
    expect(existsSync(dest)).toBe(false);
    // Headers and part of the body, then silence: a broken transfer whose bytes are kept to resume.
    t0 = Date.now();
    const stalled = await fetchVerified(`${base}/stall/${goodName}`, dest, { attempts: 2, timeouts: { idleMs: 300 } }).catch((err) => err);
    expect(Date.now() - t0).toBeLessThan(5000); // undici's timers tick once a second; the default is 60 s
    expect(stalled.code).toBe('ERR_DOWNLOAD');
    expect(stalled.message).toMatch(/stopped after \d+ bytes \(nothing received for 0\.3 s\); run the same command again to resume/);
    expect(seen).toHaveLength(2); // the second attempt resumed after what arrived, and stalled too
    expect(seen[0].range).toBeUndefined();
    expect(Number(/^bytes=(\d+)-$/.exec(seen[1].range ?? '')?.[1])).toBeGreaterThan(0);
    expect(existsSync(dest)).toBe(false);
    expect(readFileSync(`${dest}.part`).length).toBeGreaterThan(0);
    const bad = await fetchVerified(`${base}/good/${goodName}`, dest, { timeouts: { idleMs: 0 } }).catch((err) => err);
    expect(bad.code).toBe('ERR_INVALID_OPTION');
  }, 20_000);

  it('takes a local file with --from, verified the same way', async () => {
    const cache = fresh('local');
    const src = path.join(dir, 'local-copy.pth');
    writeFileSync(src, body);
    const dest = path.join(cache, goodName);
    await fetchVerified({ file: src }, dest);
    expect(readFileSync(dest).equals(body)).toBe(true);
    const e = await pullWeights('densenet201', { cacheDir: cache, from: src }).catch((err) => err);
    expect(e.code).toBe('ERR_WEIGHTS_CHECKSUM');
    expect(existsSync(path.join(cache, 'densenet201-c1103571.pth'))).toBe(false);
    const missing = await pullWeights('densenet201', { cacheDir: cache, from: path.join(dir, 'nope.pth') }).catch((err) => err);
    expect(missing.code).toBe('ERR_DOWNLOAD');
    const unknown = await pullWeights('vgg16', { cacheDir: cache }).catch((err) => err);
    expect(unknown.code).toBe('ERR_INVALID_OPTION');
  });

  it('puts the cache in $RECONPATCH_CACHE, else $XDG_CACHE_HOME/reconpatch, else ~/.cache/reconpatch', () => {
    const saved = { r: process.env.RECONPATCH_CACHE, x: process.env.XDG_CACHE_HOME };
    try {
      process.env.RECONPATCH_CACHE = '/tmp/rc';
      process.env.XDG_CACHE_HOME = '/tmp/xdg';
      expect(defaultCacheDir()).toBe('/tmp/rc');
      delete process.env.RECONPATCH_CACHE;
      expect(defaultCacheDir()).toBe('/tmp/xdg/reconpatch');
      delete process.env.XDG_CACHE_HOME;
      expect(defaultCacheDir()).toMatch(/\/\.cache\/reconpatch$/);
    } finally {
      for (const [k, v] of [['RECONPATCH_CACHE', saved.r], ['XDG_CACHE_HOME', saved.x]] as const)
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
    }
  });

  describe('the reconpatch weights command', () => {
    beforeAll(async () => {
      if (!existsSync(cli)) await run('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: repoRoot });
    });
    const reconpatch = async (...args: string[]) => {
      try {
        const { stdout, stderr } = await run(process.execPath, [cli, ...args], { env: { ...process.env, CI: '1' } });
        return { code: 0, stdout, stderr };
      } catch (e) {
        const err = e as { code: number; stdout: string; stderr: string };
        return { code: err.code, stdout: err.stdout, stderr: err.stderr };
      }
    };

    it('pull: 404 and wrong hash fail with their codes and leave the cache empty; list shows what is cached', async () => {
      const cache = fresh('cli');
      const missing = await reconpatch('weights', 'pull', 'resnet50', '--from', `${base}/missing/`, '--cache-dir', cache);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toMatch(/\[ERR_DOWNLOAD\].*HTTP 404/);
      const wrong = await reconpatch('weights', 'pull', 'resnet50', '--from', `${base}/good/`, '--cache-dir', cache);
      expect(wrong.code).toBe(1);
      expect(wrong.stderr).toContain('[ERR_WEIGHTS_CHECKSUM]');
      expect(wrong.stderr).toMatch(/resnet50: 3\.0\/3\.0 MB/); // plain progress lines off a terminal
      expect(seen.at(-1)?.url).toBe('/good/resnet50-0676ba61.pth');
      writeFileSync(path.join(cache, 'resnet18-f37072fd.pth'), 'x');
      const list = await reconpatch('weights', 'list', '--cache-dir', cache, '--json');
      expect(list.code).toBe(0);
      const rows = JSON.parse(list.stdout).weights as { name: string; cached: string | null }[];
      expect(rows.find((r) => r.name === 'resnet18')?.cached).toBe(path.join(cache, 'resnet18-f37072fd.pth'));
      expect(rows.find((r) => r.name === 'resnet50')?.cached).toBeNull();
      expect(rows).toHaveLength(6);
      const usage = await reconpatch('weights', 'fetch');
      expect(usage.code).toBe(2);
      expect(usage.stderr).toContain('reconpatch weights pull <name>');
    }, 60_000);
  });
});
