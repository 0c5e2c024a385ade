#!/usr/bin/env node
// Prepares the device check's data (bench/gpu/data, not committed; `run`'s carry takes it to the
// GPU machine, which has no Node.js and no ../shared): a metal_plate subset decoded to raw RGB at
// 256 x 256 (what the squash-256 protocol feeds the network anyway), and the mobilenet_v1 backbone.
//   node bench/gpu/prepare.mjs [--train 24] [--test 40]
import { copyFileSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import sharp from 'sharp';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const shared = path.resolve(root, '../shared');
const out = path.join(root, 'bench/gpu/data');
const args = process.argv.slice(2);
const opt = (name, d) => { const i = args.indexOf(`--${name}`); return i >= 0 ? Number(args[i + 1]) : d; };
const dataset = path.join(shared, 'datasets/metal_plate');
const list = (d) => readdirSync(d).sort().map((f) => path.join(d, f));
const train = list(path.join(dataset, 'train/good')).slice(0, opt('train', 24));
const testDirs = readdirSync(path.join(dataset, 'test')).sort();
const test = testDirs.flatMap((d) => list(path.join(dataset, 'test', d))).filter((_, i) => i % 2 === 0).slice(0, opt('test', 40));

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
copyFileSync(path.join(shared, 'backbones/mobilenet_v1_imagenet.pt'), path.join(out, 'backbone.pt'));
const lines = ['backbone backbone.pt'];
for (const [split, files] of [['train', train], ['test', test]]) {
  for (const [i, file] of files.entries()) {
    const { data, info } = await sharp(file).removeAlpha().toColourspace('srgb').resize(256, 256, { fit: 'fill' }).raw().toBuffer({ resolveWithObject: true });
    const name = `${split}_${String(i).padStart(3, '0')}.rgb`;
    writeFileSync(path.join(out, name), data);
    lines.push(`${split} ${name} ${info.width} ${info.height} ${info.channels}`);
  }
}
writeFileSync(path.join(out, 'frames.txt'), `${lines.join('\n')}\n`);
console.log(`bench/gpu/data: ${train.length} train + ${test.length} test frames of metal_plate at 256 x 256, and the backbone`);
