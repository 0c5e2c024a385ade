#!/usr/bin/env node
// The head study (docs/results.md, "Head study", issue 19): PatchCore and head configurations on
// the four dataset x backbone pairs (metal_plate with a 10% coreset, magnetic_tile with all 762
// training images and a 1% coreset; mobilenet_v1 and darknet_tiny), the product's preprocessing
// (area 256, no crop), no calibration (it does not change AUROC or PRO). Every run is a process
// of its own; each appends one JSON line to docs/results/head_study.jsonl with the command that
// reproduces it. A row already there (same config, pair and seed) is not run again.
//   node scripts/results_head.mjs run <config>[,<config>...] [--seeds 0,1,2] [--pairs metal_plate,magnetic_tile]
//   node scripts/results_head.mjs render          rewrite the table in docs/results.md from the jsonl
//   node scripts/results_head.mjs list            the configurations
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const shared = path.resolve(root, '../shared');
const jsonl = path.join(root, 'docs/results/head_study.jsonl');
const doc = path.join(root, 'docs/results.md');
const args = process.argv.slice(2);
const opt = (name, d) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : d; };

// null: PatchCore (no head). Otherwise head options over the issue-19 baseline (the defaults
// before the study: sigma 1 on raw outputs, 300 iterations, lr 1e-3, N 1024, k 5, alpha 0.5,
// ema 0.9), written out in full so that a later change of HEAD_DEFAULTS cannot change a row.
const BASE = { iterations: 300, lr: 1e-3, batch: 1024, k: 5, alpha: 0.5, ema: 0.9, sigma: 1, sigmaRule: 'fixed', normalize: false, plateau: 0 };
const KNN = { ...BASE, sigmaRule: 'knn' };
export const CONFIGS = {
  patchcore: null,
  base: BASE,
  knn: KNN,
  'knn-norm': { ...KNN, normalize: true },
  'knn-it1000': { ...KNN, iterations: 1000 },
  'knn-lr1e-4': { ...KNN, lr: 1e-4 },
  'knn-n2048': { ...KNN, batch: 2048 },
  'knn-k10': { ...KNN, k: 10 },
  'knn-alpha0.8': { ...KNN, alpha: 0.8 },
  'knn-ema0.99': { ...KNN, ema: 0.99 },
  // The adaptive budget (issue 19, item 3): at most 1000 iterations, stop when a 32-step window
  // gains less than 1% of loss.
  'base-plateau': { ...BASE, iterations: 1000, plateau: 0.01 },
  'knn-plateau': { ...KNN, iterations: 1000, plateau: 0.01 },
};
const PAIRS = [
  { category: 'metal_plate', coreset: 0.1 },
  { category: 'magnetic_tile', coreset: 0.01 },
];
const BACKBONES = ['mobilenet_v1_imagenet', 'darknet_tiny_imagenet'];

if (args[0] === '--one') {
  const { config, category, coreset, backbone, seed } = JSON.parse(args[1]);
  const { evaluate } = await import(pathToFileURL(path.join(root, 'dist/eval/index.js')).href);
  const head = CONFIGS[config];
  const options = {
    backbone: path.join(shared, 'backbones', `${backbone}.pt`), coreset: { ratio: coreset }, seed, calibration: false,
    head: head ?? false, // null: PatchCore (the head is on by default since head study v2)
  };
  let headStart = 0, headSeconds = 0, lastLoss = null, firstLoss = null, headIterations = 0;
  const onProgress = (p) => {
    if (p.stage !== 'head') return;
    if (!headStart) headStart = performance.now();
    headSeconds = (performance.now() - headStart) / 1000;
    if (firstLoss === null) firstLoss = p.loss;
    lastLoss = p.loss;
    headIterations = p.done;
  };
  const row = await evaluate(path.join(shared, 'datasets'), category, options, { onProgress, onScored: () => {} , log: () => {} });
  const { decision, ...metrics } = row;
  console.log(JSON.stringify({
    config, ...metrics, backbone, head_options: head, head_iterations: headIterations, head_seconds: headSeconds, first_loss: firstLoss, last_loss: lastLoss,
    date: new Date().toISOString(),
    command: `node scripts/results_head.mjs run ${config} --pairs ${category} --backbones ${backbone} --seeds ${seed}`,
  }));
  process.exit(0);
}

function readRows() {
  if (!existsSync(jsonl)) return [];
  return readFileSync(jsonl, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

if (args[0] === 'list') {
  for (const [name, head] of Object.entries(CONFIGS)) console.log(name, JSON.stringify(head));
} else if (args[0] === 'run') {
  if (!existsSync(path.join(shared, 'datasets'))) {
    console.error(`../shared is absent (${shared}): nothing to evaluate`);
    process.exit(1);
  }
  const configs = (args[1] ?? '').split(',').filter(Boolean);
  for (const c of configs) if (!(c in CONFIGS)) throw new Error(`unknown config '${c}' (node scripts/results_head.mjs list)`);
  const seeds = opt('seeds', '0,1,2').split(',').map(Number);
  const pairs = opt('pairs', PAIRS.map((p) => p.category).join(',')).split(',');
  const backbones = opt('backbones', BACKBONES.join(',')).split(',');
  for (const seed of seeds)
    for (const config of configs)
      for (const p of PAIRS.filter((x) => pairs.includes(x.category)))
        for (const backbone of backbones) {
          const done = readRows().some((r) => r.config === config && r.category === p.category && r.backbone === backbone && r.seed === seed);
          if (done) continue;
          const started = Date.now();
          const line = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--one', JSON.stringify({ config, ...p, backbone, seed })],
            { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
          appendFileSync(jsonl, `${line}\n`);
          const r = JSON.parse(line);
          console.error(`${config} ${p.category} ${backbone} seed ${seed}: image ${r.image_auroc.toFixed(4)} pixel ${r.pixel_auroc.toFixed(4)} ` +
            `PRO ${r.pro.toFixed(4)} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
        }
} else if (args[0] === 'render') {
  render();
} else {
  console.error('usage: node scripts/results_head.mjs run <config>[,...] [--seeds 0,1,2] [--pairs ...] [--backbones ...] | render | list');
  process.exit(2);
}

function render() {
  const rows = readRows();
  const short = (b) => b.replace('_imagenet', '');
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const pairKeys = [];
  for (const p of PAIRS) for (const b of BACKBONES) pairKeys.push(`${p.category}|${b}`);
  // PatchCore per pair and seed: the reference each head row is compared with (same seed).
  const pc = new Map(rows.filter((r) => r.config === 'patchcore').map((r) => [`${r.category}|${r.backbone}|${r.seed}`, r]));
  const lines = ['| config | pair | seeds | image AUROC | gain vs PatchCore (min / mean / max) | pixel AUROC | PRO | head s |', '|---|---|---|---|---|---|---|---|'];
  const summary = [];
  for (const config of Object.keys(CONFIGS)) {
    const gains = [];
    for (const key of pairKeys) {
      const rs = rows.filter((r) => r.config === config && `${r.category}|${r.backbone}` === key).sort((a, b) => a.seed - b.seed);
      if (rs.length === 0) continue;
      const g = rs.filter((r) => pc.has(`${key}|${r.seed}`)).map((r) => r.image_auroc - pc.get(`${key}|${r.seed}`).image_auroc);
      const spread = (xs) => `${Math.min(...xs).toFixed(4)}–${Math.max(...xs).toFixed(4)}`;
      const [cat, bb] = key.split('|');
      lines.push(`| ${config} | ${cat} / ${short(bb)} | ${rs.map((r) => r.seed).join(',')} | ${mean(rs.map((r) => r.image_auroc)).toFixed(4)} (${spread(rs.map((r) => r.image_auroc))}) | ` +
        `${config === 'patchcore' || g.length === 0 ? '' : `${Math.min(...g).toFixed(4)} / ${mean(g).toFixed(4)} / ${Math.max(...g).toFixed(4)}`} | ` +
        `${mean(rs.map((r) => r.pixel_auroc)).toFixed(4)} | ${mean(rs.map((r) => r.pro)).toFixed(4)} | ${config === 'patchcore' ? '' : mean(rs.map((r) => r.head_seconds)).toFixed(0)} |`);
      if (g.length) gains.push({ key, mean: mean(g), n: g.length });
    }
    if (config !== 'patchcore' && gains.length) summary.push({ config, gains });
  }
  const sumLines = ['| config | pairs | seeds per pair | worst pair: mean gain | mean gain over pairs |', '|---|---|---|---|---|'];
  for (const s of summary) {
    const worst = s.gains.reduce((a, b) => (b.mean < a.mean ? b : a));
    sumLines.push(`| ${s.config} | ${s.gains.length} | ${[...new Set(s.gains.map((g) => g.n))].join('/')} | ${worst.mean.toFixed(4)} (${worst.key.replace('|', ' / ').replace('_imagenet', '')}) | ${mean(s.gains.map((g) => g.mean)).toFixed(4)} |`);
  }
  const table = `${sumLines.join('\n')}\n\n${lines.join('\n')}`;
  const text = readFileSync(doc, 'utf8');
  const start = '<!-- head-study:start -->', end = '<!-- head-study:end -->';
  if (!text.includes(start)) { console.log(table); return; }
  writeFileSync(doc, text.replace(new RegExp(`${start}[\\s\\S]*${end}`), `${start}\n${table}\n${end}`));
  console.error(`rendered ${rows.length} rows into docs/results.md`);
}
