/**
 * Held-out images spread evenly over an ordered set: the head check (head_check/check.ts) and the
 * good-images-only evaluation (eval/good_only.ts) hold images out the same way.
 */

/**
 * Whether item `index` of `total` is one of `count` held out, spread evenly over the order
 * (exactly `count` items for 0 ≤ count ≤ total).
 * @example
 * const held = evenlySpread(2, 10); // items 4 and 9
 */
export function evenlySpread(count: number, total: number): (index: number) => boolean {
  return (i) => Math.floor(((i + 1) * count) / total) > Math.floor((i * count) / total);
}
