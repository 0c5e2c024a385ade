#!/usr/bin/env node
// The working-resolution study (docs/results.md, "Resolution and tiling", issue 33, stage 1): the
// MVTec protocol (`evaluate`: fit on train/good, leave-one-out calibration, the whole test set) at
// resize 256 (today), 384 and 512 on screw, metal_plate and magnetic_tile, mobilenet_v1, the other
// options the product's defaults. Each run is a process of its own; one JSON line per run in
// docs/results/resolution.jsonl (a row already there is not run again).
// A resize is a number, 'auto' (resize: 'auto': about 384², never above the image's own size), or
// '<n>/t<size>' (resize n embedded in tiles of that size, the default overlap).
//   node scripts/results_resolution.mjs run [--datasets screw,metal_plate,magnetic_tile] [--resizes 256,384,512,auto,512/t256] [--seeds 0]
//   node scripts/results_resolution.mjs render
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const shared = path.resolve(root, '../shared');
const jsonl = path.join(root, 'docs/results/resolution.jsonl');
const doc = path.join(root, 'docs/results.md');
const args = process.argv.slice(2);
const opt = (name, d) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : d; };
const readRows = () => (existsSync(jsonl) ? readFileSync(jsonl, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : []);
/** The coreset ratio of each dataset (magnetic_tile at 1%, as in the head study's dev pairs). */
const CORESET = { screw: 0.1, metal_plate: 0.1, magnetic_tile: 0.01 };
/** A resize spec as the engine's options ('384' -> 384, 'auto', '512/t256' -> tiles of 256). */
function resizeOptions(spec) {
  const [resize, tiles] = String(spec).split('/t');
  return { resize: resize === 'auto' ? 'auto' : Number(resize), ...(tiles ? { tiles: { size: Number(tiles) } } : {}) };
}
const specOf = (text) => (/^\d+$/.test(text) ? Number(text) : text);
const order = (spec) => { const o = resizeOptions(spec); return (o.resize === 'auto' ? 300 : o.resize) + (o.tiles ? 0.5 : 0); };

if (args[0] === '--one') {
  const { dataset, resize, seed } = JSON.parse(args[1]);
  const { evaluate } = await import(pathToFileURL(path.join(root, 'dist/eval/evaluate.js')).href);
  const row = await evaluate(path.join(shared, 'datasets'), dataset, {
    backbone: path.join(shared, 'backbones', 'mobilenet_v1_imagenet.pt'), ...resizeOptions(resize), seed, coreset: { ratio: CORESET[dataset] },
  }, { log: () => {}, onScored: () => {} });
  process.stdout.write(`${JSON.stringify({ dataset, resize, ...row, date: new Date().toISOString(),
    command: `node scripts/results_resolution.mjs run --datasets ${dataset} --resizes ${resize} --seeds ${seed}` })}\n`);
} else if (args[0] === 'run') {
  for (const seed of opt('seeds', '0').split(',').map(Number))
    for (const dataset of opt('datasets', 'screw,metal_plate,magnetic_tile').split(','))
      for (const resize of opt('resizes', '256,384,512').split(',').map(specOf)) {
        if (readRows().some((r) => r.dataset === dataset && r.resize === resize && r.seed === seed)) continue;
        const line = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--one', JSON.stringify({ dataset, resize, seed })], { encoding: 'utf8', maxBuffer: 1 << 24 }).trim();
        appendFileSync(jsonl, `${line}\n`);
        const r = JSON.parse(line);
        console.error(`${dataset} resize ${resize} seed ${seed}: image AUROC ${r.image_auroc.toFixed(4)}, pixel ${r.pixel_auroc?.toFixed(4)}, fit ${r.fit_seconds.toFixed(0)} s, ${r.score_ms_per_image.toFixed(0)} ms/image`);
      }
} else if (args[0] === 'render') {
  const f = (x, d = 4) => (x === null || x === undefined ? '—' : x.toFixed(d));
  const lines = ['| dataset | resize | seed | image AUROC | pixel AUROC | PRO | recall at threshold | false alarms | fit s | score ms/image | peak RSS MiB |', '|---|---|---|---|---|---|---|---|---|---|---|'];
  for (const r of readRows().sort((a, b) => a.dataset.localeCompare(b.dataset) || order(a.resize) - order(b.resize) || a.seed - b.seed))
    lines.push(`| ${r.dataset} | ${r.resize} | ${r.seed} | ${f(r.image_auroc)} | ${f(r.pixel_auroc)} | ${f(r.pro, 3)} | ${f(r.decision?.recall, 3)} | ${f(r.decision?.false_alarm_rate, 3)} | ${f(r.fit_seconds, 0)} | ${f(r.score_ms_per_image, 0)} | ${r.peak_rss_mb} |`);
  // Mean (min–max) over seeds per dataset and configuration. On screw and metal_plate every image
  // has more than 384² pixels, so 'auto' is resize 384 exactly (the same computation): their 384
  // rows count as 'auto' rows too.
  const summary = ['| dataset | resize | seeds | image AUROC | pixel AUROC | PRO | recall at threshold | false alarms | score ms/image |', '|---|---|---|---|---|---|---|---|---|'];
  const groups = new Map();
  for (const r of readRows()) {
    const spec = r.resize === 384 && (r.dataset === 'screw' || r.dataset === 'metal_plate') ? 'auto' : r.resize;
    const key = `${r.dataset}|${spec}`;
    if (!groups.has(key)) groups.set(key, { dataset: r.dataset, spec, rows: [] });
    groups.get(key).rows.push(r);
  }
  const stat = (rows, get, d = 4) => {
    const v = rows.map(get).filter((x) => typeof x === 'number');
    if (v.length === 0) return '—';
    const mean = v.reduce((a, b) => a + b, 0) / v.length;
    return v.length === 1 ? mean.toFixed(d) : `${mean.toFixed(d)} (${Math.min(...v).toFixed(d)}–${Math.max(...v).toFixed(d)})`;
  };
  for (const g of [...groups.values()].sort((a, b) => a.dataset.localeCompare(b.dataset) || order(a.spec) - order(b.spec)))
    summary.push(`| ${g.dataset} | ${g.spec} | ${g.rows.map((r) => r.seed).sort().join(', ')} | ${stat(g.rows, (r) => r.image_auroc)} | ${stat(g.rows, (r) => r.pixel_auroc)} | ${stat(g.rows, (r) => r.pro, 3)} | ${stat(g.rows, (r) => r.decision?.recall, 3)} | ${stat(g.rows, (r) => r.decision?.false_alarm_rate, 3)} | ${stat(g.rows, (r) => r.score_ms_per_image, 0)} |`);
  const text = readFileSync(doc, 'utf8');
  const replace = (t, name, body) => t.replace(new RegExp(`<!-- ${name}:begin -->[\\s\\S]*<!-- ${name}:end -->`), `<!-- ${name}:begin -->\n${body.join('\n')}\n<!-- ${name}:end -->`);
  writeFileSync(doc, replace(replace(text, 'resolution', lines), 'resolution-summary', summary));
} else {
  console.error('usage: node scripts/results_resolution.mjs run [--datasets ...] [--resizes ...] [--seeds ...] | render');
  process.exit(2);
}
