#!/usr/bin/env node
// The head check of head: 'auto' against real labels (docs/results.md, "Head study v2", issue 27).
// Per pair and seed: the two models the check builds (with and without the head, on the fit images
// minus the ones it holds out), scored on the held-out images with their synthetic defects (the
// check's decision, per kind and size too) and on the real test set (the decision the labels
// make, by the same rule: head only when it gains more than the margin). Plus the time of each
// fit, to state what the check adds. One JSON line per run in docs/results/head_check.jsonl, with
// the command that reproduces it; a row already there is not run again.
//   node scripts/results_head_check.mjs run [--head <config of results_head2.mjs, or 'default'>] [--pairs ...] [--backbones ...] [--seeds 0,1,2]
//   node scripts/results_head_check.mjs render
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { CONFIGS, PAIRS } from './results_head2.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const shared = path.resolve(root, '../shared');
const jsonl = path.join(root, 'docs/results/head_check.jsonl');
const doc = path.join(root, 'docs/results.md');
const args = process.argv.slice(2);
const opt = (name, d) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : d; };
const BACKBONES = ['mobilenet_v1_imagenet', 'darknet_tiny_imagenet'];

if (args[0] === '--one') {
  const { head: headName, pair, backbone, seed } = JSON.parse(args[1]);
  const dist = (f) => import(pathToFileURL(path.join(root, 'dist', f)).href);
  const { Engine, HEAD_DEFAULTS } = await dist('index.js');
  const { readMvtecDataset } = await dist('eval/dataset.js');
  const { resolveInput, toRawFrame } = await dist('io/images.js');
  const { synthesizeDefects } = await dist('head_check/defects.js');
  const { HEAD_CHECK_MARGIN, aurocOf, decideHead, headCheckPicker } = await dist('head_check/check.js');
  const p = PAIRS[pair];
  const head = headName === 'default' ? true : CONFIGS[headName].head;
  const ds = await readMvtecDataset(path.join(shared, 'datasets'), p.category);
  const train = p.trainLimit ? ds.train.slice(0, p.trainLimit) : ds.train;
  const pick = headCheckPicker(train.length);
  const fitImages = train.filter((_, i) => !pick(i));
  const policy = { ...resolveInput(undefined), resizes: [] };
  const good = await Promise.all(train.filter((_, i) => pick(i)).map((f, i) => toRawFrame(f, i, policy)));
  const defects = synthesizeDefects(good, seed);
  const labels = ds.test.map((t) => t.label);
  const out = {};
  for (const [name, h] of [['patchcore', false], ['head', head]]) {
    const engine = await Engine.create({ backbone: path.join(shared, 'backbones', `${backbone}.pt`), coreset: { ratio: p.coreset }, seed, calibration: false, head: h });
    const t0 = performance.now();
    await engine.fit(fitImages);
    const fitSeconds = (performance.now() - t0) / 1000;
    const t1 = performance.now();
    const scores = async (items) => (await engine.scoreMany(items)).map((r) => r.score);
    const g = await scores(good);
    const d = await scores(defects.map((x) => x.frame));
    const checkSeconds = (performance.now() - t1) / 1000;
    const test = await scores(ds.test.map((t) => t.path));
    const r = { fitSeconds, checkSeconds, synthetic: aurocOf(g, d), real: aurocOf(test.filter((_, i) => !labels[i]), test.filter((_, i) => labels[i])), kinds: {}, sizes: {} };
    for (const k of new Set(defects.map((x) => x.kind))) r.kinds[k] = aurocOf(g, d.filter((_, i) => defects[i].kind === k));
    for (const z of new Set(defects.map((x) => x.size))) r.sizes[z] = aurocOf(g, d.filter((_, i) => defects[i].size === z));
    out[name] = r;
  }
  const check = decideHead(out.head.synthetic, out.patchcore.synthetic).decision;
  const labelled = decideHead(out.head.real, out.patchcore.real).decision;
  console.log(JSON.stringify({
    head: headName, head_options: head === true ? HEAD_DEFAULTS : head, pair, backbone, seed, fit_images: fitImages.length, held_out: good.length, defects: defects.length, margin: HEAD_CHECK_MARGIN,
    check_decision: check, label_decision: labelled, agree: check === labelled,
    synthetic_gain: out.head.synthetic - out.patchcore.synthetic, real_gain: out.head.real - out.patchcore.real, patchcore: out.patchcore, with_head: out.head,
    date: new Date().toISOString(), command: `node scripts/results_head_check.mjs run --head ${headName} --pairs ${pair} --backbones ${backbone} --seeds ${seed}`,
  }));
  process.exit(0);
}

function readRows() {
  if (!existsSync(jsonl)) return [];
  return readFileSync(jsonl, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

if (args[0] === 'run') {
  if (!existsSync(path.join(shared, 'datasets'))) {
    console.error(`../shared is absent (${shared}): nothing to evaluate`);
    process.exit(1);
  }
  const head = opt('head', 'default');
  if (head !== 'default' && !CONFIGS[head]?.head) throw new Error(`unknown head config '${head}'`);
  const seeds = opt('seeds', '0,1,2').split(',').map(Number);
  const pairs = opt('pairs', 'metal_plate@10,magnetic_tile@1').split(',');
  const backbones = opt('backbones', BACKBONES.join(',')).split(',');
  for (const seed of seeds)
    for (const pair of pairs)
      for (const backbone of backbones) {
        if (readRows().some((r) => r.head === head && r.pair === pair && r.backbone === backbone && r.seed === seed)) continue;
        const line = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--one', JSON.stringify({ head, pair, backbone, seed })],
          { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
        appendFileSync(jsonl, `${line}\n`);
        const r = JSON.parse(line);
        console.error(`${head} ${pair} ${backbone} seed ${seed}: check ${r.check_decision} (${r.synthetic_gain.toFixed(4)}), labels ${r.label_decision} (${r.real_gain.toFixed(4)})`);
      }
} else if (args[0] === 'render') {
  const rows = readRows();
  const f = (x) => (x >= 0 ? '+' : '') + x.toFixed(4);
  const lines = ['| head | pair | backbone | seed | synthetic AUROC (PatchCore → head) | real AUROC (PatchCore → head) | check keeps | labels keep | agree | fit s (PatchCore / head) | check s |', '|---|---|---|---|---|---|---|---|---|---|---|'];
  for (const r of rows)
    lines.push(`| ${r.head} | ${r.pair} | ${r.backbone.replace('_imagenet', '')} | ${r.seed} | ${r.patchcore.synthetic.toFixed(4)} → ${r.with_head.synthetic.toFixed(4)} (${f(r.synthetic_gain)}) | ` +
      `${r.patchcore.real.toFixed(4)} → ${r.with_head.real.toFixed(4)} (${f(r.real_gain)}) | ${r.check_decision} | ${r.label_decision} | ${r.agree ? 'yes' : '**no**'} | ` +
      `${r.patchcore.fitSeconds.toFixed(0)} / ${r.with_head.fitSeconds.toFixed(0)} | ${(r.patchcore.checkSeconds + r.with_head.checkSeconds).toFixed(0)} |`);
  const heads = [...new Set(rows.map((r) => r.head))];
  const agreement = heads.map((h) => { const rs = rows.filter((r) => r.head === h); return `${h} ${rs.filter((r) => r.agree).length} of ${rs.length} runs`; });
  const table = `${lines.join('\n')}\n\nAgreement by head configuration: ${agreement.join('; ')}.`;
  const text = readFileSync(doc, 'utf8');
  const start = '<!-- head-check:start -->', end = '<!-- head-check:end -->';
  if (!text.includes(start)) { console.log(table); process.exit(0); }
  writeFileSync(doc, text.replace(new RegExp(`${start}[\\s\\S]*${end}`), `${start}\n${table}\n${end}`));
  console.error(`rendered ${rows.length} rows into docs/results.md`);
} else {
  console.error('usage: node scripts/results_head_check.mjs run [--head default|<config>] [--pairs ...] [--backbones ...] [--seeds ...] | render');
  process.exit(2);
}
