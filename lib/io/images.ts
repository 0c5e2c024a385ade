/**
 * Any image input -> a raw frame ({@link RawFrame}: HWC uint8, 1 or 3 channels). Encoded images
 * (PNG, JPEG, TIFF, WebP...) are decoded with sharp, BMP by lib/bmp.ts (sharp has no BMP loader);
 * the addon only ever sees raw pixels.
 */
import { readFile } from 'node:fs/promises';

import sharp from 'sharp';

import { decodeBmp, isBmp } from './bmp.js';
import { ReconpatchError } from '../errors.js';
import type { RawFrame } from '../native.js';

/**
 * A raw frame from a camera SDK or sharp's `.raw()`: HWC, `channels` 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA).
 * @example
 * const grey: RawImage = { data: new Uint8Array(640 * 480), width: 640, height: 480, channels: 1 };
 * const result = await engine.score(grey);
 */
export interface RawImage {
  /** Pixels, row-major, channels interleaved, no row padding: `width * height * channels` bytes. */
  data: Uint8Array;
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
  /** Interleaved channels per pixel. */
  channels: 1 | 2 | 3 | 4;
}

/**
 * What the engine accepts as an image: a file path, an encoded image in a Buffer, or a raw frame.
 * @example
 * const inputs: ImageInput[] = ['part.png', await import('node:fs/promises').then((fs) => fs.readFile('part.jpg'))];
 */
export type ImageInput = string | Uint8Array | RawImage;

/** Decoding limit against decompression bombs (sharp's default: 0x3FFF * 0x3FFF pixels). */
const PIXEL_LIMIT = 268402689;

function invalid(message: string, cause?: unknown): ReconpatchError {
  return new ReconpatchError('ERR_INVALID_IMAGE', message, { cause });
}

/** A short name for an input in error messages. */
export function describeInput(input: unknown, index?: number): string {
  if (typeof input === 'string') return `'${input}'`;
  return index === undefined ? 'image' : `image #${index}`;
}

function isRawImage(x: unknown): x is RawImage {
  return typeof x === 'object' && x !== null && !(x instanceof Uint8Array) && 'data' in x && 'width' in x;
}

function fromRaw(img: RawImage, label: string): RawFrame {
  const { data, width, height, channels } = img;
  if (!(data instanceof Uint8Array)) throw invalid(`${label}: raw frame data must be a Uint8Array (or Buffer)`);
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1)
    throw invalid(`${label}: raw frame width and height must be positive integers, got ${width}x${height}`);
  if (![1, 2, 3, 4].includes(channels))
    throw invalid(`${label}: raw frame channels must be 1, 2, 3 or 4, got ${String(channels)}`);
  if (data.length !== width * height * channels)
    throw invalid(`${label}: raw frame has ${data.length} bytes but ${width}x${height}x${channels} needs ${width * height * channels}`);
  if (channels === 1 || channels === 3) return { data, width, height, channels };
  // Drop the alpha channel: grey+alpha -> grey, RGBA -> RGB.
  const keep = channels - 1;
  const out = new Uint8Array(width * height * keep);
  for (let p = 0, q = 0; p < data.length; p += channels, q += keep) {
    for (let c = 0; c < keep; c++) out[q + c] = data[p + c];
  }
  return { data: out, width, height, channels: keep as 1 | 3 };
}

async function decode(bytes: Uint8Array, label: string): Promise<RawFrame> {
  if (isBmp(bytes)) {
    try {
      return decodeBmp(bytes);
    } catch (err) {
      throw invalid(`${label} could not be decoded as a BMP (${(err as Error).message})`, err);
    }
  }
  const open = () => sharp(bytes, { failOn: 'error', limitInputPixels: PIXEL_LIMIT });
  try {
    let { data, info } = await open().removeAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 1 && info.channels !== 3) {
      // CMYK and other spaces: convert to sRGB.
      ({ data, info } = await open().toColourspace('srgb').removeAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true }));
    }
    return { data, width: info.width, height: info.height, channels: info.channels as 1 | 3 };
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw invalid(`${label} could not be decoded as an image (${why}); pass a PNG, JPEG, BMP or TIFF, or a raw frame`, err);
  }
}

/**
 * Normalises any {@link ImageInput} to a raw frame. Throws ERR_INVALID_IMAGE naming the input.
 * @example
 * const frame = await toRawFrame('parts/0001.png');   // { data, width, height, channels: 3 }
 */
export async function toRawFrame(input: ImageInput, index?: number): Promise<RawFrame> {
  const label = describeInput(input, index);
  if (typeof input === 'string') {
    let bytes: Buffer;
    try {
      bytes = await readFile(input);
    } catch (err) {
      throw invalid(`${label} cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`, err);
    }
    return decode(bytes, label);
  }
  if (input instanceof Uint8Array) {
    if (input.length === 0) throw invalid(`${label} is an empty buffer`);
    return decode(input, label);
  }
  if (isRawImage(input)) return fromRaw(input, label);
  throw invalid(`${label}: expected a file path, a Buffer of an encoded image, or a raw frame {data, width, height, channels}`);
}
