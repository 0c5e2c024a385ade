/**
 * Anomaly-map visualisation: the jet colour map over the normalised map, blended 50% over the
 * image, with the threshold contour drawn in white; encoded as PNG by sharp.
 */
import sharp from 'sharp';

import type { RawFrame } from './native.js';

/** Jet colour map (MATLAB/OpenCV style) of t in [0, 1] -> [r, g, b] in 0..255. */
export function jet(t: number): [number, number, number] {
  const c = (x: number) => Math.round(255 * Math.min(1, Math.max(0, x)));
  return [c(1.5 - Math.abs(4 * t - 3)), c(1.5 - Math.abs(4 * t - 2)), c(1.5 - Math.abs(4 * t - 1))];
}

/**
 * RGB overlay at the image's size. `normalized` holds the map already mapped to [0, 1]
 * (0.5 = threshold). Contour: pixels at or above 0.5 with a 4-neighbour below it.
 */
export function overlayRgb(image: RawFrame, normalized: Float32Array, alpha = 0.5): Uint8Array {
  const { width, height, channels, data } = image;
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const p = y * width + x;
      const v = normalized[p];
      const above = v >= 0.5;
      const edge =
        above &&
        ((x > 0 && normalized[p - 1] < 0.5) || (x < width - 1 && normalized[p + 1] < 0.5) ||
          (y > 0 && normalized[p - width] < 0.5) || (y < height - 1 && normalized[p + width] < 0.5));
      const colour = jet(v);
      for (let c = 0; c < 3; c++) {
        const base = data[p * channels + (channels === 3 ? c : 0)];
        out[p * 3 + c] = edge ? 255 : Math.round((1 - alpha) * base + alpha * colour[c]);
      }
    }
  return out;
}

/** The overlay as a PNG file's bytes. */
export async function heatmapPng(image: RawFrame, normalized: Float32Array): Promise<Buffer> {
  return sharp(overlayRgb(image, normalized), { raw: { width: image.width, height: image.height, channels: 3 } }).png().toBuffer();
}
