/**
 * Reading a whole file that came from outside (a model, an image path): regular files only, with
 * a size bound checked before reading. A FIFO with no writer, a device such as /dev/zero or a
 * directory would otherwise block forever or read without end.
 */
import { constants, type Stats } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';

/**
 * Opens `file` for reading if it is a regular file: with O_NONBLOCK (opening a FIFO with no writer
 * would otherwise wait forever), then fstat on the open handle. `fail(why, cause)` builds the
 * error thrown: no such file, or not a regular file. The caller closes the handle.
 */
export async function openRegularFile(file: string, fail: (why: string, cause?: unknown) => Error): Promise<{ handle: FileHandle; stat: Stats }> {
  const handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK).catch((err: NodeJS.ErrnoException) => {
    throw fail(err.code === 'ENOENT' ? 'no such file' : (err.code ?? String(err)), err);
  });
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw fail(`not a regular file (${stat.isDirectory() ? 'a directory' : 'a device, FIFO or socket'})`);
    return { handle, stat };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

/**
 * Reads `file` whole. `fail(why, cause)` builds the error thrown (the caller's code and wording):
 * no such file, not a regular file, more than `maxBytes`, or the file shrank while read.
 */
export async function readRegularFile(file: string, maxBytes: number, fail: (why: string, cause?: unknown) => Error): Promise<Buffer> {
  const { handle, stat } = await openRegularFile(file, fail);
  try {
    if (stat.size > maxBytes) throw fail(`${stat.size} bytes, more than the ${maxBytes} allowed`);
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
