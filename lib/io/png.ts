/**
 * The PNGs a camera or a dataset writes (8-bit grey, grey+alpha, RGB or RGBA, not interlaced, no
 * colour profile) decoded without sharp: Node's zlib inflates the pixels on the libuv pool and the
 * addon undoes the row filters there too (native/core/io/png_filters.h). Every other PNG, and any
 * PNG this code doubts (a bad CRC, a short or long zlib stream, an unknown chunk or filter), is
 * left to sharp, so what is accepted and what is refused stays sharp's. Why: sharp took ~7 ms for
 * a 512² RGB PNG where the inflate takes ~2.5 (bench/NOTES.md, "Where a score's time goes").
 */
import { promisify } from 'node:util';
import zlib from 'node:zlib';

import { native, type NativeModule } from '../native.js';

const inflate = promisify(zlib.inflate);

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

// Chunks that change no pixel of an 8-bit non-palette PNG as sharp decodes it (sharp applies no
// gamma: MVTec's screw images carry gAMA; test/png.test.ts checks it). Anything else (iCCP, cHRM,
// sBIT, tRNS, PLTE, unknown chunks...) goes to sharp.
const HARMLESS = new Set(['tEXt', 'zTXt', 'iTXt', 'pHYs', 'tIME', 'sRGB', 'gAMA']);

// The chunk walk, the CRCs and the join of the IDAT data run on the event loop: past these the file
// goes to sharp, which reads it off the loop (a 16 MiB PNG costs ~3 ms here; a 512² camera frame
// ~0.1 ms). Typical encoders write 8-64 KiB IDAT chunks.
export const SIMPLE_PNG_MAX_BYTES = 16 << 20;
const MAX_CHUNKS = 8192;

// Colour type -> channels in the file.
const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 4: 2, 6: 4 };

/** Size and colour type from the header of a PNG this module decodes; undefined for any other bytes. */
export interface SimplePngHeader {
  width: number;
  height: number;
  /** Channels in the file: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA. */
  channels: number;
}

/**
 * The header of a PNG this module decodes (IHDR: 8-bit, colour type 0, 2, 4 or 6, not
 * interlaced), or undefined (another format, another kind of PNG, a damaged header).
 * @example
 * const header = simplePngHeader(bytes);   // { width: 512, height: 512, channels: 3 }
 */
export function simplePngHeader(bytes: Uint8Array): SimplePngHeader | undefined {
  if (bytes.length < 33) return undefined;
  for (let i = 0; i < 8; i++) if (bytes[i] !== SIGNATURE[i]) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(8) !== 13 || chunkType(bytes, 12) !== 'IHDR') return undefined;
  const width = view.getUint32(16);
  const height = view.getUint32(20);
  const [depth, colour, compression, filter, interlace] = bytes.subarray(24, 29);
  const channels = CHANNELS[colour];
  if (width < 1 || height < 1 || width > 2 ** 31 - 1 || height > 2 ** 31 - 1) return undefined;
  if (depth !== 8 || channels === undefined || compression !== 0 || filter !== 0 || interlace !== 0) return undefined;
  return { width, height, channels };
}

function chunkType(bytes: Uint8Array, at: number): string {
  return String.fromCharCode(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]);
}

/**
 * Decodes a PNG that {@link simplePngHeader} accepts, alpha dropped and grey made RGB: HWC uint8,
 * 3 channels, as sharp's `.removeAlpha().raw()` gives it (sharp's output is sRGB). Undefined when the file is anything this module
 * leaves to sharp. The caller checks the header's size against its limits first: the inflate
 * never writes more than the header's pixels.
 * @example
 * const frame = (await decodeSimplePng(bytes)) ?? (await decodeWithSharp(bytes));
 */
export async function decodeSimplePng(
  bytes: Uint8Array,
): Promise<{ data: Uint8Array; width: number; height: number; channels: 3 } | undefined> {
  const header = simplePngHeader(bytes);
  if (!header || bytes.length > SIMPLE_PNG_MAX_BYTES) return undefined;
  const { width, height, channels } = header;
  const idat = pixelStream(bytes);
  if (!idat) return undefined;
  const stride = width * channels;
  const expected = height * (stride + 1);
  let filtered: Buffer;
  try {
    // One byte over: a stream that holds more than the header's pixels fails here. One chunk:
    // Node's default (16 KiB) costs a pool round trip per chunk, ~1.5 ms for 768 KiB.
    filtered = await inflate(idat, { maxOutputLength: expected + 1, chunkSize: Math.max(64, Math.min(expected + 1, 1 << 30)) });
  } catch {
    return undefined;
  }
  if (filtered.length !== expected) return undefined;
  const unfilter = nativeUnfilter();
  if (!unfilter) return undefined;
  const out = await unfilter(filtered, width, height, channels);
  if (!out) return undefined;
  return { data: out, width, height, channels: 3 };
}

/** The IDAT chunks' bytes, once every chunk's CRC is checked; undefined when something is off. */
function pixelStream(bytes: Uint8Array): Buffer | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const parts: Uint8Array[] = [];
  let at = 8;
  let seenIdat = false;
  let idatEnded = false;
  for (let chunks = 0; at + 12 <= bytes.length; chunks++) {
    if (chunks >= MAX_CHUNKS) return undefined;
    const length = view.getUint32(at);
    const type = chunkType(bytes, at + 4);
    const end = at + 12 + length;
    if (length > 2 ** 31 - 1 || end > bytes.length) return undefined;
    const crc = view.getUint32(at + 8 + length);
    if (zlib.crc32(bytes.subarray(at + 4, at + 8 + length)) !== crc) return undefined;
    if (type === 'IEND') return seenIdat && length === 0 ? Buffer.concat(parts) : undefined;
    if (type === 'IDAT') {
      if (idatEnded) return undefined;  // IDAT chunks must be consecutive
      seenIdat = true;
      parts.push(bytes.subarray(at + 8, at + 8 + length));
    } else {
      if (seenIdat) idatEnded = true;
      if (type !== 'IHDR' || at !== 8) {
        if (!HARMLESS.has(type)) return undefined;
      }
    }
    at = end;
  }
  return undefined;  // no IEND
}

let unfilterFn: NativeModule['unfilterPng'] | null | undefined;

/** The addon's unfilter, or null when the addon cannot load here (then sharp decodes every PNG). */
function nativeUnfilter(): NativeModule['unfilterPng'] | null {
  if (unfilterFn === undefined) {
    try {
      const mod = native();
      unfilterFn = mod.unfilterPng.bind(mod);
    } catch {
      unfilterFn = null;
    }
  }
  return unfilterFn;
}
