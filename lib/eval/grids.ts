/**
 * `eval --save-images DIR`: one picture per test image, three panels side by side: the image, its
 * heatmap (as `score(..., { heatmap: 'png' })` draws it) and the ground truth (the defect mask
 * outlined and tinted blue on the image: green would read as OK). Written as DIR/<defect type>/<image name>.png.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';

import sharp from 'sharp';

import type { Calibration } from '../calibration.js';
import { drawText } from '../font.js';
import { type Verdict, heatmapLayout, heatmapRgb } from '../heatmap.js';
import { toRawFrame } from '../io/images.js';
import type { RawFrame } from '../native.js';
import { readMask } from './dataset.js';

const GAP = 6;

/** Writes the grid of one test image. */
export async function saveGrid(
  dir: string, item: { path: string; defect: string; maskPath: string | null }, map: Float32Array, calibration: Calibration | null, verdict: Verdict,
): Promise<string> {
  const frame = await toRawFrame(item.path);
  const L = heatmapLayout(frame.width, frame.height);
  const heat = heatmapRgb(frame, map, calibration, { ...verdict, source: path.basename(item.path) });
  const mask = item.maskPath ? await readMask(item.maskPath, frame.width, frame.height) : null;
  const panels = [
    panel(frame, L, null, 'IMAGE'),
    heat.data,
    panel(frame, L, mask, mask ? `TRUTH: ${item.defect}` : item.defect === 'good' ? 'TRUTH: GOOD' : `TRUTH: ${item.defect} (NO MASK)`),
  ];
  const width = 3 * L.width + 2 * GAP;
  const out = new Uint8Array(width * L.height * 3).fill(255);
  for (const [k, data] of panels.entries())
    for (let y = 0; y < L.height; y++) out.set(data.subarray(y * L.width * 3, (y + 1) * L.width * 3), (y * width + k * (L.width + GAP)) * 3);
  const file = path.join(dir, item.defect, `${path.parse(item.path).name}.png`);
  mkdirSync(path.dirname(file), { recursive: true });
  await sharp(out, { raw: { width, height: L.height, channels: 3 } }).png().toFile(file);
  return file;
}

/** The image in a heatmap-sized panel with a title; with a mask, the defect tinted and outlined in blue (green reads as OK). */
function panel(frame: RawFrame, L: ReturnType<typeof heatmapLayout>, mask: Uint8Array | null, title: string): Uint8Array {
  const { width: w, height: h, channels, data } = frame;
  const out = new Uint8Array(L.width * L.height * 3).fill(70);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const p = y * w + x;
      const o = ((y + L.banner) * L.width + x + L.frame) * 3;
      const inside = mask ? mask[p] > 0 : false;
      const edge = mask && inside && ((x > 0 && !mask[p - 1]) || (x < w - 1 && !mask[p + 1]) || (y > 0 && !mask[p - w]) || (y < h - 1 && !mask[p + w]));
      for (let c = 0; c < 3; c++) {
        const base = data[p * channels + (channels === 3 ? c : 0)];
        out[o + c] = edge ? [40, 140, 255][c] : inside ? Math.round(0.6 * base + 0.4 * [0, 90, 255][c]) : base;
      }
    }
  drawText(out, L.width, L.height, 2 * L.scale, 3 * L.scale, title, L.scale, [255, 255, 255]);
  return out;
}
