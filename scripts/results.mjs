#!/usr/bin/env node
// Regenerates the quality table in docs/results.md: runs `reconpatch eval` for every row of the
// matrix below (PatchCore vs ReConPatch on the shared datasets and backbones), appends each JSON
// line to docs/results/eval.jsonl, and rewrites the table between the markers.
//   node scripts/results.mjs            run the matrix (about 30 minutes on 2 cores), then render
//   node scripts/results.mjs --render   only re-render the table from docs/results/eval.jsonl
//   node scripts/results.mjs --ensemble [--render]   the same for the ensemble of both backbones
//                                       (docs/results/ensemble.jsonl, its own table; over an hour on 2 busy cores)
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const shared = path.resolve(root, '../shared');
const jsonl = path.join(root, 'docs/results/eval.jsonl');
const doc = path.join(root, 'docs/results.md');

const BACKBONES = ['mobilenet_v1_imagenet', 'darknet_tiny_imagenet'];
const DATASETS = [
  { category: 'metal_plate', args: ['--coreset', '0.1'], seeds: [0, 1] },
  { category: 'magnetic_tile', args: ['--coreset', '0.01', '--train-limit', '200'], seeds: [0] },
];
const MODES = [{ name: 'PatchCore', args: ['--no-head'] }, { name: 'ReConPatch', args: ['--head'] }];
const render = process.argv.includes('--render');

if (process.argv.includes('--ensemble')) {
  ensembleMatrix();
  process.exit(0);
}

if (!render) {
  if (!existsSync(path.join(shared, 'datasets'))) {
    console.error(`../shared is absent (${shared}): nothing to evaluate`);
    process.exit(1);
  }
  for (const d of DATASETS)
    for (const bb of BACKBONES)
      for (const seed of d.seeds)
        for (const mode of MODES) {
          const args = [
            path.join(root, 'dist/cli/main.js'), 'eval', '--data', path.join(shared, 'datasets'), '--category', d.category,
            '--backbone', path.join(shared, 'backbones', `${bb}.pt`), '--protocol', 'patchcore', '--seed', String(seed),
            '--json', ...d.args, ...mode.args,
          ];
          console.error(`eval ${d.category} ${bb} ${mode.name} seed ${seed}`);
          const line = execFileSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
          appendFileSync(jsonl, `${line}\n`);
        }
}

// Render: the latest row per (category, backbone, head, seed), then means over seeds.
const rows = new Map();
for (const line of readFileSync(jsonl, 'utf8').split('\n').filter(Boolean)) {
  const r = JSON.parse(line);
  rows.set(`${r.category}|${r.backbone}|${r.head}|${r.seed}`, r);
}
const groups = new Map();
for (const r of rows.values()) {
  const key = `${r.category}|${r.backbone}|${r.head}`;
  groups.set(key, [...(groups.get(key) ?? []), r]);
}
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const fmt = (x) => x.toFixed(4);
const lines = ['| data | backbone | mode | seeds | image AUROC | pixel AUROC | PRO | fit s |', '|---|---|---|---|---|---|---|---|'];
const totals = { false: [], true: [] };
for (const d of DATASETS)
  for (const bb of BACKBONES)
    for (const head of [false, true]) {
      const g = groups.get(`${d.category}|${bb}|${head}`);
      if (!g) continue;
      const m = { image: mean(g.map((r) => r.image_auroc)), pixel: mean(g.map((r) => r.pixel_auroc)), pro: mean(g.map((r) => r.pro)) };
      totals[head].push(m);
      const spread = g.length > 1 ? ` (±${fmt((Math.max(...g.map((r) => r.image_auroc)) - Math.min(...g.map((r) => r.image_auroc))) / 2)})` : '';
      lines.push(`| ${d.category} | ${bb.replace('_imagenet', '')} | ${head ? 'ReConPatch' : 'PatchCore'} | ${g.map((r) => r.seed).join(',')} | ${fmt(m.image)}${spread} | ${fmt(m.pixel)} | ${fmt(m.pro)} | ${mean(g.map((r) => r.fit_seconds)).toFixed(0)} |`);
    }
for (const head of [false, true]) {
  const t = totals[head];
  if (t.length) lines.push(`| **mean** | | **${head ? 'ReConPatch' : 'PatchCore'}** | | **${fmt(mean(t.map((m) => m.image)))}** | **${fmt(mean(t.map((m) => m.pixel)))}** | **${fmt(mean(t.map((m) => m.pro)))}** | |`);
}
const text = readFileSync(doc, 'utf8');
const start = '<!-- results:start -->';
const end = '<!-- results:end -->';
writeFileSync(doc, `${text.slice(0, text.indexOf(start) + start.length)}\n${lines.join('\n')}\n${text.slice(text.indexOf(end))}`);
console.error(`rendered ${rows.size} runs into docs/results.md`);

// The ensemble of both backbones, one `reconpatch eval` per (dataset, mode): each run fits both
// members and reports the fused metrics (test-set min-max, --protocol patchcore) and each member's own.
function ensembleMatrix() {
  const out = path.join(root, 'docs/results/ensemble.jsonl');
  if (!render) {
    if (!existsSync(path.join(shared, 'datasets'))) {
      console.error(`../shared is absent (${shared}): nothing to evaluate`);
      process.exit(1);
    }
    const backbones = BACKBONES.map((bb) => path.join(shared, 'backbones', `${bb}.pt`)).join(',');
    for (const mode of MODES)
      for (const d of DATASETS) {
        const args = [
          path.join(root, 'dist/cli/main.js'), 'eval', '--data', path.join(shared, 'datasets'), '--category', d.category,
          '--backbone', backbones, '--protocol', 'patchcore', '--seed', '0', '--json', ...d.args, ...mode.args,
        ];
        console.error(`ensemble eval ${d.category} ${mode.name}`);
        const line = execFileSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
        appendFileSync(out, `${line}\n`);
      }
  }
  const latest = new Map();
  for (const line of readFileSync(out, 'utf8').split('\n').filter(Boolean)) {
    const r = JSON.parse(line);
    latest.set(`${r.category}|${r.head}|${r.seed}`, r);
  }
  const f = (x) => (x === null ? '–' : x.toFixed(4));
  const lines = ['| data | mode | model | image AUROC | pixel AUROC | PRO |', '|---|---|---|---|---|---|'];
  for (const d of DATASETS)
    for (const head of [false, true]) {
      const r = latest.get(`${d.category}|${head}|0`);
      if (!r) continue;
      const mode = head ? 'ReConPatch' : 'PatchCore';
      for (const m of r.members) lines.push(`| ${d.category} | ${mode} | ${m.backbone.replace('_imagenet', '')} alone | ${f(m.image_auroc)} | ${f(m.pixel_auroc)} | ${f(m.pro)} |`);
      const best = (k) => Math.max(...r.members.map((m) => m[k]));
      const mark = (k) => (r[k] >= best(k) ? `**${f(r[k])}**` : f(r[k]));
      lines.push(`| ${d.category} | ${mode} | ensemble (test min-max) | ${mark('image_auroc')} | ${mark('pixel_auroc')} | ${mark('pro')} |`);
    }
  const text = readFileSync(doc, 'utf8');
  const start = '<!-- ensemble:start -->';
  const end = '<!-- ensemble:end -->';
  if (!text.includes(start)) throw new Error(`docs/results.md has no ${start} marker`);
  writeFileSync(doc, `${text.slice(0, text.indexOf(start) + start.length)}\n${lines.join('\n')}\n${text.slice(text.indexOf(end))}`);
  console.error(`rendered ${latest.size} ensemble runs into docs/results.md`);
}
