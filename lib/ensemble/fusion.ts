/**
 * Ensemble fusion: each member's raw score and map, min-max normalised, then averaged.
 *
 *   fused(x) = mean over members m of (raw_m(x) - min_m) / (max_m - min_m)
 *
 * Two sources for min_m / max_m:
 * - deployment (`Ensemble`): the fit's nominal evidence, the same images for every member, each
 *   scored without its own patches in the bank (leave-one-image-out) or held out of every bank.
 *   Scores use the min / max of those image scores; maps the min / max of their map pixels.
 *   Anomalies land above 1, nominal parts in [0, 1].
 * - paper-comparable evaluation ({@link fuseTestMinMax}): the min / max over the test set itself,
 *   as ensemble results in the PatchCore paper are reported. Uses test images, so never for
 *   deployment.
 *
 * A member whose range is empty (max == min) contributes 0: it cannot tell images apart.
 */
import type { NominalEvidence } from '../calibration.js';
import { ReconpatchError } from '../errors.js';

/**
 * One member's normaliser: raw value -> (value - min) / (max - min), from the held-out images.
 * @example
 * const ensemble = await Ensemble.load('part.rcpe');
 * const ranges: MemberRange[] | null = ensemble.info.ranges;
 * const [raw] = await ensemble.scoreMembers(['frame.png']);
 * const firstMember = ranges && minMax(raw.scores[0], ranges[0].scoreMin, ranges[0].scoreMax);
 */
export interface MemberRange {
  /** Lowest raw image score of the member over the held-out images. */
  scoreMin: number;
  /** Highest raw image score of the member over the held-out images. */
  scoreMax: number;
  /** Lowest raw map value of the member over every pixel of the held-out maps. */
  mapMin: number;
  /** Highest raw map value of the member over every pixel of the held-out maps. */
  mapMax: number;
}

/**
 * Min-max normalisation: (value - lo) / (hi - lo); 0 for an empty range (hi <= lo). Not clamped:
 * values outside [lo, hi] land outside [0, 1].
 * @example
 * minMax(3, 1, 5); // 0.5
 * minMax(7, 1, 5); // 1.5
 * minMax(2, 4, 4); // 0
 */
export function minMax(value: number, lo: number, hi: number): number {
  return hi > lo ? (value - lo) / (hi - lo) : 0;
}

/**
 * Test-set min-max fusion (paper-comparable evaluation only: it looks at the test set). `members[m]`
 * holds member m's raw scores (and maps) for the same test images in the same order. Each member is
 * mapped to [0, 1] by the min / max of its own test scores (and of every pixel of its test maps,
 * or `mapRanges[m]` when the maps given are subsampled from larger ones), then the members are
 * averaged per image and per pixel. Throws ERR_INVALID_OPTION for no members, or members whose
 * score counts (or, when every member has maps, map counts and sizes) differ. Without maps on
 * every member, `maps` is empty.
 * @example
 * fuseTestMinMax([{ scores: [1, 3] }, { scores: [10, 30] }]).scores // [0, 1]
 */
export function fuseTestMinMax(
  members: { scores: number[]; maps?: Float32Array[] }[],
  mapRanges?: { min: number; max: number }[],
): { scores: number[]; maps: Float32Array[] } {
  if (members.length === 0) throw new ReconpatchError('ERR_INVALID_OPTION', 'fuseTestMinMax needs at least one member');
  const n = members[0].scores.length;
  if (members.some((m) => m.scores.length !== n)) throw new ReconpatchError('ERR_INVALID_OPTION', 'fuseTestMinMax: every member needs a score per test image');
  const withMaps = members.every((m) => m.maps !== undefined);
  if (withMaps && members.some((m) => m.maps?.length !== n || m.maps.some((map, i) => map.length !== (members[0].maps as Float32Array[])[i].length)))
    throw new ReconpatchError('ERR_INVALID_OPTION', 'fuseTestMinMax: every member needs a map of the same size per test image');
  const scores = new Array<number>(n).fill(0);
  const maps = withMaps ? (members[0].maps as Float32Array[]).map((m) => new Float32Array(m.length)) : [];
  for (const [j, m] of members.entries()) {
    const lo = Math.min(...m.scores);
    const hi = Math.max(...m.scores);
    for (let i = 0; i < n; i++) scores[i] += minMax(m.scores[i], lo, hi) / members.length;
    if (!withMaps) continue;
    let mapLo = Infinity;
    let mapHi = -Infinity;
    if (mapRanges) ({ min: mapLo, max: mapHi } = mapRanges[j]);
    else for (const map of m.maps as Float32Array[]) for (const v of map) { mapLo = Math.min(mapLo, v); mapHi = Math.max(mapHi, v); }
    for (const [i, map] of (m.maps as Float32Array[]).entries()) {
      const out = maps[i];
      for (let p = 0; p < map.length; p++) out[p] += minMax(map[p], mapLo, mapHi) / members.length;
    }
  }
  return { scores, maps };
}

/**
 * One image's raw member outputs (no fusion), from {@link Ensemble.scoreMembers}.
 * @example
 * const ensemble = await Ensemble.load('part.rcpe');
 * const [first]: MemberOutputs[] = await ensemble.scoreMembers(['frame.png']);
 * console.log(first.scores, first.width, first.height);
 */
export interface MemberOutputs {
  /** Each member's raw image score, in member order. */
  scores: number[];
  /** Each member's raw anomaly map, in member order, row-major `height` x `width`. */
  maps: Float32Array[];
  /** The input image's width in pixels. */
  width: number;
  /** The input image's height in pixels. */
  height: number;
}

/** One image's outputs fused with held-out ranges: mean normalised score and map. Throws ERR_INVALID_OPTION for a wrong member count or maps of different sizes. */
export function fuseWithRanges(o: MemberOutputs, ranges: MemberRange[]): { score: number; map: Float32Array } {
  if (o.scores.length !== ranges.length || o.maps.length !== ranges.length)
    throw new ReconpatchError('ERR_INVALID_OPTION', `fuse expects ${ranges.length} member outputs`);
  const k = ranges.length;
  let score = 0;
  const map = new Float32Array(o.maps[0].length);
  for (const [m, r] of ranges.entries()) {
    score += minMax(o.scores[m], r.scoreMin, r.scoreMax) / k;
    const raw = o.maps[m];
    if (raw.length !== map.length) throw new ReconpatchError('ERR_INVALID_OPTION', 'fuse: member maps differ in size');
    for (let p = 0; p < map.length; p++) map[p] += minMax(raw[p], r.mapMin, r.mapMax) / k;
  }
  return { score, map };
}

/** One member's normaliser from its nominal evidence: the range of its scores and of its map pixels. */
export function memberRange(evidence: NominalEvidence[]): MemberRange {
  const scores = evidence.map((e) => e.score);
  return {
    scoreMin: Math.min(...scores), scoreMax: Math.max(...scores),
    mapMin: Math.min(...evidence.map((e) => e.mapMin)), mapMax: Math.max(...evidence.map((e) => e.mapMax)),
  };
}

/**
 * The fused nominal evidence per image (every member's evidence covers the same images, in the
 * same order): fused score and map mean exactly (fusion is linear); the fused map's maximum as
 * the mean of the members' normalised maxima, an upper bound (equal when the members' peaks
 * coincide), so the fused pixel threshold errs towards fewer false regions.
 */
export function fuseEvidence(perMember: NominalEvidence[][], ranges: MemberRange[]): NominalEvidence[] {
  const k = perMember.length;
  const avg = (i: number, f: (e: NominalEvidence, r: MemberRange) => number) => ranges.reduce((s, r, m) => s + f(perMember[m][i], r), 0) / k;
  return perMember[0].map((_, i) => ({
    score: avg(i, (e, r) => minMax(e.score, r.scoreMin, r.scoreMax)),
    mapMin: avg(i, (e, r) => minMax(e.mapMin, r.mapMin, r.mapMax)),
    mapMax: avg(i, (e, r) => minMax(e.mapMax, r.mapMin, r.mapMax)),
    mapMean: avg(i, (e, r) => minMax(e.mapMean, r.mapMin, r.mapMax)),
  }));
}
