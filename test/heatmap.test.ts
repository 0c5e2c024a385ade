// Heatmaps an operator reads at a glance: untinted below the floor, contours around every region
// above the pixel threshold, uninspected pixels hatched, the verdict on a banner and frame.
import { readFileSync } from 'node:fs';
import path from 'node:path';

import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';

import type { Calibration } from '../lib/calibration.js';
import { readMask } from '../lib/eval/dataset.js';
import { heatmapLayout, heatmapRgb } from '../lib/heatmap.js';
import { Engine } from '../lib/index.js';
import type { RawFrame } from '../lib/native.js';
import { syntheticDataset, tempDir } from './support/data.js';

const W = 64;
const H = 48;
const image: RawFrame = { data: new Uint8Array(W * H * 3).fill(100), width: W, height: H, channels: 3 };
const calibration = { threshold: 10, pixelThreshold: 8, pixelFloor: 4, low: 1 } as Calibration;
const L = heatmapLayout(W, H);
const pixel = (rgb: Uint8Array, x: number, y: number) => Array.from(rgb.subarray(((y + L.banner) * L.width + x + L.frame) * 3, ((y + L.banner) * L.width + x + L.frame) * 3 + 3));

/** A map of `base` with a square of `value` at [x0, x0 + size) x [y0, y0 + size). */
function mapWith(base: number, x0: number, y0: number, size: number, value: number): Float32Array {
  const m = new Float32Array(W * H).fill(base);
  for (let y = y0; y < y0 + size; y++) for (let x = x0; x < x0 + size; x++) m[y * W + x] = value;
  return m;
}

describe('heatmap drawing', () => {
  it('leaves normal areas untinted, tints above the floor, and outlines a region above the pixel threshold with 2 px', () => {
    const map = mapWith(2, 20, 20, 6, 9); // one 6 x 6 region above the pixel threshold (8)
    map[5 * W + 5] = 6; // one pixel between floor and threshold: tinted, no contour
    const { data, width, height } = heatmapRgb(image, map, calibration, { score: 12, normalizedScore: 0.61, isAnomaly: true });
    expect([width, height]).toEqual([L.width, L.height]);
    expect(pixel(data, 0, 0)).toEqual([100, 100, 100]); // below the floor: the image itself
    expect(pixel(data, 40, 40)).toEqual([100, 100, 100]);
    const tinted = pixel(data, 5, 5);
    expect(tinted[0]).toBeGreaterThan(100);
    expect(tinted[2]).toBeLessThan(100);
    // The contour: white just inside the region's edge, black just outside, on every side.
    for (const [x, y] of [[20, 22], [25, 22], [22, 20], [22, 25]]) expect(pixel(data, x, y)).toEqual([255, 255, 255]);
    for (const [x, y] of [[19, 22], [26, 22], [22, 19], [22, 26]]) expect(pixel(data, x, y)).toEqual([0, 0, 0]);
    // Inside, red.
    const inside = pixel(data, 22, 22);
    expect(inside[0]).toBeGreaterThan(inside[1] + 60);
    // Flagged: a red frame and banner.
    expect(Array.from(data.subarray(0, 3))).toEqual([200, 16, 16]);
    const bottomFrame = (L.height - L.legend - 1) * L.width + L.width - 1;
    expect(Array.from(data.subarray(bottomFrame * 3, bottomFrame * 3 + 3))).toEqual([200, 16, 16]);
  });

  it('outlines even a single pixel above the threshold, and marks a flagged image that has no such region', () => {
    const one = heatmapRgb(image, mapWith(2, 30, 30, 1, 9), calibration, { score: 12, normalizedScore: 0.6, isAnomaly: true });
    expect(pixel(one.data, 30, 30)).toEqual([255, 255, 255]);
    expect(pixel(one.data, 31, 30)).toEqual([0, 0, 0]);
    const none = heatmapRgb(image, mapWith(2, 0, 0, 0, 0), calibration, { score: 11, normalizedScore: 0.65, isAnomaly: true });
    expect(Array.from(none.data.subarray(0, 3))).toEqual([200, 16, 16]);
    const ok = heatmapRgb(image, mapWith(2, 0, 0, 0, 0), calibration, { score: 3, normalizedScore: 0.2, isAnomaly: false });
    expect(Array.from(ok.data.subarray(0, 3))).toEqual([24, 110, 48]);
  });

  it('marks a score near the threshold as borderline: an amber banner over the verdict-coloured frame', () => {
    const last = (rgb: Uint8Array) => Array.from(rgb.subarray(((L.height - L.legend) * L.width - 1) * 3, (L.height - L.legend) * L.width * 3)); // the frame's last pixel
    for (const [normalizedScore, isAnomaly, frame] of [[0.55, true, [200, 16, 16]], [0.45, false, [24, 110, 48]], [0.6, true, [200, 16, 16]]] as const) {
      const { data } = heatmapRgb(image, mapWith(2, 0, 0, 0, 0), calibration, { score: 10, normalizedScore, isAnomaly });
      expect(Array.from(data.subarray(0, 3)), String(normalizedScore)).toEqual([196, 118, 0]);
      expect(last(data), String(normalizedScore)).toEqual(frame);
    }
    for (const normalizedScore of [0.39, 0.61]) {
      const { data } = heatmapRgb(image, mapWith(2, 0, 0, 0, 0), calibration, { score: 10, normalizedScore, isAnomaly: normalizedScore > 0.5 });
      expect(Array.from(data.subarray(0, 3))).toEqual(normalizedScore > 0.5 ? [200, 16, 16] : [24, 110, 48]);
    }
  });

  it('draws a legend below the frame: the tint from the floor up to a white tick at the pixel threshold, and the model when there is room', () => {
    const wide: RawFrame = { data: new Uint8Array(200 * 60 * 3).fill(100), width: 200, height: 60, channels: 3 };
    const WL = heatmapLayout(200, 60);
    const { data } = heatmapRgb(wide, new Float32Array(200 * 60).fill(2), calibration, { score: 3, normalizedScore: 0.2, isAnomaly: false, model: { id: 'plate', version: '0123456789abcdef' } });
    const row = WL.height - WL.legend + 2 * WL.scale;
    const at = (x: number) => Array.from(data.subarray((row * WL.width + x) * 3, (row * WL.width + x) * 3 + 3));
    const strip = Array.from({ length: WL.width }, (_, x) => at(x)).filter(([r, g, b]) => r > 60 && r !== g); // tinted pixels: not grey, not white
    expect(strip.length).toBeGreaterThanOrEqual(20);
    expect(strip[0][1]).toBeGreaterThan(strip[strip.length - 1][1]); // from yellowish to red
    expect(Array.from({ length: WL.width }, (_, x) => at(x)).filter(([r, g, b]) => r === 255 && g === 255 && b === 255).length).toBeGreaterThan(0);
    // "MODEL PLATE 01234567" on the left: white text pixels in the first third.
    let text = 0;
    for (let y = WL.height - WL.legend; y < WL.height; y++) for (let x = 0; x < WL.width / 3; x++) if (data[(y * WL.width + x) * 3] === 255) text++;
    expect(text).toBeGreaterThan(20);
  });

  it('writes the image\'s name at the banner\'s right end (the score shortened to make room), cut from the left when long', () => {
    const wide: RawFrame = { data: new Uint8Array(300 * 60 * 3).fill(100), width: 300, height: 60, channels: 3 };
    const WL = heatmapLayout(300, 60);
    const white = (rgb: Uint8Array, x0: number, x1: number) => {
      let n = 0;
      for (let y = 0; y < WL.banner; y++) for (let x = x0; x < x1; x++) if (rgb[(y * WL.width + x) * 3] === 255 && rgb[(y * WL.width + x) * 3 + 1] === 255) n++;
      return n;
    };
    const verdict = { score: 3, normalizedScore: 0.2, isAnomaly: false };
    const plain = heatmapRgb(wide, new Float32Array(300 * 60).fill(2), calibration, verdict).data;
    const named = heatmapRgb(wide, new Float32Array(300 * 60).fill(2), calibration, { ...verdict, source: 'part_0042.png' }).data;
    const right = [Math.round(WL.width * 0.75), WL.width] as const;
    const left = [0, 2 * WL.scale + 12 * WL.scale] as const; // the verdict's word, 'OK'
    expect(white(named, ...right)).toBeGreaterThan(white(plain, ...right) + 40);
    expect(white(named, ...left)).toBe(white(plain, ...left)); // the verdict stays first
    // A name too long for the room keeps its end and stays inside the banner, after the verdict.
    const long = heatmapRgb(wide, new Float32Array(300 * 60).fill(2), calibration, { ...verdict, source: `${'x'.repeat(300)}.png` }).data;
    expect(white(long, ...right)).toBeGreaterThan(white(plain, ...right) + 40);
    expect(white(long, ...left)).toBe(white(plain, ...left));
  });

  it('shows the tint as plainly on a rust-coloured part as on a grey one of the same brightness', () => {
    const flat = (rgb: [number, number, number]): RawFrame => {
      const data = new Uint8Array(W * H * 3);
      for (let p = 0; p < W * H; p++) data.set(rgb, p * 3);
      return { data, width: W, height: H, channels: 3 };
    };
    const rust: [number, number, number] = [150, 70, 30];
    const lum = Math.round(0.299 * rust[0] + 0.587 * rust[1] + 0.114 * rust[2]);
    const map = mapWith(2, 10, 10, 20, 7); // between the floor (4) and the pixel threshold (8): tinted, no contour
    const verdict = { score: 3, normalizedScore: 0.2, isAnomaly: false };
    const moved = (base: [number, number, number]) => {
      const { data } = heatmapRgb(flat(base), map, calibration, verdict);
      expect(pixel(data, 40, 40)).toEqual(base); // untinted outside
      const px = pixel(data, 20, 20);
      return Math.hypot(px[0] - base[0], px[1] - base[1], px[2] - base[2]);
    };
    const onGrey = moved([lum, lum, lum]);
    const onRust = moved(rust);
    expect(onGrey).toBeGreaterThan(40);
    // With a fixed opacity the rust pixel moved 0.61 x as far as the grey one (48 vs 78 RGB units, before this rule).
    expect(onRust).toBeGreaterThan(0.95 * onGrey);
  });

  it('hatches pixels that were not inspected (NaN)', () => {
    const map = mapWith(2, 0, 0, 0, 0);
    for (let y = 0; y < H; y++) for (let x = 0; x < 10; x++) map[y * W + x] = Number.NaN;
    const { data } = heatmapRgb(image, map, calibration, { score: 3, normalizedScore: 0.2, isAnomaly: false });
    const greys = new Set<string>();
    for (let y = 0; y < H; y++) for (let x = 0; x < 10; x++) {
      const [r, g, b] = pixel(data, x, y);
      expect(r === g && g === b).toBe(true);
      greys.add(`${r}`);
    }
    expect(greys.size).toBe(2); // grey and its darker stripes
    expect(pixel(data, 20, 20)).toEqual([100, 100, 100]);
  });
});

describe('heatmaps of a calibrated engine', () => {
  let engine: Engine;
  let data: Awaited<ReturnType<typeof syntheticDataset>>;
  beforeAll(async () => {
    data = await syntheticDataset();
    engine = await Engine.create({ head: false, backbone: 'random_cnn', resize: null, coreset: { ratio: 0.25 } });
    await engine.fit(data.train);
  });

  it('names a file given as a path in the banner; bytes get the name from the label option', async () => {
    // A wide frame: a 96 px image's banner has no room beside the verdict.
    const file = path.join(tempDir('heatmap'), 'wide_part.png');
    await sharp(data.test[0].path).resize(400, 96, { fit: 'fill' }).png().toFile(file);
    const bytes = readFileSync(file);
    const fromPath = (await engine.score(file, { heatmap: 'png' })).heatmap!;
    const unnamed = (await engine.score(bytes, { heatmap: 'png' })).heatmap!;
    const labelled = (await engine.score(bytes, { heatmap: 'png', label: 'wide_part.png' })).heatmap!;
    expect(labelled.equals(fromPath)).toBe(true);
    expect(unnamed.equals(fromPath)).toBe(false);
    expect((await engine.scoreMany([file], { heatmap: 'png' }))[0].heatmap!.equals(fromPath)).toBe(true);
    await expect(engine.score(bytes, { label: 'x'.repeat(201) })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
  });

  it('is hottest on the defect and leaves a good part mostly untouched', async () => {
    const defect = data.test.find((t) => t.label === 1 && t.defect === 'blob');
    const good = data.test.find((t) => t.label === 0);
    if (!defect?.maskPath || !good) throw new Error('synthetic set without a blob defect or a good image');
    const lay = heatmapLayout(96, 96);
    const read = async (p: string) => {
      const r = await engine.score(p, { heatmap: 'png' });
      const { data: rgb, info } = await sharp(r.heatmap as Buffer).raw().toBuffer({ resolveWithObject: true });
      expect([info.width, info.height]).toEqual([lay.width, lay.height]);
      return { r, at: (x: number, y: number) => Array.from(rgb.subarray(((y + lay.banner) * lay.width + x + lay.frame) * 3, ((y + lay.banner) * lay.width + x + lay.frame) * 3 + 3)) };
    };
    const d = await read(defect.path);
    expect(d.r.isAnomaly).toBe(true);
    const mask = await readMask(defect.maskPath, 96, 96);
    const original = await sharp(defect.path).removeAlpha().toColourspace('srgb').raw().toBuffer();
    let inside = 0;
    let outside = 0;
    for (let p = 0; p < mask.length; p++) {
      const [r, , b] = d.at(p % 96, Math.floor(p / 96));
      const change = r - b - (original[p * 3] - original[p * 3 + 2]);
      if (mask[p]) inside += change / mask.reduce((s, v) => s + v, 0);
      else outside += change / (mask.length - mask.reduce((s, v) => s + v, 0));
    }
    expect(inside).toBeGreaterThan(outside + 25); // measured: 43 inside, 10 outside (contours and tint at the blob's rim)
    const g = await read(good.path);
    expect(g.r.isAnomaly).toBe(false);
    const goodOriginal = await sharp(good.path).removeAlpha().toColourspace('srgb').raw().toBuffer();
    let unchanged = 0;
    for (let p = 0; p < 96 * 96; p++) {
      const px = g.at(p % 96, Math.floor(p / 96));
      if (px.every((v, c) => v === goodOriginal[p * 3 + c])) unchanged++;
    }
    expect(unchanged / (96 * 96)).toBeGreaterThan(0.9);
  });
});
