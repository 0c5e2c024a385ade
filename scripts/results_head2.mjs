#!/usr/bin/env node
// Head study v2 (docs/results.md, "Head study v2", issue 27): the method's training regime, margin,
// bandwidth and image score, staged to fit a 2-core machine. Every run is a process of its own;
// each appends one JSON line to docs/results/head_study2.jsonl with the command that reproduces it.
// A row already there (same config, pair and seed) is not run again.
//   node scripts/results_head2.mjs run <config>[,...] [--pairs <pair>[,...]] [--backbones ...] [--seeds 0,1,2]
//   node scripts/results_head2.mjs render        rewrite the v2 tables in docs/results.md
//   node scripts/results_head2.mjs list          configurations and pairs
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const shared = path.resolve(root, '../shared');
const jsonl = path.join(root, 'docs/results/head_study2.jsonl');
const doc = path.join(root, 'docs/results.md');
// Imported for its tables (results_head_check.mjs): then it runs nothing.
const isMain = process.argv[1] !== undefined && pathToFileURL(path.resolve(process.argv[1])).href === import.meta.url;
const args = isMain ? process.argv.slice(2) : [];
const opt = (name, d) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : d; };

// The regime is counted in epochs over a pool of at most 65,536 patches: at N = 1024 one epoch is
// 64 steps whatever the training set's size, so training time is bounded on a CPU (RECONPATCH.md
// §2 trains on every patch; metal_plate has 50,176 patches, magnetic_tile 597,408).
const STEPS_PER_EPOCH = 64;
const epochs = (e) => e * STEPS_PER_EPOCH;
// The centre: the public ports' regime (margin 0.1, fixed bandwidth on raw f-space distances,
// lr 1e-4, EMA 0.97, the cosine schedule over the whole budget: plateau off), 4 epochs.
const C = {
  iterations: epochs(4), batch: 1024, lr: 1e-4, weightDecay: 1e-2, ema: 0.97, margin: 0.1, sigma: 1, sigmaRule: 'fixed',
  k: 5, alpha: 0.5, normalize: false, plateau: 0,
};
// null head: PatchCore. `reweight`: the paper's Eq. 7 image score instead of the max.
export const CONFIGS = {
  patchcore: { head: null },
  'patchcore-eq7': { head: null, reweight: true },
  c: { head: C },
  'c-m0.5': { head: { ...C, margin: 0.5 } },
  'c-m1': { head: { ...C, margin: 1 } },
  'c-knn': { head: { ...C, sigmaRule: 'knn' } },
  'c-e1': { head: { ...C, iterations: epochs(1) } },
  'c-e16': { head: { ...C, iterations: epochs(16) } },
  'c-lr1e-5': { head: { ...C, lr: 1e-5 } },
  'c-ema0.995': { head: { ...C, ema: 0.995 } },
  'c-eq7': { head: C, reweight: true },
};
// Screen pairs use the first 192 of magnetic_tile's 762 training images (its 1% fit is 65 s on
// all of them); confirmation pairs are the four dev pairs of study v1, on all images.
export const PAIRS = {
  'metal_plate@10': { category: 'metal_plate', coreset: 0.1 },
  'metal_plate@1': { category: 'metal_plate', coreset: 0.01 },
  'magnetic_tile192@1': { category: 'magnetic_tile', coreset: 0.01, trainLimit: 192 },
  'magnetic_tile192@10': { category: 'magnetic_tile', coreset: 0.1, trainLimit: 192 },
  'magnetic_tile@1': { category: 'magnetic_tile', coreset: 0.01 },
};
const BACKBONES = ['mobilenet_v1_imagenet', 'darknet_tiny_imagenet'];
// The pairs each stage of the design judges on (the summary table: worst pair, mean over pairs).
const STAGES = {
  screen: ['metal_plate@10', 'magnetic_tile192@1'],
  ratio: ['metal_plate@1', 'magnetic_tile192@10'],
  confirm: ['metal_plate@10', 'magnetic_tile@1'],
};

if (isMain && args[0] === '--one') {
  const { config, pair, backbone, seed } = JSON.parse(args[1]);
  const { evaluate } = await import(pathToFileURL(path.join(root, 'dist/eval/index.js')).href);
  const { head, reweight } = CONFIGS[config];
  const p = PAIRS[pair];
  const options = {
    backbone: path.join(shared, 'backbones', `${backbone}.pt`), coreset: { ratio: p.coreset }, seed, calibration: false,
    head: head ?? false, ...(reweight ? { scoring: { reweight: true } } : {}),
  };
  let headStart = 0, headSeconds = 0, lastLoss = null, firstLoss = null, headIterations = 0;
  const onProgress = (pr) => {
    if (pr.stage !== 'head') return;
    if (!headStart) headStart = performance.now();
    headSeconds = (performance.now() - headStart) / 1000;
    if (firstLoss === null) firstLoss = pr.loss;
    lastLoss = pr.loss;
    headIterations = pr.done;
  };
  const row = await evaluate(path.join(shared, 'datasets'), p.category, options,
    { onProgress, onScored: () => {}, log: () => {}, ...(p.trainLimit ? { trainLimit: p.trainLimit } : {}) });
  const { decision, ...metrics } = row;
  console.log(JSON.stringify({
    config, pair, ...metrics, backbone, head_options: head, reweight: !!reweight, head_iterations: headIterations, head_seconds: headSeconds,
    first_loss: firstLoss, last_loss: lastLoss, date: new Date().toISOString(),
    command: `node scripts/results_head2.mjs run ${config} --pairs ${pair} --backbones ${backbone} --seeds ${seed}`,
  }));
  process.exit(0);
}

function readRows() {
  if (!existsSync(jsonl)) return [];
  return readFileSync(jsonl, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

if (!isMain) {
  // imported
} else if (args[0] === 'list') {
  for (const [name, c] of Object.entries(CONFIGS)) console.log(name, JSON.stringify(c));
  for (const [name, p] of Object.entries(PAIRS)) console.log(name, JSON.stringify(p));
} else if (args[0] === 'run') {
  if (!existsSync(path.join(shared, 'datasets'))) {
    console.error(`../shared is absent (${shared}): nothing to evaluate`);
    process.exit(1);
  }
  const configs = (args[1] ?? '').split(',').filter(Boolean);
  for (const c of configs) if (!(c in CONFIGS)) throw new Error(`unknown config '${c}' (node scripts/results_head2.mjs list)`);
  const seeds = opt('seeds', '0').split(',').map(Number);
  const pairs = opt('pairs', 'metal_plate@10,magnetic_tile192@1').split(',');
  for (const p of pairs) if (!(p in PAIRS)) throw new Error(`unknown pair '${p}'`);
  const backbones = opt('backbones', BACKBONES.join(',')).split(',');
  for (const seed of seeds)
    for (const config of configs)
      for (const pair of pairs)
        for (const backbone of backbones) {
          if (readRows().some((r) => r.config === config && r.pair === pair && r.backbone === backbone && r.seed === seed)) continue;
          const started = Date.now();
          const line = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--one', JSON.stringify({ config, pair, backbone, seed })],
            { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
          appendFileSync(jsonl, `${line}\n`);
          const r = JSON.parse(line);
          console.error(`${config} ${pair} ${backbone} seed ${seed}: image ${r.image_auroc.toFixed(4)} pixel ${r.pixel_auroc.toFixed(4)} ` +
            `head ${r.head_seconds.toFixed(0)} s (${((Date.now() - started) / 1000).toFixed(0)} s)`);
        }
} else if (args[0] === 'render') {
  render();
} else {
  console.error('usage: node scripts/results_head2.mjs run <config>[,...] [--pairs ...] [--backbones ...] [--seeds 0,1,2] | render | list');
  process.exit(2);
}

function render() {
  const rows = readRows();
  const short = (b) => b.replace('_imagenet', '');
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  // PatchCore (max image score) per pair, backbone and seed: what every row is compared with.
  const pc = new Map(rows.filter((r) => r.config === 'patchcore').map((r) => [`${r.pair}|${r.backbone}|${r.seed}`, r]));
  const lines = ['| config | pair | backbone | seeds | image AUROC (min–max) | gain vs PatchCore (min / mean / max) | pixel AUROC | head its | head s |', '|---|---|---|---|---|---|---|---|---|'];
  const summary = new Map();
  for (const config of Object.keys(CONFIGS))
    for (const pair of Object.keys(PAIRS))
      for (const backbone of BACKBONES) {
        const rs = rows.filter((r) => r.config === config && r.pair === pair && r.backbone === backbone).sort((a, b) => a.seed - b.seed);
        if (rs.length === 0) continue;
        const g = rs.filter((r) => pc.has(`${pair}|${backbone}|${r.seed}`)).map((r) => r.image_auroc - pc.get(`${pair}|${backbone}|${r.seed}`).image_auroc);
        const a = rs.map((r) => r.image_auroc);
        lines.push(`| ${config} | ${pair} | ${short(backbone)} | ${rs.map((r) => r.seed).join(',')} | ${mean(a).toFixed(4)} (${Math.min(...a).toFixed(4)}–${Math.max(...a).toFixed(4)}) | ` +
          `${config === 'patchcore' || g.length === 0 ? '' : `${Math.min(...g).toFixed(4)} / ${mean(g).toFixed(4)} / ${Math.max(...g).toFixed(4)}`} | ` +
          `${mean(rs.map((r) => r.pixel_auroc)).toFixed(4)} | ${rs[0].head_iterations || ''} | ${rs[0].head_options ? mean(rs.map((r) => r.head_seconds)).toFixed(0) : ''} |`);
        if (config !== 'patchcore' && g.length)
          for (const [stage, pairs] of Object.entries(STAGES)) {
            if (!pairs.includes(pair)) continue;
            // The screen is seed 0 only; the confirmation every seed.
            const gs = stage === 'screen' ? rs.filter((r) => r.seed === 0 && pc.has(`${pair}|${backbone}|0`)).map((r) => r.image_auroc - pc.get(`${pair}|${backbone}|0`).image_auroc) : g;
            if (gs.length === 0 || (stage === 'confirm' && rs.length < 3)) continue;
            const key = `${config}|${stage}`;
            if (!summary.has(key)) summary.set(key, []);
            summary.get(key).push({ pair: `${pair} / ${short(backbone)}`, mean: mean(gs), n: gs.length });
          }
      }
  const sumLines = ['| config | stage | pairs | seeds per pair | worst pair: mean gain | mean gain over pairs |', '|---|---|---|---|---|---|'];
  for (const [key, gains] of summary) {
    const [config, stage] = key.split('|');
    const worst = gains.reduce((a, b) => (b.mean < a.mean ? b : a));
    sumLines.push(`| ${config} | ${stage} | ${gains.length} | ${[...new Set(gains.map((x) => x.n))].join('/')} | ${worst.mean.toFixed(4)} (${worst.pair}) | ${mean(gains.map((x) => x.mean)).toFixed(4)} |`);
  }
  const table = `${sumLines.join('\n')}\n\n${lines.join('\n')}`;
  const text = readFileSync(doc, 'utf8');
  const start = '<!-- head-study2:start -->', end = '<!-- head-study2:end -->';
  if (!text.includes(start)) { console.log(table); return; }
  writeFileSync(doc, text.replace(new RegExp(`${start}[\\s\\S]*${end}`), `${start}\n${table}\n${end}`));
  console.error(`rendered ${rows.length} rows into docs/results.md`);
}
