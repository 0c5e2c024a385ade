/**
 * Model files on disk: the bytes of `Engine.saveBytes()` / an ensemble container, written
 * atomically and read back with bounds. The format itself is coded once, natively
 * (native/core/io/model_file.*) and, for ensembles, in ../ensemble/container.ts.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, unlinkSync } from 'node:fs';
import { open, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';

import { ReconpatchError } from '../errors.js';
import { readRegularFile } from '../io/regular_file.js';

/** Largest model file read (a 2.4 GB bank of 600k float32 rows fits; far beyond is damage or a wrong file). */
export const MAX_MODEL_BYTES = 2 ** 32 - 1;

/**
 * Reads a whole model file: regular files only (a FIFO, a device or a directory is refused before
 * reading: they may never end), at most `maxBytes`. Throws ERR_MODEL_FILE saying why.
 */
export function readModelFile(file: string, maxBytes = MAX_MODEL_BYTES): Promise<Buffer> {
  return readRegularFile(file, maxBytes, (why, cause) => new ReconpatchError('ERR_MODEL_FILE', `cannot read model file '${file}': ${why}`, { cause }));
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

/**
 * Checks, before long work, that {@link writeFileAtomically} will be able to write `file`: its
 * directory exists and takes a new file (a probe is created and removed), and `file` is not a
 * directory. Throws ERR_IO saying what to fix.
 */
export async function checkWritable(file: string, what = 'model'): Promise<void> {
  const fail = (why: string, cause?: unknown) => new ReconpatchError('ERR_IO', `cannot write ${what} '${file}': ${why}`, { cause });
  const dir = path.dirname(path.resolve(file));
  const dirStat = await stat(dir).catch((err: NodeJS.ErrnoException) => {
    throw fail(err.code === 'ENOENT' ? `the directory '${dir}' does not exist` : `the directory '${dir}' cannot be used (${err.code ?? String(err)})`, err);
  });
  if (!dirStat.isDirectory()) throw fail(`'${dir}' is not a directory`);
  const existing = await stat(file).catch(() => null);
  if (existing?.isDirectory()) throw fail('it is a directory');
  const probe = `${file}${TMP_MARK}${process.pid}-probe`;
  try {
    await (await open(probe, 'wx')).close();
  } catch (err) {
    throw fail(`the directory '${dir}' does not take new files (${(err as NodeJS.ErrnoException).code ?? String(err)})`, err);
  }
  await unlink(probe).catch(() => undefined);
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
