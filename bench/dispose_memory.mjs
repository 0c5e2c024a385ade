#!/usr/bin/env node
// What dispose() gives back: node --expose-gc bench/dispose_memory.mjs [cycles]
// Fits ../shared/datasets/metal_plate (64 training images, mobilenet_v1, squash 256 / crop 224,
// coreset 10%, no calibration) and saves it; then RSS (this process's, MiB) after the fit, after
// disposing the fitted engine, and for `cycles` rounds of load + one score + dispose, and once
// more a load + score dropped without dispose (what is left until the GC runs). Every reading
// after a full GC (with --expose-gc), so that JS garbage (the file's bytes) does not blur the
// native memory. One JSON line.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { Engine } = await import(path.join(root, 'dist/index.js'));
const cycles = Number(process.argv[2] ?? 3);
const base = path.resolve(root, '../shared/datasets/metal_plate');
const train = readdirSync(path.join(base, 'train/good')).sort().map((f) => path.join(base, 'train/good', f));
const probe = train[0];
const mib = () => {
  globalThis.gc?.();
  return Math.round(process.memoryUsage.rss() / 2 ** 20);
};
const rawMib = () => Math.round(process.memoryUsage.rss() / 2 ** 20); // no GC first
const dir = mkdtempSync(path.join(os.tmpdir(), 'reconpatch-dispose-'));
const file = path.join(dir, 'metal_plate.rcp');

const out = { gc: typeof globalThis.gc === 'function', rssStart: mib() };
const fitted = await Engine.create({
  head: false, backbone: path.resolve(root, '../shared/backbones/mobilenet_v1_imagenet.pt'), resizeMode: 'squash', resize: 256, crop: 224,
  coreset: { ratio: 0.1 }, calibration: false,
});
await fitted.fit(train);
await fitted.score(probe);
await fitted.save(file);
out.bankRows = fitted.info.bankRows;
out.featureDim = fitted.info.featureDim;
out.rssFitted = mib();
await fitted.dispose();
out.rssFittedDisposed = mib();
out.cycles = [];
for (let i = 0; i < cycles; i++) {
  const before = mib();
  const e = await Engine.load(file);
  await e.score(probe);
  const loaded = mib();
  await e.dispose();
  out.cycles.push({ before, loaded, disposed: mib() });
}
{
  const before = mib();
  let e = await Engine.load(file);
  await e.score(probe);
  const loaded = mib();
  e = null; // dropped: freed only when the GC collects the wrapper
  await new Promise((r) => setTimeout(r, 200));
  out.dropped = { before, loaded, after200msNoGc: rawMib(), afterGc: mib() };
}
rmSync(dir, { recursive: true, force: true });
console.log(JSON.stringify(out));
