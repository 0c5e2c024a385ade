/**
 * Ensemble fusion: each member's raw score and map, min-max normalised, then averaged.
 *
 *   fused(x) = mean over members m of (raw_m(x) - min_m) / (max_m - min_m)
 *
 * Two sources for min_m / max_m:
 * - deployment (`Ensemble`): the held-out nominal images of the fit (the calibration holdout,
 *   shared by all members, so no member trained on them). Scores use the min / max of the held-out
 *   image scores; maps the min / max of every pixel of the held-out maps. Anomalies land above 1,
 *   nominal parts in [0, 1].
 * - paper-comparable evaluation ({@link fuseTestMinMax}): the min / max over the test set itself,
 *   as ensemble results in the PatchCore paper are reported. Uses test images, so never for
 *   deployment.
 *
 * A member whose range is empty (max == min) contributes 0: it cannot tell images apart.
 */
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

/**
 * Held-out statistics of one member, gathered image by image: its raw scores and its maps' pixel
 * range and mean (the maps themselves are not kept).
 */
export class MemberStats {
  readonly scores: number[] = [];
  mapMin = Infinity;
  mapMax = -Infinity;
  mapSum = 0;
  pixels = 0;

  add(score: number, map: Float32Array): void {
    this.scores.push(score);
    for (const v of map) {
      if (v < this.mapMin) this.mapMin = v;
      if (v > this.mapMax) this.mapMax = v;
      this.mapSum += v;
    }
    this.pixels += map.length;
  }

  range(): MemberRange {
    return { scoreMin: Math.min(...this.scores), scoreMax: Math.max(...this.scores), mapMin: this.mapMin, mapMax: this.mapMax };
  }
}

/**
 * The fused held-out scores, and the fused maps' mean pixel (every member's maps have the same
 * pixels, the images' own sizes, so it is the mean of the members' normalised mean pixels): what
 * the ensemble's threshold is calibrated on.
 */
export function fusedHeldOut(stats: MemberStats[], ranges: MemberRange[]): { scores: number[]; mapMean: number } {
  const k = stats.length;
  const scores = stats[0].scores.map((_, i) => ranges.reduce((s, r, m) => s + minMax(stats[m].scores[i], r.scoreMin, r.scoreMax), 0) / k);
  const mapMean = ranges.reduce((s, r, m) => s + minMax(stats[m].mapSum / stats[m].pixels, r.mapMin, r.mapMax), 0) / k;
  return { scores, mapMean };
}
