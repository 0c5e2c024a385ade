/**
 * Reading wheel files (zip archives) for `reconpatch libtorch` without trusting them: every entry
 * name is checked before anything is resolved (no absolute paths, drive letters, backslashes, `.`
 * or `..` segments, empty segments, NUL), only regular files and directories are accepted (a
 * symlink, device or FIFO entry is refused, not written as a plain file), and what is read or
 * written is capped by {@link WheelLimits}, counted on the bytes actually inflated (yauzl also
 * checks each entry against its declared size; the CRC-32 of what is written is checked here,
 * which yauzl does not). Every failure is an ERR_LIBTORCH.
 */
import { createWriteStream, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { crc32 } from 'node:zlib';

import yauzl from 'yauzl';

import { ReconpatchError } from '../errors.js';

/** Caps on what unpacking wheels may read and write. */
export interface WheelLimits {
  /** Bytes written in all, across the wheels of one assembly (default 16 GiB; a CUDA torch and its NVIDIA wheels unpack to about 4.4 GB). */
  maxBytes: number;
  /** Bytes of any one unpacked file (default 4 GiB). */
  maxEntryBytes: number;
  /** Entries in one wheel (default 200 000; a torch wheel has about 15 000). */
  maxEntries: number;
  /** Bytes of an entry read into memory: `torch/version.py`, `METADATA` (default 1 MiB). */
  maxReadBytes: number;
}

export const WHEEL_LIMITS: Readonly<WheelLimits> = {
  maxBytes: 16 * 2 ** 30,
  maxEntryBytes: 4 * 2 ** 30,
  maxEntries: 200_000,
  maxReadBytes: 2 ** 20,
};

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;

/** An ERR_LIBTORCH about `file`, saying what to do. */
export function wheelError(file: string, what: string, cause?: unknown): ReconpatchError {
  return new ReconpatchError('ERR_LIBTORCH',
    `${file}: ${what}; this is not a usable PyTorch wheel: delete it and download it again (--download, or pip download torch from PyTorch's index)`,
    cause === undefined ? undefined : { cause });
}

/** Why an entry name is refused, or undefined when it is a plain relative path (`dir/` for a directory). */
export function badEntryName(name: string): string | undefined {
  if (name.length === 0) return 'an empty name';
  if (name.includes('\0')) return 'a NUL character';
  if (name.includes('\\')) return 'a backslash';
  if (name.startsWith('/') || /^[A-Za-z]:/.test(name)) return 'an absolute path';
  const segments = (name.endsWith('/') ? name.slice(0, -1) : name).split('/');
  if (segments.some((s) => s === '')) return 'an empty path segment';
  if (segments.some((s) => s === '.' || s === '..')) return "a '.' or '..' segment";
  return undefined;
}

type Entry = yauzl.Entry;

function openZip(file: string, limits: WheelLimits): Promise<yauzl.ZipFile> {
  let stat;
  try {
    stat = statSync(file);
  } catch (err) {
    throw new ReconpatchError('ERR_LIBTORCH', `wheel not found: ${file} (${(err as Error).message}); give the path of a .whl file`, { cause: err });
  }
  if (!stat.isFile()) throw new ReconpatchError('ERR_LIBTORCH', `${file} is not a file; give the path of a .whl file`);
  return new Promise((resolve, reject) => {
    yauzl.open(file, { lazyEntries: true, autoClose: false, validateEntrySizes: true, strictFileNames: true, decodeStrings: true }, (err, zip) => {
      if (err || !zip) return reject(wheelError(file, `not a zip archive (${err?.message ?? 'unreadable'})`, err));
      if (zip.entryCount > limits.maxEntries) {
        zip.close();
        return reject(wheelError(file, `${zip.entryCount} entries, more than the limit of ${limits.maxEntries}`));
      }
      resolve(zip);
    });
  });
}

/**
 * Calls `onEntry` for every entry of the zip, one at a time, after checking its name and type;
 * any failure (the zip's, a refused entry, onEntry's) rejects with an ERR_LIBTORCH.
 */
async function eachEntry(file: string, limits: WheelLimits, onEntry: (zip: yauzl.ZipFile, entry: Entry, isDir: boolean) => Promise<void>): Promise<void> {
  const zip = await openZip(file, limits);
  try {
    await new Promise<void>((resolve, reject) => {
      const fail = (err: unknown) => reject(err instanceof ReconpatchError ? err : wheelError(file, `a malformed or unsafe zip (${(err as Error)?.message ?? err})`, err));
      zip.on('entry', (entry: Entry) => {
        const name = entry.fileName;
        const why = badEntryName(name);
        if (why) return fail(wheelError(file, `entry ${JSON.stringify(name)} has ${why}`));
        const type = (entry.externalFileAttributes >>> 16) & S_IFMT;
        const isDir = name.endsWith('/');
        if (type !== 0 && type !== (isDir ? S_IFDIR : S_IFREG)) {
          return fail(wheelError(file, `entry ${JSON.stringify(name)} is not a regular ${isDir ? 'directory' : 'file'} (type 0o${type.toString(8).padStart(6, '0')}: a symlink, device or FIFO)`));
        }
        onEntry(zip, entry, isDir).then(() => zip.readEntry(), fail);
      });
      zip.on('end', resolve);
      zip.on('error', fail);
      zip.readEntry();
    });
  } finally {
    zip.close();
  }
}

function entryStream(file: string, zip: yauzl.ZipFile, entry: Entry): Promise<NodeJS.ReadableStream> {
  return new Promise((resolve, reject) => {
    zip.openReadStream(entry, (err, stream) => (err || !stream ? reject(wheelError(file, `entry ${JSON.stringify(entry.fileName)} is unreadable (${err?.message})`, err)) : resolve(stream)));
  });
}

/**
 * A pass-through that fails once more than the limits went through (`total` counts across calls),
 * or, at the end, when the bytes' CRC-32 is not the entry's.
 */
function checked(file: string, entry: Entry, limits: WheelLimits, total: { bytes: number }): Transform {
  const name = JSON.stringify(entry.fileName);
  let bytes = 0;
  let crc = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      bytes += chunk.length;
      total.bytes += chunk.length;
      if (bytes > limits.maxEntryBytes) return done(wheelError(file, `entry ${name} inflates past the limit of ${limits.maxEntryBytes} bytes per file`));
      if (total.bytes > limits.maxBytes) return done(wheelError(file, `unpacking passes the limit of ${limits.maxBytes} bytes in all (at ${name})`));
      crc = crc32(chunk, crc);
      done(null, chunk);
    },
    flush(done) {
      done(crc >>> 0 === entry.crc32 >>> 0 ? null : wheelError(file, `entry ${name} is damaged (its CRC-32 does not match)`));
    },
  });
}

/** The texts of the first entries whose names match each pattern (undefined where none does), each at most `maxReadBytes`. */
export async function readEntries(file: string, patterns: RegExp[], limits: WheelLimits): Promise<(string | undefined)[]> {
  const texts: (string | undefined)[] = patterns.map(() => undefined);
  await eachEntry(file, limits, async (zip, entry, isDir) => {
    const i = patterns.findIndex((p, k) => texts[k] === undefined && p.test(entry.fileName));
    if (isDir || i < 0) return;
    const tooBig = () => wheelError(file, `entry ${JSON.stringify(entry.fileName)} is larger than the ${limits.maxReadBytes} bytes read from it`);
    if (entry.uncompressedSize > limits.maxReadBytes) throw tooBig();
    const chunks: Buffer[] = [];
    let bytes = 0;
    const stream = await entryStream(file, zip, entry);
    try {
      for await (const c of stream) {
        bytes += (c as Buffer).length;
        if (bytes > limits.maxReadBytes) throw tooBig();
        chunks.push(c as Buffer);
      }
    } catch (err) {
      (stream as unknown as { destroy(): void }).destroy();
      throw err instanceof ReconpatchError ? err : wheelError(file, `entry ${JSON.stringify(entry.fileName)} is unreadable (${(err as Error).message})`, err);
    }
    texts[i] = Buffer.concat(chunks).toString('utf8');
  });
  return texts;
}

/**
 * Unpacks the files `keep` accepts under `dest` (which must exist and be empty of symlinks: a fresh
 * directory); `total.bytes` counts the bytes written across calls, against `limits.maxBytes`.
 * Returns the bytes this wheel wrote.
 */
export async function unpackWheel(file: string, dest: string, keep: (name: string) => boolean, limits: WheelLimits, total: { bytes: number }): Promise<number> {
  const start = total.bytes;
  const root = path.resolve(dest);
  await eachEntry(file, limits, async (zip, entry, isDir) => {
    const name = entry.fileName;
    if (isDir || !keep(name)) return;
    const out = path.resolve(root, name);
    if (!out.startsWith(root + path.sep)) throw wheelError(file, `entry ${JSON.stringify(name)} points outside the target directory`);
    if (entry.uncompressedSize > limits.maxEntryBytes) throw wheelError(file, `entry ${JSON.stringify(name)} declares ${entry.uncompressedSize} bytes, more than the limit of ${limits.maxEntryBytes} per file`);
    const bits = (entry.externalFileAttributes >>> 16) & 0o777;
    const mode = bits ? (bits & 0o755) | 0o600 : /\.so(\.|$)/.test(name) ? 0o755 : 0o644;
    try {
      mkdirSync(path.dirname(out), { recursive: true });
      // 'wx': a second entry of the same name is refused rather than overwriting the first.
      await pipeline(await entryStream(file, zip, entry), checked(file, entry, limits, total), createWriteStream(out, { flags: 'wx', mode }));
    } catch (err) {
      if (err instanceof ReconpatchError) throw err;
      throw new ReconpatchError('ERR_LIBTORCH', `${file}: could not unpack ${JSON.stringify(name)} into ${root} (${(err as Error).message}): ` +
        'the wheel is damaged (download it again), or the cache directory is not writable or is full (give another with --cache-dir)', { cause: err });
    }
  });
  return total.bytes - start;
}
