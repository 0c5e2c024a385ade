#!/usr/bin/env node
// Synthetic defects as an evaluation (docs/results.md, issue 27 item 5): does recall on synthetic
// defects at the deployed threshold (`reconpatch eval --good <train/good>`, which sees good images
// only) predict the recall real defects get (`reconpatch eval`, the real test set, same options)?
// Per dataset, backbone and seed: both evaluations, one JSON line in
// docs/results/synthetic_eval.jsonl with the command that reproduces it; a row already there is
// not run again.
//   node scripts/results_synthetic_eval.mjs run [--datasets metal_plate,magnetic_tile,screw] [--backbones ...] [--seeds 0]
//   node scripts/results_synthetic_eval.mjs render
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const shared = path.resolve(root, '../shared');
const jsonl = path.join(root, 'docs/results/synthetic_eval.jsonl');
const doc = path.join(root, 'docs/results.md');
const args = process.argv.slice(2);
const opt = (name, d) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : d; };
const BACKBONES = ['mobilenet_v1_imagenet', 'darknet_tiny_imagenet'];
// The rule, stated before any row (docs/results.md): synthetic recall predicts real recall
// "reasonably" when it is within TOLERANCE of it on every pair but at most one, and ranks the
// pairs with Spearman rho >= MIN_RHO.
const TOLERANCE = 0.2;
const MIN_RHO = 0.6;

if (args[0] === '--one') {
  const { dataset, backbone, seed } = JSON.parse(args[1]);
  const { evaluate, evaluateGoodOnly } = await import(pathToFileURL(path.join(root, 'dist/eval/index.js')).href);
  // PatchCore (head off): the product's default when the study was designed and its first row ran.
  const options = { head: false, backbone: path.join(shared, 'backbones', `${backbone}.pt`), seed };
  const quiet = { log: () => {}, onScored: () => {} };
  const synthetic = await evaluateGoodOnly(path.join(shared, 'datasets', dataset, 'train', 'good'), options, {});
  const real = await evaluate(path.join(shared, 'datasets'), dataset, options, quiet);
  console.log(JSON.stringify({
    dataset, backbone, seed,
    synthetic_recall: synthetic.synthetic_recall, real_recall: real.decision?.recall ?? null,
    synthetic_auroc: synthetic.synthetic_auroc, real_auroc: real.image_auroc,
    synthetic_false_alarms: `${synthetic.good_flagged}/${synthetic.n_held_out}`, real_false_alarms: `${real.decision?.good_flagged}/${real.decision?.good}`,
    recall_by_kind: synthetic.recall_by_kind, recall_by_size: synthetic.recall_by_size,
    good_only: { n_fit: synthetic.n_fit, n_held_out: synthetic.n_held_out, threshold: synthetic.threshold, fit_seconds: synthetic.fit_seconds },
    real_eval: { n_train: real.n_train, n_test: real.n_test, threshold: real.decision?.threshold ?? null, fit_seconds: real.fit_seconds },
    date: new Date().toISOString(), command: `node scripts/results_synthetic_eval.mjs run --datasets ${dataset} --backbones ${backbone} --seeds ${seed}`,
  }));
  process.exit(0);
}

function readRows() {
  if (!existsSync(jsonl)) return [];
  return readFileSync(jsonl, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

/** Spearman's rho (average ranks for ties). */
function spearman(a, b) {
  const rank = (v) => {
    const order = v.map((x, i) => [x, i]).sort((p, q) => p[0] - q[0]);
    const r = new Array(v.length);
    for (let i = 0; i < order.length;) {
      let j = i;
      while (j + 1 < order.length && order[j + 1][0] === order[i][0]) j++;
      for (let k = i; k <= j; k++) r[order[k][1]] = (i + j) / 2;
      i = j + 1;
    }
    return r;
  };
  const ra = rank(a), rb = rank(b);
  const mean = (v) => v.reduce((s, x) => s + x, 0) / v.length;
  const ma = mean(ra), mb = mean(rb);
  let num = 0, da = 0, db = 0;
  for (let i = 0; i < ra.length; i++) { num += (ra[i] - ma) * (rb[i] - mb); da += (ra[i] - ma) ** 2; db += (rb[i] - mb) ** 2; }
  return num / Math.sqrt(da * db);
}

if (args[0] === 'run') {
  if (!existsSync(path.join(shared, 'datasets'))) {
    console.error(`../shared is absent (${shared}): nothing to evaluate`);
    process.exit(1);
  }
  const datasets = opt('datasets', 'metal_plate,magnetic_tile,screw').split(',');
  const backbones = opt('backbones', BACKBONES.join(',')).split(',');
  const seeds = opt('seeds', '0').split(',').map(Number);
  for (const seed of seeds)
    for (const dataset of datasets)
      for (const backbone of backbones) {
        if (readRows().some((r) => r.dataset === dataset && r.backbone === backbone && r.seed === seed)) continue;
        const line = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--one', JSON.stringify({ dataset, backbone, seed })],
          { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim().split('\n').pop();
        appendFileSync(jsonl, `${line}\n`);
        const r = JSON.parse(line);
        console.error(`${dataset} ${backbone} seed ${seed}: synthetic recall ${r.synthetic_recall.toFixed(3)}, real ${r.real_recall?.toFixed(3)}`);
      }
} else if (args[0] === 'render') {
  const rows = readRows();
  const f = (x) => (x === null || x === undefined ? '-' : x.toFixed(3));
  const lines = ['| dataset | backbone | seed | synthetic recall | real recall | difference | synthetic AUROC | real image AUROC | false alarms (held-out good / real test good) |', '|---|---|---|---|---|---|---|---|---|'];
  for (const r of rows)
    lines.push(`| ${r.dataset} | ${r.backbone.replace('_imagenet', '')} | ${r.seed} | ${f(r.synthetic_recall)} | ${f(r.real_recall)} | ${f(r.synthetic_recall - r.real_recall)} | ${f(r.synthetic_auroc)} | ${f(r.real_auroc)} | ${r.synthetic_false_alarms} / ${r.real_false_alarms} |`);
  const within = rows.filter((r) => Math.abs(r.synthetic_recall - r.real_recall) <= TOLERANCE).length;
  const rho = rows.length > 2 ? spearman(rows.map((r) => r.synthetic_recall), rows.map((r) => r.real_recall)) : NaN;
  const met = rows.length > 2 && within >= rows.length - 1 && rho >= MIN_RHO;
  const summary = rows.length < 3
    ? `${rows.length} of the design's ${3 * BACKBONES.length} pairs measured so far: too few to apply the rule (it needs at least 3).`
    : `Within ${TOLERANCE} of real recall on ${within} of ${rows.length} pairs; Spearman rho ${rho.toFixed(2)} over the pairs. ` +
      `The rule (within ${TOLERANCE} on all pairs but at most one, and rho >= ${MIN_RHO}) is ${met ? '**met**' : '**not met**'}.`;
  const table = `${lines.join('\n')}\n\n${summary}`;
  const text = readFileSync(doc, 'utf8');
  const start = '<!-- synthetic-eval:start -->', end = '<!-- synthetic-eval:end -->';
  if (!text.includes(start)) { console.log(table); process.exit(0); }
  writeFileSync(doc, text.replace(new RegExp(`${start}[\\s\\S]*${end}`), `${start}\n${table}\n${end}`));
  console.error(`rendered ${rows.length} rows into docs/results.md`);
} else {
  console.error('usage: node scripts/results_synthetic_eval.mjs run [--datasets ...] [--backbones ...] [--seeds ...] | render');
  process.exit(2);
}
