/**
 * Detection metrics: image AUROC (equal to sklearn's roc_auc_score, ties included), pixel AUROC,
 * PRO (MVTec AD per-region overlap) and the best F1. Pure functions on typed arrays.
 */

/** Indices 0..n-1 sorted by ascending score (typed arrays only: works for tens of millions). */
function argsortAscending(scores: ArrayLike<number>): Uint32Array {
  const n = scores.length;
  const idx = new Uint32Array(n);
  for (let i = 0; i < n; i++) idx[i] = i;
  const s = scores instanceof Float64Array ? scores : Float64Array.from(scores as ArrayLike<number>);
  return idx.sort((a, b) => s[a] - s[b]);
}

/**
 * Area under the ROC curve. Tied scores count one half (Mann–Whitney U with average ranks),
 * which equals sklearn's trapezoid over distinct thresholds.
 * @example auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) // 0.75
 */
export function auroc(scores: ArrayLike<number>, labels: ArrayLike<number | boolean>): number {
  if (scores.length !== labels.length) throw new RangeError(`auroc: ${scores.length} scores but ${labels.length} labels`);
  const order = argsortAscending(scores);
  let positives = 0;
  let rankSum = 0; // sum of (average, 1-based) ranks of the positives
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && scores[order[j + 1]] === scores[order[i]]) j++;
    const avgRank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) {
      if (labels[order[k]]) {
        positives++;
        rankSum += avgRank;
      }
    }
    i = j + 1;
  }
  const negatives = order.length - positives;
  if (positives === 0 || negatives === 0) throw new RangeError('auroc: needs both positive and negative labels');
  return (rankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
}

/** AUROC over every pixel of every map (masks: non-zero = defect). */
export function pixelAuroc(maps: Float32Array[], masks: Uint8Array[]): number {
  const { scores, labels } = flatten(maps, masks);
  return auroc(scores, labels);
}

function flatten(maps: Float32Array[], masks: Uint8Array[]): { scores: Float32Array; labels: Uint8Array } {
  if (maps.length !== masks.length) throw new RangeError(`${maps.length} maps but ${masks.length} masks`);
  const total = maps.reduce((s, m) => s + m.length, 0);
  const scores = new Float32Array(total);
  const labels = new Uint8Array(total);
  let at = 0;
  for (const [i, m] of maps.entries()) {
    if (masks[i].length !== m.length) throw new RangeError(`map ${i} has ${m.length} pixels but its mask ${masks[i].length}`);
    scores.set(m, at);
    for (let p = 0; p < m.length; p++) labels[at + p] = masks[i][p] ? 1 : 0;
    at += m.length;
  }
  return { scores, labels };
}

/** Connected components (8-connectivity) of a binary mask: a label per pixel (0 = background). */
export function connectedComponents(mask: Uint8Array, width: number, height: number): { labels: Int32Array; count: number } {
  const labels = new Int32Array(width * height);
  const stack: number[] = [];
  let count = 0;
  for (let start = 0; start < mask.length; start++) {
    if (!mask[start] || labels[start]) continue;
    labels[start] = ++count;
    stack.push(start);
    while (stack.length) {
      const p = stack.pop() as number;
      const x = p % width;
      const y = (p - x) / width;
      for (let dy = -1; dy <= 1; dy++)
        for (let dx = -1; dx <= 1; dx++) {
          const nx = x + dx;
          const ny = y + dy;
          if (nx < 0 || ny < 0 || nx >= width || ny >= height) continue;
          const q = ny * width + nx;
          if (mask[q] && !labels[q]) {
            labels[q] = count;
            stack.push(q);
          }
        }
    }
  }
  return { labels, count };
}

/**
 * PRO (per-region overlap), as the MVTec AD evaluation defines it: regions are the 8-connected
 * components of the ground-truth masks. For `steps` thresholds evenly spaced over the score range,
 * PRO(t) = mean over regions of |region ∩ {score > t}| / |region| and FPR(t) = false-positive
 * pixels / all defect-free pixels. The PRO-vs-FPR curve is integrated (trapezoid) from FPR 0 up to
 * `maxFpr` (interpolating at `maxFpr`) and divided by `maxFpr`, so 1 is perfect.
 */
export function pro(
  maps: Float32Array[], masks: Uint8Array[], widths: number[], heights: number[],
  { maxFpr = 0.3, steps = 200 }: { maxFpr?: number; steps?: number } = {},
): number {
  const { scores, labels } = flatten(maps, masks);
  const regionOf = new Int32Array(scores.length); // 0 = not in a region
  const areas: number[] = [0];
  let at = 0;
  for (const [i, m] of masks.entries()) {
    const { labels: cc, count } = connectedComponents(m, widths[i], heights[i]);
    const base = areas.length - 1;
    for (let k = 0; k < count; k++) areas.push(0);
    for (let p = 0; p < cc.length; p++) {
      if (cc[p]) {
        regionOf[at + p] = base + cc[p];
        areas[base + cc[p]]++;
      }
    }
    at += m.length;
  }
  const regions = areas.length - 1;
  let negatives = 0;
  for (let p = 0; p < labels.length; p++) if (!labels[p]) negatives++;
  if (regions === 0 || negatives === 0) throw new RangeError('pro: needs defect regions and defect-free pixels');
  let lo = Infinity;
  let hi = -Infinity;
  for (const s of scores) {
    if (s < lo) lo = s;
    if (s > hi) hi = s;
  }
  // Sweep thresholds from high to low: FPR rises from 0.
  const curve: Array<[number, number]> = [[0, 0]];
  const overlap = new Float64Array(areas.length);
  for (let t = 0; t <= steps; t++) {
    const threshold = hi - ((hi - lo) * t) / steps;
    overlap.fill(0);
    let fp = 0;
    for (let p = 0; p < scores.length; p++) {
      if (scores[p] <= threshold && t < steps) continue;
      if (regionOf[p]) overlap[regionOf[p]]++;
      else if (!labels[p]) fp++;
    }
    let proSum = 0;
    for (let r = 1; r <= regions; r++) proSum += overlap[r] / areas[r];
    curve.push([fp / negatives, proSum / regions]);
  }
  let area = 0;
  for (let i = 1; i < curve.length; i++) {
    const [x0, y0] = curve[i - 1];
    let [x1, y1] = curve[i];
    if (x0 >= maxFpr) break;
    if (x1 > maxFpr) {
      y1 = y0 + ((y1 - y0) * (maxFpr - x0)) / (x1 - x0);
      x1 = maxFpr;
    }
    area += ((x1 - x0) * (y0 + y1)) / 2;
  }
  return area / maxFpr;
}

/** The best F1 over all thresholds (predict positive when score >= threshold). */
export function f1Max(scores: ArrayLike<number>, labels: ArrayLike<number | boolean>): { f1: number; threshold: number } {
  const order = argsortAscending(scores);
  let positives = 0;
  for (let i = 0; i < labels.length; i++) if (labels[i]) positives++;
  let best = { f1: 0, threshold: Infinity };
  let tp = 0;
  let predicted = 0;
  // Walk from the highest score down; evaluate at each distinct score.
  for (let i = order.length - 1; i >= 0; ) {
    const s = scores[order[i]];
    while (i >= 0 && scores[order[i]] === s) {
      predicted++;
      if (labels[order[i]]) tp++;
      i--;
    }
    const f1 = (2 * tp) / (predicted + positives);
    if (f1 > best.f1) best = { f1, threshold: s };
  }
  return best;
}
