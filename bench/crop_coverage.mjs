#!/usr/bin/env node
// How much of a dataset's defects a centre crop never looks at:
//   node bench/crop_coverage.mjs <dataset> [resize 256] [crop 224]
// For every test image with a mask: the window that 'shorter side = resize, centre crop' keeps (in
// original pixels, as native/core/pipeline/image.cc plans it), the share of the image inside it,
// and the share of the defect's pixels inside it. Prints a JSON summary (and per defect type).
import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const sharp = createRequire(path.join(root, 'package.json'))('sharp');
const [dataset, resizeText = '256', cropText = '224'] = process.argv.slice(2);
const resize = Number(resizeText);
const crop = Number(cropText);
const base = path.resolve(root, '../shared/datasets', dataset);

// The crop window along one axis, in original pixels: those whose centre falls inside it.
function inside(n, resized, lo) {
  const keep = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const c = ((i + 0.5) * resized) / n;
    keep[i] = c >= lo && c < lo + crop ? 1 : 0;
  }
  return keep;
}

const perType = {};
let images = 0;
let areaShare = 0;
for (const defect of readdirSync(path.join(base, 'test')).sort()) {
  if (defect === 'good') continue;
  for (const file of readdirSync(path.join(base, 'test', defect)).sort()) {
    const stem = path.parse(file).name;
    const maskDir = path.join(base, 'ground_truth', defect);
    const maskFile = readdirSync(maskDir).find((m) => path.parse(m).name === `${stem}_mask` || path.parse(m).name === stem);
    if (!maskFile) continue;
    const { data, info } = await sharp(path.join(maskDir, maskFile)).greyscale().raw().toBuffer({ resolveWithObject: true });
    const { width: w, height: h } = info;
    const [rh, rw] = h <= w ? [resize, Math.floor((resize * w) / h)] : [Math.floor((resize * h) / w), resize];
    const rows = inside(h, rh, Math.round((rh - crop) / 2));
    const cols = inside(w, rw, Math.round((rw - crop) / 2));
    let defectPixels = 0;
    let seen = 0;
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        if (data[(y * w + x) * info.channels] <= 127) continue;
        defectPixels++;
        if (rows[y] && cols[x]) seen++;
      }
    if (!defectPixels) continue;
    const t = (perType[defect] ??= { images: 0, defect_pixels: 0, defect_pixels_inspected: 0, defects_entirely_outside: 0, defects_partly_outside: 0 });
    t.images++;
    t.defect_pixels += defectPixels;
    t.defect_pixels_inspected += seen;
    if (seen === 0) t.defects_entirely_outside++;
    else if (seen < defectPixels) t.defects_partly_outside++;
    images++;
    areaShare += (rows.reduce((a, b) => a + b, 0) * cols.reduce((a, b) => a + b, 0)) / (w * h);
  }
}
const sum = (k) => Object.values(perType).reduce((s, t) => s + t[k], 0);
console.log(JSON.stringify({
  dataset, resize, crop, defect_images: images, mean_image_area_inspected: areaShare / images,
  defect_pixels_inspected: sum('defect_pixels_inspected') / sum('defect_pixels'),
  defects_entirely_outside: sum('defects_entirely_outside'), defects_partly_outside: sum('defects_partly_outside'),
  per_type: Object.fromEntries(Object.entries(perType).map(([k, t]) => [k, { ...t, share_inspected: t.defect_pixels_inspected / t.defect_pixels }])),
}, null, 1));
