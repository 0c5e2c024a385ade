/**
 * Model files on disk: the bytes of `Engine.saveBytes()` / an ensemble container, written
 * atomically and read back with bounds. The format itself is coded once, natively
 * (native/core/io/model_file.*) and, for ensembles, in ../ensemble/container.ts.
 */
import { randomBytes } from 'node:crypto';
import { constants, readdirSync, unlinkSync } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';

import { ReconpatchError } from '../errors.js';

/** Largest model file read (a 2.4 GB bank of 600k float32 rows fits; far beyond is damage or a wrong file). */
export const MAX_MODEL_BYTES = 2 ** 32 - 1;

/**
 * Reads a whole model file: regular files only (a FIFO, a device or a directory is refused before
 * reading: they may never end), at most `maxBytes`. Throws ERR_MODEL_FILE saying why.
 */
export async function readModelFile(file: string, maxBytes = MAX_MODEL_BYTES): Promise<Buffer> {
  const fail = (why: string, cause?: unknown) => new ReconpatchError('ERR_MODEL_FILE', `cannot read model file '${file}': ${why}`, { cause });
  // O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever.
  const handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK).catch((err: NodeJS.ErrnoException) => {
    throw fail(err.code === 'ENOENT' ? 'no such file' : (err.code ?? String(err)), err);
  });
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw fail(`not a regular file (${stat.isDirectory() ? 'a directory' : 'a device, FIFO or socket'})`);
    if (stat.size > maxBytes) throw fail(`${stat.size} bytes, more than the ${maxBytes} a model file may have`);
    const bytes = Buffer.allocUnsafe(stat.size);
    let at = 0;
    // In chunks: one read is limited to 2 GiB.
    while (at < bytes.length) {
      const { bytesRead } = await handle.read(bytes, at, Math.min(bytes.length - at, 1 << 30), at);
      if (bytesRead === 0) throw fail('the file shrank while it was read');
      at += bytesRead;
    }
    return bytes;
  } finally {
    await handle.close();
  }
}

const TMP_MARK = '.tmp-';

/**
 * Writes `bytes` to `file` atomically: a temporary file beside it, fsync, rename, so an existing
 * file is never half-overwritten. Temporary files that a killed process left beside `file`
 * (`<name>.tmp-<pid>-<hex>` whose pid no longer runs) are removed first. Throws ERR_IO.
 */
export async function writeFileAtomically(file: string, bytes: Uint8Array, what = 'model'): Promise<void> {
  removeStaleTemporaries(file);
  const tmp = `${file}${TMP_MARK}${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const handle = await open(tmp, 'wx');
    try {
      await handle.writeFile(bytes);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw new ReconpatchError('ERR_IO', `cannot write ${what} '${file}' (${(err as NodeJS.ErrnoException).code ?? String(err)}); check the directory exists and is writable`, { cause: err });
  }
}

/** Removes `<file>.tmp-<pid>-*` of processes that no longer run. Best effort. */
function removeStaleTemporaries(file: string): void {
  const dir = path.dirname(file);
  const prefix = `${path.basename(file)}${TMP_MARK}`;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length).split('-')[0]);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || isRunning(pid)) continue;
    try {
      unlinkSync(path.join(dir, name));
    } catch {
      // another process cleaned it, or it is not ours to remove
    }
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by someone else
  }
}
