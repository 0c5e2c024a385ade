/**
 * Synthetic defects on good images, for the head check (`head: 'auto'`): local damage of several
 * kinds and sizes painted into copies of held-out good frames, in the spirit of CutPaste, NSA and
 * DRAEM (scratches, stains, texture noise, blur, pasted and rotated pieces, holes). Seeded: the
 * same frames and seed give the same defects. Pixels only; no labels are needed beyond "defect".
 */
import type { RawFrame } from '../native.js';
import { prng } from '../prng.js';

/** The kinds painted: every good frame gets each kind at each size. */
export const DEFECT_KINDS = ['scratch', 'stain', 'noise', 'blur', 'paste', 'hole'] as const;
export type DefectKind = (typeof DEFECT_KINDS)[number];

/** Region sides as a share of the frame's shorter side: small, medium, large. */
const SIZES = [0.05, 0.1, 0.18] as const;

interface Region {
  x0: number;
  y0: number;
  w: number;
  h: number;
}

/** A synthetic defect: the damaged copy, its kind, and its region's side as a share of the shorter side. */
export interface SyntheticDefect {
  frame: RawFrame;
  kind: DefectKind;
  size: number;
}

/**
 * One defective copy of every frame per kind in {@link DEFECT_KINDS} and size (small, medium,
 * large): `frames.length` × 18 frames, each with one defect at a seeded random place.
 * @example
 * const defects = synthesizeDefects(heldOutGood, 0); // 18 per good frame
 */
export function synthesizeDefects(frames: RawFrame[], seed: number): SyntheticDefect[] {
  const out: SyntheticDefect[] = [];
  for (const [i, src] of frames.entries())
    for (const [k, kind] of DEFECT_KINDS.entries())
      for (const [s, size] of SIZES.entries()) {
        const rng = prng((seed * 7919 + i * 131 + k * 17 + s * 5 + 1) >>> 0);
        const frame: RawFrame = { data: new Uint8Array(src.data), width: src.width, height: src.height, channels: src.channels };
        const side = Math.max(4, Math.round(size * Math.min(src.width, src.height)));
        paint(kind, frame, side, rng, frames[(i + 1) % frames.length]);
        out.push({ frame, kind, size });
      }
  return out;
}

function paint(kind: DefectKind, f: RawFrame, side: number, rng: () => number, donor: RawFrame): void {
  const r = region(f, side, side, rng);
  switch (kind) {
    case 'scratch':
      return scratch(f, r, rng);
    case 'stain':
      return stain(f, r, rng);
    case 'noise':
      return forEach(f, r, (p) => {
        for (let c = 0; c < f.channels; c++) f.data[p + c] = clamp(0.3 * f.data[p + c] + 0.7 * 255 * rng());
      });
    case 'blur':
      return blur(f, r, Math.max(2, Math.round(side / 6)));
    case 'paste':
      return paste(f, r, donor, rng);
    case 'hole': {
      const v = rng() < 0.5 ? 10 + 30 * rng() : 215 + 30 * rng();
      return forEach(f, r, (p) => {
        for (let c = 0; c < f.channels; c++) f.data[p + c] = clamp(v);
      });
    }
  }
}

/** A w × h region placed uniformly inside the frame. */
function region(f: RawFrame, w: number, h: number, rng: () => number): Region {
  const rw = Math.min(w, f.width);
  const rh = Math.min(h, f.height);
  return { x0: Math.floor(rng() * (f.width - rw + 1)), y0: Math.floor(rng() * (f.height - rh + 1)), w: rw, h: rh };
}

function forEach(f: RawFrame, r: Region, fn: (offset: number, x: number, y: number) => void): void {
  for (let y = r.y0; y < r.y0 + r.h; y++) for (let x = r.x0; x < r.x0 + r.w; x++) fn((y * f.width + x) * f.channels, x, y);
}

function clamp(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : Math.round(v);
}

/** A straight line across the region, 1-3 px wide (scaled with the frame), dark or bright. */
function scratch(f: RawFrame, r: Region, rng: () => number): void {
  const angle = rng() * Math.PI;
  const half = Math.max(0.6, Math.min(f.width, f.height) / 400) * (1 + rng());
  const v = rng() < 0.5 ? 15 : 240;
  const cx = r.x0 + r.w / 2;
  const cy = r.y0 + r.h / 2;
  const dx = Math.cos(angle);
  const dy = Math.sin(angle);
  // The line is 3 region sides long, centred on the region (clipped to the frame).
  const reach = 1.5 * r.w;
  const box = { x0: Math.max(0, Math.floor(cx - reach)), y0: Math.max(0, Math.floor(cy - reach)), w: 0, h: 0 };
  box.w = Math.min(f.width, Math.ceil(cx + reach)) - box.x0;
  box.h = Math.min(f.height, Math.ceil(cy + reach)) - box.y0;
  forEach(f, box, (p, x, y) => {
    const along = (x - cx) * dx + (y - cy) * dy;
    const across = Math.abs(-(x - cx) * dy + (y - cy) * dx);
    if (Math.abs(along) <= reach && across <= half) for (let c = 0; c < f.channels; c++) f.data[p + c] = v;
  });
}

/** An elliptical patch of shifted colour with a soft edge. */
function stain(f: RawFrame, r: Region, rng: () => number): void {
  const shift = Array.from({ length: f.channels }, () => (rng() < 0.5 ? -1 : 1) * (50 + 50 * rng()));
  const cx = r.x0 + r.w / 2;
  const cy = r.y0 + r.h / 2;
  const ax = r.w / 2;
  const ay = (r.h / 2) * (0.5 + 0.5 * rng());
  forEach(f, r, (p, x, y) => {
    const d = ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2;
    if (d >= 1) return;
    const a = 0.85 * (1 - d);
    for (let c = 0; c < f.channels; c++) f.data[p + c] = clamp(f.data[p + c] + a * shift[c]);
  });
}

/** Box blur of radius `radius` inside the region (texture lost). */
function blur(f: RawFrame, r: Region, radius: number): void {
  const src = f.data.slice();
  forEach(f, r, (p, x, y) => {
    for (let c = 0; c < f.channels; c++) {
      let sum = 0;
      let n = 0;
      for (let yy = Math.max(0, y - radius); yy <= Math.min(f.height - 1, y + radius); yy++)
        for (let xx = Math.max(0, x - radius); xx <= Math.min(f.width - 1, x + radius); xx++) {
          sum += src[(yy * f.width + xx) * f.channels + c];
          n++;
        }
      f.data[p + c] = Math.round(sum / n);
    }
  });
}

/** A piece of another good frame, rotated by 90° and with its brightness jittered, pasted over the region. */
function paste(f: RawFrame, r: Region, donor: RawFrame, rng: () => number): void {
  const s = Math.min(r.w, r.h, donor.width, donor.height);
  const sx = Math.floor(rng() * (donor.width - s + 1));
  const sy = Math.floor(rng() * (donor.height - s + 1));
  const gain = rng() < 0.5 ? 0.7 : 1.3;
  for (let y = 0; y < s; y++)
    for (let x = 0; x < s; x++) {
      // (x, y) in the target takes the donor's (y, s - 1 - x): a quarter turn.
      const q = ((sy + s - 1 - x) * donor.width + (sx + y)) * donor.channels;
      const p = ((r.y0 + y) * f.width + (r.x0 + x)) * f.channels;
      for (let c = 0; c < f.channels; c++) f.data[p + c] = clamp(gain * donor.data[q + Math.min(c, donor.channels - 1)]);
    }
}
