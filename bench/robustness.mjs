// What the input limits of issue 17 cost (results in bench/NOTES.md):
//  1. the header check before decoding (sharp metadata()) beside the decode itself, per image;
//  2. the peak RSS of scoring one image at the default pixel budget (8192 x 8192), and of
//     refusing one just over it, each in a fresh process.
//   node bench/robustness.mjs [--json]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import sharp from 'sharp';

import { zeroPng } from '../test/support/png.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, '../dist/index.js');


if (process.argv[2] === '--child') {
  // One score in this fresh process; prints the outcome and the peak RSS.
  const { Engine } = await import(dist);
  const [, , , model, image] = process.argv;
  const engine = await Engine.load(model);
  const rssBefore = process.resourceUsage().maxRSS / 1024;
  const t0 = performance.now();
  const outcome = await engine.score(image).then((r) => `scored ${r.width}x${r.height}`, (e) => e.code);
  console.log(JSON.stringify({ outcome, ms: performance.now() - t0, rssBeforeMB: rssBefore, peakRssMB: process.resourceUsage().maxRSS / 1024 }));
  process.exit(0);
}

const median = (xs) => xs.sort((a, b) => a - b)[xs.length >> 1];
async function timeIt(fn, reps) {
  const t = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    t.push(performance.now() - t0);
  }
  return median(t);
}

const results = { header: [], budget: [] };
// 1. Header check vs decode, on textured images (a random field, blurred: compressible like a photo).
for (const [format, size] of [['png', 1024], ['jpeg', 1024], ['png', 256], ['jpeg', 256]]) {
  const noise = Buffer.from(Array.from({ length: size * size * 3 }, (_, i) => (i * 2654435761) >>> 24));
  const bytes = await sharp(noise, { raw: { width: size, height: size, channels: 3 } }).blur(2)[format]().toBuffer();
  const header = await timeIt(() => sharp(bytes, { limitInputPixels: false }).metadata(), 30);
  const decode = await timeIt(() => sharp(bytes).removeAlpha().raw().toBuffer(), 30);
  results.header.push({ image: `${size}x${size} ${format}`, headerMs: header, decodeMs: decode, share: header / (header + decode) });
}

// 2. Peak RSS at the pixel budget, default geometry (shorter side 256, crop 224).
const dir = mkdtempSync(path.join(os.tmpdir(), 'reconpatch-bench-robust-'));
try {
  const { Engine } = await import(dist);
  const engine = await Engine.create({ head: false, backbone: 'random_cnn', coreset: { ratio: 0.25 }, calibration: false });
  const small = zeroPng(256, 256, { level: 1 });
  await engine.fit([small, small, small, small]);
  const model = path.join(dir, 'm.rcp');
  await engine.save(model);
  for (const [w, h] of [[1024, 1024], [4096, 4096], [8192, 8192], [8193, 8192]]) {
    const file = path.join(dir, `${w}x${h}.png`);
    writeFileSync(file, zeroPng(w, h, { level: 1 }));
    const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', model, file], { encoding: 'utf8' });
    results.budget.push({ image: `${w}x${h}`, ...JSON.parse(r.stdout.trim()) });
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

if (process.argv.includes('--json')) console.log(JSON.stringify(results));
else {
  for (const h of results.header) console.log(`${h.image}: header ${h.headerMs.toFixed(3)} ms, decode ${h.decodeMs.toFixed(2)} ms (${(100 * h.share).toFixed(1)}%)`);
  for (const b of results.budget) console.log(`${b.image}: ${b.outcome} in ${b.ms.toFixed(0)} ms, peak RSS ${b.peakRssMB.toFixed(0)} MiB (${b.rssBeforeMB.toFixed(0)} before)`);
}
