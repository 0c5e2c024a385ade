/**
 * Heatmaps an operator reads at a glance, over the image itself:
 * - normal areas are left untinted: colour appears only where the map rises above the floor
 *   (`calibration.pixelFloor`, what a typical good part reaches at its worst pixel), fading in
 *   from yellow and turning red at the pixel threshold, more opaque over parts whose own colour is
 *   close to the tint's (rust, orange) so that it shows as plainly as on a grey part;
 * - every region above the pixel threshold is outlined by a contour (white inside, black outside,
 *   visible on any background; 2 px for images up to 255 px, wider on larger ones), however small;
 * - pixels that were not inspected (outside a crop; NaN in the map) are greyed and hatched;
 * - a banner on top and a frame around the image carry the verdict: red with "ANOMALY" for a
 *   flagged image (so it is marked even when no region passes the pixel threshold), dark green
 *   with "OK", grey without a threshold; the score is written beside it (normalised: 0.50 is the
 *   threshold). A score within {@link BORDERLINE_BAND} of the threshold (normalised 0.40-0.60)
 *   turns the banner amber and says "BORDERLINE OK" or "BORDERLINE ANOMALY", the frame keeping the
 *   verdict's colour: a near miss is not shown as a plain OK.
 * - a legend below the image: the tint's scale from the floor to the pixel threshold (white tick:
 *   regions above it are contoured) and beyond, and the model's id and version when known.
 * The PNG is therefore larger than the image by the banner, the frame and the legend ({@link heatmapLayout}).
 */
import sharp from 'sharp';

import type { Calibration } from './calibration.js';
import { GLYPH_H, GLYPH_W, drawText, textWidth } from './font.js';
import type { RawFrame } from './native.js';

/** What the banner says about the image. */
export interface Verdict {
  score: number;
  normalizedScore: number | null;
  isAnomaly: boolean | null;
  /** The model that scored it, written in the legend when there is room. */
  model?: { id: string | null; version: string };
  /** The image's name (a file name), written at the banner's right end when there is room (cut from the left if long). */
  source?: string;
}

type Rgb = [number, number, number];

const RED: Rgb = [200, 16, 16];
const GREEN: Rgb = [24, 110, 48];
const GREY: Rgb = [90, 90, 90];
const AMBER: Rgb = [196, 118, 0];
const FOOTER: Rgb = [40, 40, 40];

/** Half-width of the borderline band around the threshold, on the normalised scale (0.5 = threshold). */
export const BORDERLINE_BAND = 0.1;

/** Whether a normalised score lies within `band` of the threshold (0.5). */
export function isBorderline(normalizedScore: number | null, band = BORDERLINE_BAND): boolean {
  return normalizedScore !== null && Math.abs(normalizedScore - 0.5) <= band;
}

/** Where the image sits in the heatmap: `frame` px around it, a banner of `banner` px above, a legend of `legend` px below the frame. */
export function heatmapLayout(width: number, height: number): { scale: number; frame: number; banner: number; legend: number; width: number; height: number } {
  const scale = Math.max(1, Math.min(4, Math.floor(Math.max(width, height) / 256) + 1));
  const frame = 2 * scale + 1;
  const banner = (GLYPH_H + 6) * scale;
  const legend = (GLYPH_H + 4) * scale;
  return { scale, frame, banner, legend, width: width + 2 * frame, height: height + banner + frame + legend };
}

/** The tint's colour and opacity for t = position between the floor (0) and the pixel threshold (1). */
function tint(t: number): { colour: Rgb; alpha: number } {
  if (t < 1) return { colour: [255, Math.round(220 - 150 * t), 0], alpha: 0.55 * t };
  const u = Math.min(1, t - 1); // beyond the threshold: deeper red, more opaque
  return { colour: [Math.round(255 - 75 * u), 0, Math.round(60 * u)], alpha: 0.55 + 0.15 * u };
}

/**
 * The tint's opacity over `base`, raised where the part's own colour is close to the tint's (rust,
 * orange, red parts) so that the tint moves the pixel as far as it would move a neutral grey of
 * the same brightness: a warm part shows its tint as plainly as a grey one (at most 0.9 opaque).
 */
function visibleAlpha(base: Rgb, colour: Rgb, alpha: number): number {
  const lum = 0.299 * base[0] + 0.587 * base[1] + 0.114 * base[2];
  const far = Math.hypot(colour[0] - base[0], colour[1] - base[1], colour[2] - base[2]);
  const neutral = Math.hypot(colour[0] - lum, colour[1] - lum, colour[2] - lum);
  return far > 0 && neutral > far ? Math.min(0.9, (alpha * neutral) / far) : alpha;
}

/**
 * The floor and the level the colours reach red at, and the contour level: the calibration's
 * floor and pixel threshold; without one, the top quarter of the map's own values is tinted and
 * no contour is drawn.
 */
function levels(map: Float32Array, c: Calibration | null): { floor: number; red: number; contour: number } {
  if (c) return { floor: Math.min(c.pixelFloor, c.pixelThreshold), red: c.pixelThreshold, contour: c.pixelThreshold };
  const finite = Array.from(map).filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (!finite.length) return { floor: 0, red: 1, contour: Infinity };
  return { floor: finite[Math.floor(0.75 * (finite.length - 1))], red: finite[finite.length - 1], contour: Infinity };
}

/**
 * The heatmap as RGB pixels (see the module comment): `map` holds raw map values at the image's
 * size, NaN where not inspected.
 */
export function heatmapRgb(image: RawFrame, map: Float32Array, calibration: Calibration | null, verdict: Verdict): { data: Uint8Array; width: number; height: number } {
  const { width: w, height: h, channels, data } = image;
  const L = heatmapLayout(w, h);
  const out = new Uint8Array(L.width * L.height * 3);
  const frameColour = verdict.isAnomaly === null ? GREY : verdict.isAnomaly ? RED : GREEN;
  for (let p = 0; p < L.width * L.height; p++) out.set(frameColour, p * 3);
  if (isBorderline(verdict.normalizedScore)) for (let p = 0; p < L.width * L.banner; p++) out.set(AMBER, p * 3);
  const { floor, red, contour } = levels(map, calibration);
  const span = red > floor ? red - floor : 1;
  const above = new Uint8Array(w * h);
  for (let p = 0; p < above.length; p++) above[p] = map[p] >= contour ? 1 : 0; // 0 for NaN
  const edge = boundary(above, w, h, Math.max(1, Math.round(L.scale / 2)));
  let uninspected = 0;
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const p = y * w + x;
      const o = ((y + L.banner) * L.width + x + L.frame) * 3;
      const v = map[p];
      const base: Rgb = [0, 1, 2].map((c) => data[p * channels + (channels === 3 ? c : 0)]) as Rgb;
      if (Number.isNaN(v)) {
        uninspected++;
        const grey = 0.3 * (0.299 * base[0] + 0.587 * base[1] + 0.114 * base[2]) + 0.7 * 150;
        const stripe = (x + y) % (8 * L.scale) < 2 * L.scale ? 60 : 0;
        out.fill(Math.round(grey - stripe), o, o + 3);
        continue;
      }
      // The contour: white on the inside of a region's edge, black on the outside.
      if (edge[p]) {
        out.fill(above[p] ? 255 : 0, o, o + 3);
        continue;
      }
      const t = (v - floor) / span;
      if (t <= 0) {
        out.set(base, o);
        continue;
      }
      const { colour, alpha } = tint(t);
      const a = visibleAlpha(base, colour, alpha);
      for (let c = 0; c < 3; c++) out[o + c] = Math.round((1 - a) * base[c] + a * colour[c]);
    }
  writeBanner(out, L, verdict, uninspected > 0);
  writeLegend(out, L, verdict);
  return { data: out, width: L.width, height: L.height };
}

/**
 * Pixels within `r` (in x and y) of the edge of the regions in `mask`: where the window's
 * maximum and minimum differ (separable max / min filters). Each side of an edge gets r pixels, so
 * the contour is 2r wide (2 px for images up to 255 px).
 */
function boundary(mask: Uint8Array, w: number, h: number, r: number): Uint8Array {
  const filter = (src: Uint8Array, pick: (a: number, b: number) => number, horizontal: boolean) => {
    const out = new Uint8Array(src.length);
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        let v = src[y * w + x];
        for (let d = -r; d <= r; d++) {
          const xx = horizontal ? x + d : x;
          const yy = horizontal ? y : y + d;
          if (xx >= 0 && yy >= 0 && xx < w && yy < h) v = pick(v, src[yy * w + xx]);
        }
        out[y * w + x] = v;
      }
    return out;
  };
  const grown = filter(filter(mask, Math.max, true), Math.max, false);
  const shrunk = filter(filter(mask, Math.min, true), Math.min, false);
  for (let p = 0; p < grown.length; p++) grown[p] = grown[p] !== shrunk[p] ? 1 : 0;
  return grown;
}

function writeBanner(out: Uint8Array, L: ReturnType<typeof heatmapLayout>, v: Verdict, hatched: boolean): void {
  const verdict = v.isAnomaly === null ? 'NO THRESHOLD' : v.isAnomaly ? 'ANOMALY' : 'OK';
  const word = v.isAnomaly !== null && isBorderline(v.normalizedScore) ? `BORDERLINE ${verdict}` : verdict;
  const score = v.normalizedScore === null ? `SCORE ${fmt(v.score)}` : `SCORE ${v.normalizedScore.toFixed(2)} ${v.isAnomaly ? '>=' : '<'} 0.50`;
  const short = `${word} ${v.normalizedScore === null ? fmt(v.score) : v.normalizedScore.toFixed(2)}`;
  const mark = hatched ? '  HATCHED: NOT INSPECTED' : '';
  const candidates = [`${word}  ${score}${mark}`, `${word}  ${score}`, short, word];
  const s = L.scale;
  const room = L.width - 2 * s;
  // Glyphs left for the image's name right of `t` (a gap of two glyphs).
  const nameRoom = (t: string) => Math.floor(((room - textWidth(t, s) - 2 * GLYPH_W * s) / s + 1) / GLYPH_W);
  let text = candidates.find((t) => textWidth(t, s) <= room) ?? word;
  // With a name, the score may take its short form to leave the name up to 12 glyphs (never dropping the hatch mark).
  if (v.source && nameRoom(text) < Math.min(12, v.source.length)) {
    const roomier = `${short}${mark}`;
    if (textWidth(roomier, s) <= room && nameRoom(roomier) > nameRoom(text)) text = roomier;
  }
  drawText(out, L.width, L.height, 2 * s, 3 * s, text, s, [255, 255, 255]);
  if (!v.source) return;
  // The name right-aligned after the verdict; cut from the left when long ('..' marks the cut).
  const glyphs = nameRoom(text);
  if (glyphs < 5) return;
  const name = v.source.length <= glyphs ? v.source : `..${v.source.slice(v.source.length - (glyphs - 2))}`;
  drawText(out, L.width, L.height, L.width - 2 * s - textWidth(name, s), 3 * s, name, s, [255, 255, 255]);
}

/**
 * The legend, right-aligned below the frame: "FLOOR", the tint over mid-grey from the floor to
 * 1.5 x the way to the pixel threshold (a white tick at the threshold: contoured from there),
 * "REGION"; on its left the model's id and version when they fit.
 */
function writeLegend(out: Uint8Array, L: ReturnType<typeof heatmapLayout>, v: Verdict): void {
  const s = L.scale;
  // A neutral footer: the strip's reds must not melt into a red frame.
  for (let p = (L.height - L.legend) * L.width; p < L.height * L.width; p++) out.set(FOOTER, p * 3);
  const y0 = L.height - L.legend + s;
  const stripW = 30 * s;
  const right = textWidth('REGION', s);
  const left = textWidth('FLOOR', s);
  const x0 = L.width - 2 * s - right - 2 * s - stripW - 2 * s - left;
  if (x0 < s) return; // too narrow for a legend
  const white: Rgb = [255, 255, 255];
  drawText(out, L.width, L.height, x0, y0 + s, 'FLOOR', s, white);
  const sx = x0 + left + 2 * s;
  const tick = Math.round((stripW - 1) / 1.5); // t = 1: the pixel threshold
  for (let i = 0; i < stripW; i++) {
    const { colour, alpha } = tint((1.5 * i) / (stripW - 1));
    const px: Rgb = i >= tick && i < tick + s ? white : (colour.map((c) => Math.round((1 - alpha) * 128 + alpha * c)) as Rgb);
    for (let y = y0; y < y0 + (GLYPH_H + 2) * s; y++) out.set(px, (y * L.width + sx + i) * 3);
  }
  drawText(out, L.width, L.height, sx + stripW + 2 * s, y0 + s, 'REGION', s, white);
  if (v.model) {
    const text = [`MODEL ${v.model.id ?? '-'} ${v.model.version.slice(0, 8)}`, `${v.model.id ?? '-'}`].find((t) => textWidth(t, s) <= x0 - 4 * s);
    if (text) drawText(out, L.width, L.height, 2 * s, y0 + s, text, s, white);
  }
}

function fmt(x: number): string {
  return Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 1 ? x.toFixed(2) : x.toPrecision(3);
}

/** The heatmap as a PNG file's bytes. */
export async function heatmapPng(image: RawFrame, map: Float32Array, calibration: Calibration | null, verdict: Verdict): Promise<Buffer> {
  const { data, width, height } = heatmapRgb(image, map, calibration, verdict);
  return sharp(data, { raw: { width, height, channels: 3 } }).png().toBuffer();
}
