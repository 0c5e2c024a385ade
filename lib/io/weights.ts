/**
 * Weights for the native torchvision backbones: torchvision's official ImageNet files, fetched
 * once into a cache directory by `reconpatch weights pull <name>` (never implicitly by `fit`).
 * Downloads resume from `<file>.part` with HTTP Range, are checked against the sha256 prefix in
 * the file name (torchvision's convention), and appear in the cache only complete (rename).
 * The HTTP client is undici's, through the proxy HTTPS_PROXY / HTTP_PROXY name (NO_PROXY excepted),
 * with connect and idle timeouts.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream, existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { finished } from 'node:stream/promises';

import { ReconpatchError } from '../errors.js';

/**
 * torchvision's IMAGENET1K_V1 weights (the ones PatchCore uses), by architecture: the file names,
 * whose hex part is the start of the file's sha256.
 * @example
 * console.log(TORCHVISION_WEIGHTS.wide_resnet50_2); // 'wide_resnet50_2-95faca4d.pth'
 */
export const TORCHVISION_WEIGHTS = {
  resnet18: 'resnet18-f37072fd.pth',
  resnet50: 'resnet50-0676ba61.pth',
  wide_resnet50_2: 'wide_resnet50_2-95faca4d.pth',
  wide_resnet101_2: 'wide_resnet101_2-32ee1156.pth',
  resnext101_32x8d: 'resnext101_32x8d-8ba56ff5.pth',
  densenet201: 'densenet201-c1103571.pth',
} as const;

/**
 * A torchvision architecture the engine builds natively.
 * @example
 * const arch: TorchvisionArchitecture = 'wide_resnet50_2';
 */
export type TorchvisionArchitecture = keyof typeof TORCHVISION_WEIGHTS;

export const TORCHVISION_ARCHITECTURES = Object.keys(TORCHVISION_WEIGHTS) as TorchvisionArchitecture[];

/** Where torchvision publishes them. */
export const OFFICIAL_BASE_URL = 'https://download.pytorch.org/models/';

/** Selectable taps per architecture, finest first, and the default pair. */
export function tapNames(arch: TorchvisionArchitecture): { all: string[]; defaults: string[] } {
  const stage = arch === 'densenet201' ? 'denseblock' : 'layer';
  return { all: [1, 2, 3, 4].map((i) => `${stage}${i}`), defaults: [`${stage}2`, `${stage}3`] };
}

/**
 * Where the addon's list of architectures and taps (native/core/backbones/torchvision.cc) differs
 * from this file's. Empty when they agree.
 */
export function torchvisionDrift(catalog: Record<string, { taps: string[]; defaults: string[] }>): string[] {
  const drift: string[] = [];
  const ours = [...TORCHVISION_ARCHITECTURES].sort();
  const theirs = Object.keys(catalog).sort();
  if (ours.join(',') !== theirs.join(',')) drift.push(`torchvision architectures differ: the addon has [${theirs.join(', ')}], lib/io/weights.ts [${ours.join(', ')}]`);
  for (const arch of ours) {
    const c = catalog[arch];
    if (!c) continue;
    const t = tapNames(arch);
    if (c.taps.join(',') !== t.all.join(',') || c.defaults.join(',') !== t.defaults.join(','))
      drift.push(`${arch} taps differ: the addon ${c.taps.join(',')} (default ${c.defaults.join(',')}), lib/io/weights.ts ${t.all.join(',')} (default ${t.defaults.join(',')})`);
  }
  return drift;
}

export function isTorchvisionArchitecture(name: unknown): name is TorchvisionArchitecture {
  return typeof name === 'string' && Object.hasOwn(TORCHVISION_WEIGHTS, name);
}

/**
 * The weights cache: `$RECONPATCH_CACHE`, else `$XDG_CACHE_HOME/reconpatch`, else `~/.cache/reconpatch`.
 * @example
 * console.log(defaultCacheDir()); // e.g. '/home/me/.cache/reconpatch'
 */
export function defaultCacheDir(): string {
  if (process.env.RECONPATCH_CACHE) return path.resolve(process.env.RECONPATCH_CACHE);
  const xdg = process.env.XDG_CACHE_HOME;
  return path.join(xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), '.cache'), 'reconpatch');
}

/**
 * The cached weights file of `arch`, or undefined when it has not been pulled.
 * @example
 * if (!cachedWeights('resnet18')) await pullWeights('resnet18');
 */
export function cachedWeights(arch: TorchvisionArchitecture, cacheDir = defaultCacheDir()): string | undefined {
  const file = path.join(cacheDir, TORCHVISION_WEIGHTS[arch]);
  return existsSync(file) ? file : undefined;
}

/** The command that fetches `arch`'s weights. */
export function pullCommand(arch: string): string {
  return `npx reconpatch weights pull ${arch}`;
}

/** The sha256 prefix (8+ hex digits) torchvision puts in a file name: `resnet18-f37072fd.pth`. */
export function hashPrefix(fileName: string): string {
  const m = /-([0-9a-f]{8,64})\.[a-z]+$/.exec(path.basename(fileName));
  if (!m) throw new ReconpatchError('ERR_INVALID_OPTION', `file name '${fileName}' carries no sha256 prefix (expected <name>-<hex>.pth)`);
  return m[1];
}

/**
 * Progress of a weights download.
 * @example
 * await pullWeights('resnet18', { onProgress: ({ received, total }) => console.log(received, total) });
 */
export interface DownloadProgress {
  /** Bytes of the file present so far (resumed bytes included). */
  received: number;
  /** The file's size, when the server says. */
  total?: number;
}

/**
 * Options for {@link pullWeights}.
 * @example
 * await pullWeights('resnet18', { from: 'https://mirror.example/models/', cacheDir: '/opt/weights' });
 */
export interface PullOptions {
  /** Cache directory (default {@link defaultCacheDir}). */
  cacheDir?: string;
  /** A mirror: a URL of the file, a base URL ending in `/`, or a local file path. Default: torchvision's server. */
  from?: string;
  /** Called for every chunk received. */
  onProgress?: (p: DownloadProgress) => void;
  /** Attempts per pull when a transfer breaks off; each resumes where the last stopped (default 3). */
  attempts?: number;
  /**
   * Connect and idle timeouts (default 30 s and 60 s). A stalled transfer counts as broken off:
   * the next attempt resumes it. Downloads go through the proxy named by HTTPS_PROXY / HTTP_PROXY
   * (lower-case too), except to the hosts in NO_PROXY.
   */
  timeouts?: DownloadTimeouts;
}

/**
 * Fetches `arch`'s official weights into the cache (a no-op when present), resuming a broken
 * transfer and verifying the sha256 prefix. Returns the file's path. Never called by `fit`.
 * Throws ERR_INVALID_OPTION, ERR_DOWNLOAD, ERR_WEIGHTS_CHECKSUM, ERR_IO.
 * @example
 * const file = await pullWeights('wide_resnet50_2');
 * const engine = await Engine.create({ backbone: 'wide_resnet50_2' }); // finds it in the cache
 */
export async function pullWeights(arch: string, options: PullOptions = {}): Promise<string> {
  if (!isTorchvisionArchitecture(arch))
    throw new ReconpatchError('ERR_INVALID_OPTION', `unknown weights '${arch}'; known: ${TORCHVISION_ARCHITECTURES.join(', ')}`);
  const fileName = TORCHVISION_WEIGHTS[arch];
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const dest = path.join(cacheDir, fileName);
  if (existsSync(dest)) return dest;
  const from = options.from ?? OFFICIAL_BASE_URL;
  const source = /^https?:\/\//.test(from) ? (from.endsWith('/') ? from + fileName : from) : { file: path.resolve(from) };
  await fetchVerified(source, dest, options);
  return dest;
}

/**
 * Downloads (or copies) `source` to `dest` through `dest.part`, verifying the sha256 prefix in
 * `dest`'s file name before the rename. Throws ERR_DOWNLOAD, ERR_WEIGHTS_CHECKSUM, ERR_IO.
 */
export async function fetchVerified(source: string | { file: string }, dest: string, options: Omit<PullOptions, 'cacheDir' | 'from'> = {}): Promise<void> {
  const expected = hashPrefix(dest);
  const part = `${dest}.part`;
  try {
    mkdirSync(path.dirname(dest), { recursive: true });
  } catch (err) {
    throw new ReconpatchError('ERR_IO', `cannot create the weights cache directory ${path.dirname(dest)}: ${(err as Error).message}; set RECONPATCH_CACHE or --cache-dir to a writable directory`);
  }
  if (typeof source === 'object') {
    if (!existsSync(source.file))
      throw new ReconpatchError('ERR_DOWNLOAD', `--from '${source.file}' is neither an http(s) URL nor an existing file`);
    await copyFile(source.file, part);
  } else {
    const attempts = options.attempts ?? 3;
    const client = await downloadClient(options.timeouts);
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          await downloadOnce(source, part, client, options.onProgress);
          break;
        } catch (err) {
          const retry = err instanceof TransferBroken && attempt < attempts;
          if (!retry) throw err instanceof TransferBroken ? err.error : err;
        }
      }
    } finally {
      await client.agent.destroy().catch(() => {});
    }
  }
  const actual = await sha256File(part);
  if (!actual.startsWith(expected)) {
    rmSync(part, { force: true });
    const what = typeof source === 'object' ? source.file : source;
    throw new ReconpatchError(
      'ERR_WEIGHTS_CHECKSUM',
      `${what} is not ${path.basename(dest)}: its sha256 starts with ${actual.slice(0, expected.length)}, expected ${expected}. ` +
        'The partial file was removed; check that the mirror or file is the official torchvision one, then pull again.',
    );
  }
  renameSync(part, dest);
}

/** A transfer that stopped midway: the `.part` file keeps what arrived, so the next try resumes. */
class TransferBroken extends Error {
  constructor(readonly error: ReconpatchError) {
    super(error.message);
  }
}

/** The connect and idle timeouts of a download, in milliseconds. */
export interface DownloadTimeouts {
  /** Time to open the connection (to the server or the proxy); default 30 000. */
  connectMs?: number;
  /** Time without a byte: waiting for the response's headers, or for the next chunk of its body; default 60 000. */
  idleMs?: number;
}

type Undici = typeof import('undici');
type Agent = InstanceType<Undici['EnvHttpProxyAgent']>;

/**
 * The HTTP client of one pull: undici's EnvHttpProxyAgent, built now so that it reads
 * HTTP_PROXY / HTTPS_PROXY / NO_PROXY (lower-case too) as they are at this call.
 */
async function downloadClient(timeouts: DownloadTimeouts = {}): Promise<{ request: Undici['request']; agent: Agent; idleMs: number; connectMs: number }> {
  const connectMs = timeouts.connectMs ?? 30_000;
  const idleMs = timeouts.idleMs ?? 60_000;
  for (const [k, v] of [['connectMs', connectMs], ['idleMs', idleMs]] as const)
    if (!Number.isFinite(v) || v <= 0) throw new ReconpatchError('ERR_INVALID_OPTION', `timeouts.${k} must be a positive number of milliseconds, got ${v}`);
  const { request, EnvHttpProxyAgent } = await import('undici'); // loaded only when a pull downloads
  const agent = new EnvHttpProxyAgent({ connectTimeout: connectMs, headersTimeout: idleMs, bodyTimeout: idleMs });
  return { request, agent, idleMs, connectMs };
}

/** Why a request or its body failed, in words, from undici's error codes. */
function failure(err: unknown, client: { idleMs: number; connectMs: number }): string {
  const code = (err as { code?: string }).code;
  if (code === 'UND_ERR_CONNECT_TIMEOUT') return `no connection within ${client.connectMs / 1000} s`;
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') return `nothing received for ${client.idleMs / 1000} s`;
  if (code === 'UND_ERR_SOCKET') return 'connection closed';
  const cause = (err as { cause?: Error }).cause;
  return (err as Error).message + (cause?.message ? ` (${cause.message})` : '');
}

const header = (v: string | string[] | undefined): string => (Array.isArray(v) ? v[0] : v) ?? '';

async function downloadOnce(
  url: string,
  part: string,
  client: Awaited<ReturnType<typeof downloadClient>>,
  onProgress?: (p: DownloadProgress) => void,
  redirects = 0,
): Promise<void> {
  const have = existsSync(part) ? statSync(part).size : 0;
  let res: Awaited<ReturnType<Undici['request']>>;
  try {
    res = await client.request(url, { dispatcher: client.agent, headers: have > 0 ? { range: `bytes=${have}-` } : {} });
  } catch (err) {
    throw new TransferBroken(
      new ReconpatchError(
        'ERR_DOWNLOAD',
        `downloading ${url} failed: ${failure(err, client)}. Check the network (behind a proxy: set HTTPS_PROXY / HTTP_PROXY, and NO_PROXY for hosts reached directly) or use --from <mirror URL|file>.`,
      ),
    );
  }
  const status = res.statusCode;
  const location = header(res.headers.location);
  if (status >= 300 && status < 400 && location && redirects < 5) {
    await res.body.dump();
    return downloadOnce(new URL(location, url).href, part, client, onProgress, redirects + 1);
  }
  if (status === 416 && have > 0) {
    await res.body.dump(); // the part file already holds the whole file; the checksum decides
    return;
  }
  if (status !== 200 && status !== 206) {
    await res.body.dump();
    throw new ReconpatchError('ERR_DOWNLOAD', `downloading ${url} failed: HTTP ${status}${status === 404 ? ' (not found: check the URL or --from mirror)' : ''}. Try again, or fetch the file yourself and run with --from <file>.`);
  }
  // 206: the server continues where the part file ends; 200: it sends the whole file again.
  const resumed = status === 206 && header(res.headers['content-range']).startsWith(`bytes ${have}-`);
  if (status === 206 && !resumed) {
    res.body.destroy();
    rmSync(part, { force: true }); // a range we did not ask for: start over
    throw new TransferBroken(new ReconpatchError('ERR_DOWNLOAD', `${url} answered a resume with the wrong range; run the same command again`));
  }
  const start = resumed ? have : 0;
  const length = Number(header(res.headers['content-length']) || NaN);
  const total = Number.isFinite(length) ? start + length : undefined;
  let received = start;
  const out = createWriteStream(part, { flags: resumed ? 'a' : 'w' });
  let writeError: Error | undefined;
  out.on('error', (err) => (writeError ??= err));
  let readError: unknown;
  try {
    for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
      received += chunk.length;
      onProgress?.({ received, total });
      if (!out.write(chunk)) await once(out, 'drain'); // rejects on a write error, which wins below
      if (writeError) break;
    }
  } catch (err) {
    readError = err;
  }
  // A broken connection: keep (flush) what arrived so the next attempt resumes after it.
  out.end();
  await finished(out).catch(() => {});
  if (writeError) throw new ReconpatchError('ERR_IO', `cannot write ${part}: ${writeError.message}`);
  const broken = (why: string) =>
    new TransferBroken(new ReconpatchError('ERR_DOWNLOAD', `downloading ${url} stopped after ${received} bytes (${why}); run the same command again to resume`));
  if (readError !== undefined) throw broken(failure(readError, client));
  if (total !== undefined && received !== total) throw broken(`expected ${total} bytes`);
}

function sha256File(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(file)
      .on('data', (d) => h.update(d))
      .on('end', () => resolve(h.digest('hex')))
      .on('error', reject);
  });
}
