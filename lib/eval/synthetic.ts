/**
 * A deterministic synthetic defect dataset in MVTec AD layout, for demos and fast end-to-end
 * tests: one procedural "product" texture with per-image variation, and defective images with
 * scratches, blobs or missing areas plus their exact masks.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';

import sharp from 'sharp';

import { prng } from '../prng.js';

export { prng };

export interface SyntheticOptions {
  category?: string;
  /** Square size in pixels (default 96); `width`/`height` override it for non-square images. */
  size?: number;
  width?: number;
  height?: number;
  nTrain?: number;
  nGood?: number;
  nDefect?: number;
  seed?: number;
  channels?: 1 | 3;
}

const DEFECTS = ['scratch', 'blob', 'missing'] as const;
type Defect = (typeof DEFECTS)[number];

/** The nominal texture: three oriented gratings with per-image phase/frequency jitter and noise. [h*w] in [0,1]. */
export function makeTexture(width: number, height: number, rng: () => number): Float32Array {
  const out = new Float32Array(width * height);
  const waves = [
    { f: 0.09, theta: 0.3, a: 0.16 },
    { f: 0.17, theta: 1.9, a: 0.1 },
    { f: 0.045, theta: 1.1, a: 0.08 },
  ].map((w) => ({
    f: w.f * (1 + (rng() - 0.5) * 0.06),
    c: Math.cos(w.theta),
    s: Math.sin(w.theta),
    a: w.a,
    phase: rng() * 2 * Math.PI,
  }));
  const brightness = 0.5 + (rng() - 0.5) * 0.06;
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      let v = brightness;
      for (const w of waves) v += w.a * Math.sin(2 * Math.PI * w.f * (x * w.c + y * w.s) + w.phase);
      out[y * width + x] = v + (rng() - 0.5) * 0.04;
    }
  return out;
}

/** Draws one defect into `img` and marks it in `mask`. */
function drawDefect(kind: Defect, img: Float32Array, mask: Uint8Array, width: number, height: number, rng: () => number) {
  const size = Math.min(width, height);
  const paint = (x: number, y: number, v: number) => {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    img[y * width + x] = v;
    mask[y * width + x] = 255;
  };
  const cx = width * (0.25 + 0.5 * rng());
  const cy = height * (0.25 + 0.5 * rng());
  if (kind === 'scratch') {
    const len = size * (0.3 + 0.2 * rng());
    const angle = rng() * Math.PI;
    const half = 1 + Math.floor(rng() * 2) * 0.5; // 2-3 px wide
    const v = rng() < 0.5 ? 0.97 : 0.03;
    const dx = Math.cos(angle);
    const dy = Math.sin(angle);
    for (let y = 0; y < height; y++)
      for (let x = 0; x < width; x++) {
        const t = (x - cx) * dx + (y - cy) * dy;
        const d = Math.abs(-(x - cx) * dy + (y - cy) * dx);
        if (Math.abs(t) <= len / 2 && d <= half) paint(x, y, v);
      }
  } else if (kind === 'blob') {
    const rx = size * (0.06 + 0.04 * rng());
    const ry = size * (0.06 + 0.04 * rng());
    const v = rng() < 0.5 ? 0.92 : 0.1;
    for (let y = Math.floor(cy - ry); y <= Math.ceil(cy + ry); y++)
      for (let x = Math.floor(cx - rx); x <= Math.ceil(cx + rx); x++)
        if (((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1) paint(x, y, v);
  } else {
    const w = Math.round(size * (0.12 + 0.08 * rng()));
    const h = Math.round(size * (0.12 + 0.08 * rng()));
    for (let y = Math.round(cy - h / 2); y < Math.round(cy - h / 2) + h; y++)
      for (let x = Math.round(cx - w / 2); x < Math.round(cx - w / 2) + w; x++) paint(x, y, 0.0);
  }
}

async function writeImage(file: string, img: Float32Array, width: number, height: number, channels: 1 | 3) {
  const tint = [1.0, 0.88, 0.75]; // a coloured product, so RGB channels differ
  const data = Buffer.alloc(width * height * channels);
  for (let p = 0; p < width * height; p++)
    for (let c = 0; c < channels; c++) data[p * channels + c] = Math.max(0, Math.min(255, Math.round(img[p] * (channels === 3 ? tint[c] : 1) * 255)));
  const raw = sharp(data, { raw: { width, height, channels } });
  await (channels === 1 ? raw.toColourspace('b-w') : raw).png().toFile(file); // keep grey files 1-channel
}

async function writeMask(file: string, mask: Uint8Array, width: number, height: number) {
  await sharp(Buffer.from(mask), { raw: { width, height, channels: 1 } }).toColourspace('b-w').png().toFile(file);
}

/**
 * Writes `<root>/<category>/{train/good, test/good, test/<defect>, ground_truth/<defect>}`.
 * The same options always give byte-identical files.
 */
export async function makeSyntheticDataset(root: string, opts: SyntheticOptions = {}): Promise<{ root: string; category: string }> {
  const { category = 'synthetic', size = 96, nTrain = 24, nGood = 8, nDefect = 12, seed = 1, channels = 3 } = opts;
  const width = opts.width ?? size;
  const height = opts.height ?? size;
  const rng = prng(seed);
  const base = path.join(root, category);
  const dirs = ['train/good', 'test/good', ...DEFECTS.flatMap((d) => [`test/${d}`, `ground_truth/${d}`])];
  for (const d of dirs) await mkdir(path.join(base, d), { recursive: true });
  const name = (i: number) => `${String(i).padStart(3, '0')}.png`;
  for (let i = 0; i < nTrain; i++) await writeImage(path.join(base, 'train/good', name(i)), makeTexture(width, height, rng), width, height, channels);
  for (let i = 0; i < nGood; i++) await writeImage(path.join(base, 'test/good', name(i)), makeTexture(width, height, rng), width, height, channels);
  for (let i = 0; i < nDefect; i++) {
    const kind = DEFECTS[i % DEFECTS.length];
    const img = makeTexture(width, height, rng);
    const mask = new Uint8Array(width * height);
    drawDefect(kind, img, mask, width, height, rng);
    await writeImage(path.join(base, `test/${kind}`, name(i)), img, width, height, channels);
    await writeMask(path.join(base, `ground_truth/${kind}`, `${String(i).padStart(3, '0')}_mask.png`), mask, width, height);
  }
  return { root, category };
}
