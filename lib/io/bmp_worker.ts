/**
 * BMP decoding off the event loop: ./bmp.ts decodes in JavaScript (7 to 60 ms per megabyte, by machine), so a
 * large BMP decoded inline would stall every timer, socket and request of the process for seconds.
 * BMPs above {@link BMP_WORKER_BYTES} are decoded in a worker thread (one per image, at most
 * {@link MAX_BMP_WORKERS} at once); the pixels come back as a transferred ArrayBuffer, not a copy.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

import { type DecodedBmp, decodeBmp } from './bmp.js';

/** BMPs larger than this (bytes) are decoded in a worker; smaller ones inline (a worker's start costs more). */
export const BMP_WORKER_BYTES = 1 << 20;
/** At most this many BMPs are decoded in workers at once; the rest wait their turn. */
export const MAX_BMP_WORKERS = Math.max(1, Math.min(4, availableParallelism() - 1));

// The worker runs the very same decoder: its source, with no imports to resolve (it needs none),
// so it works the same from dist/ and from the TypeScript sources under a test runner.
// `__name`: some transpilers (esbuild's keepNames) wrap functions in it.
const SCRIPT = `
const __name = (f) => f;
const decodeBmp = ${decodeBmp.toString()};
require('node:worker_threads').parentPort.once('message', (bytes) => {
  const port = require('node:worker_threads').parentPort;
  try {
    const r = decodeBmp(bytes);
    port.postMessage(r, [r.data.buffer]);
  } catch (e) {
    port.postMessage({ error: e instanceof Error ? e.message : String(e) });
  }
});`;

let running = 0;
const waiting: (() => void)[] = [];

/**
 * Decodes `bytes` (a BMP) like `decodeBmp`, in a worker when large. Rejects with the decoder's
 * Error. `owned`: the bytes are the caller's to give away (read from a file just now), so their
 * buffer moves to the worker as it is; otherwise they are copied first, a slice per turn of the
 * event loop (copying 30 MB at once stalls it for 100-300 ms).
 */
export async function decodeBmpOffThread(bytes: Uint8Array, owned = false): Promise<DecodedBmp> {
  if (bytes.length <= BMP_WORKER_BYTES) return decodeBmp(bytes);
  // A slot: a free one, or the one a finishing decode hands over (so never more than the maximum).
  if (running < MAX_BMP_WORKERS) running++;
  else await new Promise<void>((resolve) => waiting.push(resolve));
  try {
    const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer;
    return await inWorker(owned && whole ? bytes : await copyInSlices(bytes));
  } finally {
    const next = waiting.shift();
    if (next) next();
    else running--;
  }
}

const SLICE = 2 << 20;

async function copyInSlices(bytes: Uint8Array): Promise<Uint8Array> {
  const copy = new Uint8Array(bytes.length);
  for (let at = 0; at < bytes.length; at += SLICE) {
    copy.set(bytes.subarray(at, at + SLICE), at);
    await new Promise((resolve) => setImmediate(resolve));
  }
  return copy;
}

/** Decodes in a new worker; `bytes`' buffer is transferred to it (detached here). */
function inWorker(bytes: Uint8Array): Promise<DecodedBmp> {
  return new Promise((resolve, reject) => {
    // No inherited flags: under `--input-type=module` the script would be read as ESM, without `require`.
    const worker = new Worker(SCRIPT, { eval: true, execArgv: [] });
    let settled = false;
    const settle = (f: () => void) => {
      if (settled) return;
      settled = true;
      f();
      void worker.terminate();
    };
    worker.once('message', (m: DecodedBmp | { error: string }) => settle(() => ('error' in m ? reject(new Error(m.error)) : resolve(m))));
    worker.once('error', (err) => settle(() => reject(err)));
    worker.once('exit', (code) => settle(() => reject(new Error(`the BMP decoding worker exited (code ${code})`))));
    worker.postMessage(bytes, [bytes.buffer as ArrayBuffer]);
  });
}
