/**
 * Any image input -> a raw frame ({@link RawFrame}: HWC uint8, 1 or 3 channels). Encoded images
 * (PNG, JPEG, TIFF, WebP...) are decoded with sharp, BMP by lib/bmp.ts (sharp has no BMP loader),
 * plain 8-bit PNGs by lib/io/png.ts (faster than sharp for them, the same pixels); the addon only
 * ever sees raw pixels.
 */
import sharp, { type Metadata } from 'sharp';

import { bmpSize, isBmp } from './bmp.js';
import { decodeBmpOffThread } from './bmp_worker.js';
import { decodeSimplePng, simplePngHeader } from './png.js';
import { readRegularFile } from './regular_file.js';
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

/**
 * How a damaged encoded image is treated (sharp's `failOn`): refused at any decoder `'warning'`
 * (the default: e.g. "Corrupt JPEG data"), only at an `'error'`, only when `'truncated'`, or
 * decoded as far as possible (`'none'`).
 * @example
 * const lenient: FailOn = 'error'; // accept JPEGs with corrupt data that libjpeg can still decode
 * const engine = await Engine.create({ backbone: 'random_cnn', input: { failOn: lenient } });
 */
export type FailOn = 'none' | 'truncated' | 'error' | 'warning';

/**
 * What an engine accepts as input. Runtime options, like `batching`: not saved with a model; pass
 * them to `Engine.create` and again to `Engine.load`.
 * @example
 * const engine = await Engine.load('part.rcp', { input: { maxPixels: 150_000_000, failOn: 'error' } });
 */
export interface InputOptions {
  /**
   * Largest image accepted, in pixels (width × height; default 67,108,864 = 8192 × 8192). Checked
   * from the header before anything is decoded, for every input kind (for an engine, so are the
   * smallest sides: 8 pixels). Image files may have at most 8 bytes per allowed pixel (at least 64 MiB).
   */
  maxPixels?: number;
  /**
   * Largest image after the engine's resize (before the crop), in pixels (default 4,194,304 =
   * 2048 × 2048): what the backbone works on. Checked from the header before decoding, so an
   * extreme aspect ratio (`resizeMode: 'shorter'`), a model's large `resize` or an unresized
   * large image is refused at once instead of asking for gigabytes. At most `maxPixels`.
   */
  maxResizedPixels?: number;
  /** When a damaged encoded image is refused (default `'warning'`); see {@link FailOn}. */
  failOn?: FailOn;
}

/**
 * The defaults of {@link InputOptions}.
 * @example
 * const twice = await Engine.load('part.rcp', { input: { maxPixels: 2 * INPUT_DEFAULTS.maxPixels } });
 */
export const INPUT_DEFAULTS: Readonly<Required<InputOptions>> = Object.freeze({ maxPixels: 8192 * 8192, maxResizedPixels: 2048 * 2048, failOn: 'warning' });

/** The smallest side an image may have (the native preprocessing's minimum, core/pipeline/image.cc). */
const MIN_SIDE = 8;

const FAIL_ON: readonly FailOn[] = ['none', 'truncated', 'error', 'warning'];

/** How an engine that takes the frame resizes it (its native options; `resize` 0 = none). */
export interface ResizePlan {
  resize: number;
  resizeMode: 'area' | 'shorter' | 'squash';
  /** false: an image with fewer pixels than the target keeps its size (default true). */
  upscale?: boolean;
}

/** Everything decoding checks: the input options and the resizes of the engines the frame is for. */
export interface DecodePolicy extends Required<InputOptions> {
  resizes: readonly ResizePlan[];
}

/** Validates {@link InputOptions} and fills the defaults. Throws ERR_INVALID_OPTION. */
export function resolveInput(value: InputOptions | undefined): Required<InputOptions> {
  const bad = (message: string) => new ReconpatchError('ERR_INVALID_OPTION', message);
  if (value === undefined) return { ...INPUT_DEFAULTS };
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw bad('input must be an object { maxPixels, maxResizedPixels, failOn }');
  for (const key of Object.keys(value)) if (!(key in INPUT_DEFAULTS)) throw bad(`unknown input option '${key}'`);
  const { maxPixels = INPUT_DEFAULTS.maxPixels, failOn = INPUT_DEFAULTS.failOn } = value;
  if (!Number.isInteger(maxPixels) || maxPixels < 64 || maxPixels > 2 ** 32)
    throw bad(`input.maxPixels must be an integer in [64, ${2 ** 32}], got ${JSON.stringify(maxPixels)}`);
  const maxResizedPixels = value.maxResizedPixels ?? Math.min(maxPixels, INPUT_DEFAULTS.maxResizedPixels);
  if (!Number.isInteger(maxResizedPixels) || maxResizedPixels < 64 || maxResizedPixels > maxPixels)
    throw bad(`input.maxResizedPixels must be an integer in [64, maxPixels = ${maxPixels}], got ${JSON.stringify(maxResizedPixels)}`);
  if (!FAIL_ON.includes(failOn)) throw bad(`input.failOn must be one of ${FAIL_ON.map((f) => `'${f}'`).join(', ')}, got ${JSON.stringify(failOn)}`);
  return { maxPixels, maxResizedPixels, failOn };
}

/** The size the native preprocessing resizes a width x height image to (core/pipeline/image.cc, planGeometry). */
export function resizedSize(width: number, height: number, plan: ResizePlan): [number, number] {
  const [w, h] = targetSize(width, height, plan);
  return plan.upscale === false && w * h > width * height ? [width, height] : [w, h];
}

function targetSize(width: number, height: number, { resize, resizeMode }: ResizePlan): [number, number] {
  if (resize <= 0) return [width, height];
  if (resizeMode === 'squash') return [resize, resize];
  if (resizeMode === 'area') {
    // About resize^2 pixels, aspect kept, each side even.
    const scale = resize / Math.sqrt(width * height);
    return [Math.max(2, 2 * Math.round((width * scale) / 2)), Math.max(2, 2 * Math.round((height * scale) / 2))];
  }
  // torchvision Resize(int): the shorter side becomes `resize`, the longer is scaled and floored.
  return height <= width ? [Math.floor((resize * width) / height), resize] : [resize, Math.floor((resize * height) / width)];
}

// Formats decoded with sharp (what sharp reads from memory, less SVG: a text format rendered at
// any size, with references to other files; nothing an inspection camera writes).
const FORMATS = new Set(['jpeg', 'png', 'webp', 'tiff', 'gif', 'heif']);

/**
 * Throws ERR_INVALID_IMAGE when a width x height image is over the pixel budget or, for an
 * engine, under the smallest side or over the resized budget once resized. Called with the header's size,
 * before any pixel is decoded.
 */
function checkSize(width: number, height: number, label: string, policy: DecodePolicy): void {
  const { maxPixels, maxResizedPixels } = policy;
  const pixels = width * height;
  if (pixels > maxPixels)
    throw invalid(`${label} is ${width}x${height} = ${pixels} pixels, over the input limit of ${maxPixels} pixels (option input.maxPixels)`);
  // An engine embeds nothing smaller (toRawFrame on its own, with no resize plan, decodes any size).
  if (policy.resizes.length > 0 && (width < MIN_SIDE || height < MIN_SIDE))
    throw invalid(`${label} is ${width}x${height}; the engine needs at least ${MIN_SIDE} pixels on each side`);
  for (const plan of policy.resizes) {
    const [w, h] = resizedSize(width, height, plan);
    if (w * h > maxResizedPixels) {
      const why = plan.resize <= 0 ? 'the engine does not resize (resize: null)' : `resize ${plan.resize}, resizeMode '${plan.resizeMode}'`;
      throw invalid(
        `${label} (${width}x${height}) would be resized to ${w}x${h} = ${w * h} pixels (${why}), over the limit of ${maxResizedPixels} ` +
          'pixels for the resized image (option input.maxResizedPixels): its aspect ratio is too extreme for this resize, or the resize too large',
      );
    }
  }
}

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

function fromRaw(img: RawImage, label: string, policy: DecodePolicy): RawFrame {
  const { data, width, height, channels } = img;
  if (!(data instanceof Uint8Array)) throw invalid(`${label}: raw frame data must be a Uint8Array (or Buffer)`);
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1)
    throw invalid(`${label}: raw frame width and height must be positive integers, got ${width}x${height}`);
  if (![1, 2, 3, 4].includes(channels))
    throw invalid(`${label}: raw frame channels must be 1, 2, 3 or 4, got ${String(channels)}`);
  if (data.length !== width * height * channels)
    throw invalid(`${label}: raw frame has ${data.length} bytes but ${width}x${height}x${channels} needs ${width * height * channels}`);
  checkSize(width, height, label, policy);
  if (channels === 1 || channels === 3) return { data, width, height, channels };
  // Drop the alpha channel: grey+alpha -> grey, RGBA -> RGB.
  const keep = channels - 1;
  const out = new Uint8Array(width * height * keep);
  for (let p = 0, q = 0; p < data.length; p += channels, q += keep) {
    for (let c = 0; c < keep; c++) out[q + c] = data[p + c];
  }
  return { data: out, width, height, channels: keep as 1 | 3 };
}

/** `owned`: `bytes` were read here and may be handed to a worker as they are (see decodeBmpOffThread). */
async function decode(bytes: Uint8Array, label: string, policy: DecodePolicy, owned = false): Promise<RawFrame> {
  if (isBmp(bytes)) {
    const size = bmpSize(bytes);
    if (size && size.width > 0 && size.height > 0) checkSize(size.width, size.height, label, policy);
    try {
      return await decodeBmpOffThread(bytes, owned);
    } catch (err) {
      throw invalid(`${label} could not be decoded as a BMP (${(err as Error).message})`, err);
    }
  }
  const png = simplePngHeader(bytes);
  if (png) {
    checkSize(png.width, png.height, label, policy);
    const frame = await decodeSimplePng(bytes);
    if (frame) return frame;
  }
  const { failOn, maxPixels } = policy;
  const open = () => sharp(bytes, { failOn, limitInputPixels: maxPixels });
  const undecodable = (err: unknown) => {
    const why = err instanceof Error ? err.message : String(err);
    return invalid(`${label} could not be decoded as an image (${why}); pass a PNG, JPEG, BMP or TIFF, or a raw frame`, err);
  };
  // The header first: the format and the size are checked before any pixel is decoded (sharp's
  // own pixel limit would refuse the header too, without saying which limit).
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { failOn, limitInputPixels: false }).metadata();
  } catch (err) {
    throw undecodable(err);
  }
  if (!meta.format || !FORMATS.has(meta.format))
    throw invalid(`${label} is ${meta.format ? `a '${meta.format}' image` : 'of an unknown format'}; pass a PNG, JPEG, BMP, TIFF, WebP, GIF or AVIF image, or a raw frame`);
  if (!meta.width || !meta.height) throw invalid(`${label} has no size in its header`);
  checkSize(meta.width, meta.height, label, policy);
  try {
    let { data, info } = await open().removeAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 1 && info.channels !== 3) {
      // CMYK and other spaces: convert to sRGB.
      ({ data, info } = await open().toColourspace('srgb').removeAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true }));
    }
    return { data, width: info.width, height: info.height, channels: info.channels as 1 | 3 };
  } catch (err) {
    throw undecodable(err);
  }
}

/**
 * Normalises any {@link ImageInput} to a raw frame, within the limits of `policy` (by default
 * {@link INPUT_DEFAULTS}, no resize). Throws ERR_INVALID_IMAGE naming the input and, for a limit,
 * which one.
 * @example
 * const frame = await toRawFrame('parts/0001.png');   // { data, width, height, channels: 3 }
 */
export async function toRawFrame(input: ImageInput, index?: number, policy: Partial<DecodePolicy> = {}): Promise<RawFrame> {
  const label = describeInput(input, index);
  const { resizes = [], ...limits } = policy;
  const p: DecodePolicy = { ...resolveInput(limits), resizes };
  if (typeof input === 'string') {
    const maxBytes = Math.max(64 * 2 ** 20, 8 * p.maxPixels);
    const bytes = await readRegularFile(input, maxBytes, (why, cause) => invalid(`${label} cannot be read: ${why}`, cause));
    if (bytes.length === 0) throw invalid(`${label} is an empty file`);
    return decode(bytes, label, p, true);
  }
  if (input instanceof Uint8Array) {
    if (input.length === 0) throw invalid(`${label} is an empty buffer`);
    return decode(input, label, p);
  }
  if (isRawImage(input)) {
    let frame: RawImage;
    try {
      // Read the caller's object once: a getter that throws is a bad frame, not our failure.
      const { data, width, height, channels } = input;
      frame = { data, width, height, channels };
    } catch (err) {
      throw invalid(`${label}: reading the raw frame's fields threw (${err instanceof Error ? err.message : String(err)})`, err);
    }
    return fromRaw(frame, label, p);
  }
  throw invalid(`${label}: expected a file path, a Buffer of an encoded image, or a raw frame {data, width, height, channels}`);
}
