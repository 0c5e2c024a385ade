/**
 * The head check of `head: 'auto'`: on the user's own good images, does the ReConPatch head help?
 * Two pending models are built from the same fit images, one with the head and one without
 * (PatchCore). Held-out good images and synthetic defects painted on them (defects.ts) are scored
 * by both; the image AUROC of each over good vs synthetic decides. The head is kept only when its
 * AUROC beats PatchCore's by more than {@link HEAD_CHECK_MARGIN}: ties go to PatchCore, the
 * reference method, which costs less.
 */
import { ReconpatchError } from '../errors.js';
import { evenlySpread } from '../holdout.js';
import type { NativeEngine, RawFrame } from '../native.js';
import { synthesizeDefects } from './defects.js';

/** The AUROC gain the head must show on the synthetic set to be kept. */
export const HEAD_CHECK_MARGIN = 0.005;
/** Good images held out for the check: this share of the fit's images, within [min, max]. */
export const HEAD_CHECK_SHARE = 0.1;
export const HEAD_CHECK_MIN_IMAGES = 2;
export const HEAD_CHECK_MAX_IMAGES = 8;
/** Below this many fit images the check is not run and PatchCore is kept. */
export const HEAD_CHECK_MIN_FIT_IMAGES = 10;

/**
 * What the head check found, kept in the model file and shown by `info()`.
 * @example
 * const { decision, aurocHead, aurocPatchcore } = engine.info.headCheck!;
 */
export interface HeadCheck {
  /** The model kept: with the head, or PatchCore (head off). */
  decision: 'head' | 'patchcore';
  /** Why, in one sentence. */
  reason: string;
  /** Image AUROC over held-out good images vs synthetic defects, with the head (null: not run). */
  aurocHead: number | null;
  /** The same without the head. */
  aurocPatchcore: number | null;
  /** Good images scored (the held-out ones). */
  goodImages: number;
  /** Synthetic defect images scored. */
  defectImages: number;
  /** Good images held out of the bank for the check. */
  heldOutImages: number;
  margin: number;
  /** Wall-clock seconds of the fit up to the decision (two pending models and the check). */
  seconds: number;
}

/**
 * Which images to hold out for the check: {@link HEAD_CHECK_SHARE} of `total` spread evenly,
 * within [{@link HEAD_CHECK_MIN_IMAGES}, {@link HEAD_CHECK_MAX_IMAGES}]; for inputs of unknown
 * length, every 10th until the maximum.
 */
export function headCheckPicker(total: number | undefined): (index: number) => boolean {
  if (total === undefined) {
    let taken = 0;
    return (i) => i % 10 === 5 && taken < HEAD_CHECK_MAX_IMAGES && ++taken > 0;
  }
  if (total < HEAD_CHECK_MIN_FIT_IMAGES) return () => false;
  const h = Math.min(HEAD_CHECK_MAX_IMAGES, Math.max(HEAD_CHECK_MIN_IMAGES, Math.round(HEAD_CHECK_SHARE * total)));
  return evenlySpread(h, total);
}

/** Rank AUROC of `pos` over `neg` (ties count half). */
export function aurocOf(neg: number[], pos: number[]): number {
  let wins = 0;
  for (const p of pos) for (const n of neg) wins += p > n ? 1 : p === n ? 0.5 : 0;
  return wins / (pos.length * neg.length);
}

/** The rule, apart from the scoring: keep the head only when it beats PatchCore by more than the margin. */
export function decideHead(aurocHead: number, aurocPatchcore: number): { decision: HeadCheck['decision']; reason: string } {
  const gain = aurocHead - aurocPatchcore;
  const numbers = `synthetic-defect AUROC ${aurocHead.toFixed(4)} with the head, ${aurocPatchcore.toFixed(4)} without`;
  return gain > HEAD_CHECK_MARGIN
    ? { decision: 'head', reason: `${numbers}: the head gains ${gain.toFixed(4)} (> ${HEAD_CHECK_MARGIN})` }
    : { decision: 'patchcore', reason: `${numbers}: the head does not gain more than ${HEAD_CHECK_MARGIN}` };
}

/**
 * Scores the held-out good frames and their synthetic defects against both pending models and
 * decides. Only held-out images are the good side: they meet the same bank as the defects (the
 * fit's leave-one-out scores meet a bank without their own image, and mixing them in turned the
 * check's verdict on metal_plate against what the real defects showed: docs/results.md).
 * `withHead` / `withoutHead`: engines with pending models. `check()` throws when the fit must stop
 * (abort, callback failure); `onProgress` counts frames scored.
 */
export async function runHeadCheck(
  withHead: NativeEngine, withoutHead: NativeEngine, good: RawFrame[], seed: number, batchSize: number,
  check: () => void, onProgress: (done: number, total: number) => void,
): Promise<Omit<HeadCheck, 'seconds'>> {
  const base = { goodImages: good.length, heldOutImages: good.length, margin: HEAD_CHECK_MARGIN };
  if (good.length < HEAD_CHECK_MIN_IMAGES)
    return {
      decision: 'patchcore', reason: `too few images to check the head (${good.length} held out; at least ${HEAD_CHECK_MIN_FIT_IMAGES} fit images are needed)`,
      aurocHead: null, aurocPatchcore: null, defectImages: 0, ...base,
    };
  const defects = synthesizeDefects(good, seed).map((d) => d.frame);
  const frames = [...good, ...defects];
  const scores: [number[], number[]] = [[], []];
  for (let i = 0; i < frames.length; i += batchSize) {
    check();
    const batch = frames.slice(i, i + batchSize);
    for (const [k, e] of [withHead, withoutHead].entries()) for (const r of await e.scorePending(batch)) scores[k].push(r.score);
    onProgress(Math.min(i + batchSize, frames.length), frames.length);
  }
  check();
  const [aurocHead, aurocPatchcore] = scores.map((s) => aurocOf(s.slice(0, good.length), s.slice(good.length)));
  if (!Number.isFinite(aurocHead) || !Number.isFinite(aurocPatchcore)) throw new ReconpatchError('ERR_INTERNAL', 'the head check produced no AUROC');
  return { ...decideHead(aurocHead, aurocPatchcore), aurocHead, aurocPatchcore, defectImages: defects.length, ...base };
}

/** A model file's `headCheck` metadata, checked for shape (a file may be damaged or crafted); `bad` makes the error. */
export function readHeadCheck(value: unknown, bad: (why: string) => Error): HeadCheck | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'object' || Array.isArray(value)) throw bad('headCheck is not an object');
  const h = value as Record<string, unknown>;
  if (h.decision !== 'head' && h.decision !== 'patchcore') throw bad('headCheck.decision is not head or patchcore');
  if (typeof h.reason !== 'string') throw bad('headCheck.reason is not a string');
  for (const key of ['aurocHead', 'aurocPatchcore'])
    if (h[key] !== null && !(typeof h[key] === 'number' && Number.isFinite(h[key]))) throw bad(`headCheck.${key} is not a number or null`);
  for (const key of ['goodImages', 'defectImages', 'heldOutImages', 'margin', 'seconds'])
    if (!(typeof h[key] === 'number' && Number.isFinite(h[key]))) throw bad(`headCheck.${key} is not a finite number`);
  return h as unknown as HeadCheck;
}
