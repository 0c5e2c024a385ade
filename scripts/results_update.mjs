#!/usr/bin/env node
// Models that grow (docs/results.md, "Update and bounded fits"): on metal_plate and magnetic_tile
// with mobilenet_v1 (the PatchCore protocol: squash 256, crop 224), per seed:
//   all      one fit on every training image
//   update   a fit on the first half, then update() with the second half
//   again    that model updated once more with the first half (images it has seen)
//   bounded  one fit on every image with maxStagedPatches = a quarter of the patches
// image / pixel AUROC, PRO, bank rows, seconds, and each run's own peak RSS (every run is a
// process of its own). Raw rows: docs/results/update.jsonl.
//   node scripts/results_update.mjs [--seeds 0,1,2] [--only metal_plate]
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const shared = path.resolve(root, '../shared');
const out = path.join(root, 'docs/results/update.jsonl');
const args = process.argv.slice(2);
const opt = (name, d) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : d; };

if (args[0] === '--run') {
  const { category, mode, seed, coreset } = JSON.parse(args[1]);
  const { Engine } = await import(pathToFileURL(path.join(root, 'dist/index.js')).href);
  const { readMvtecDataset, measureEngine } = await import(pathToFileURL(path.join(root, 'dist/eval/index.js')).href);
  const data = await readMvtecDataset(path.join(shared, 'datasets'), category);
  const options = {
    head: false, backbone: path.join(shared, 'backbones/mobilenet_v1_imagenet.pt'), resizeMode: 'squash', resize: 256, crop: 224,
    coreset: { ratio: coreset }, seed, calibration: false,
  };
  const engine = await Engine.create(options);
  const half = Math.floor(data.train.length / 2);
  const started = performance.now();
  const row = { category, mode, seed, coreset, train: data.train.length };
  if (mode === 'all') {
    await engine.fit(data.train);
  } else if (mode === 'bounded') {
    const probe = await Engine.create(options); // the patches per image, to set a quarter of all patches
    const perImage = (await probe.embed(data.train[0])).rows;
    row.max_staged_patches = Math.floor((perImage * data.train.length) / 4);
    await engine.fit(data.train, { maxStagedPatches: row.max_staged_patches });
  } else {
    await engine.fit(data.train.slice(0, half));
    row.bank_after_half = engine.info.bankRows;
    const u = await engine.update(data.train.slice(half));
    row.update_added_rows = u.addedRows;
    row.update_seconds = u.seconds;
    if (mode === 'again') {
      const again = await engine.update(data.train.slice(0, half));
      row.again_added_rows = again.addedRows;
    }
  }
  row.seconds = (performance.now() - started) / 1000;
  row.bank_rows = engine.info.bankRows;
  const m = await measureEngine(engine, data.test, { log: () => {} });
  Object.assign(row, m.quality, { peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024) });
  console.log(JSON.stringify(row));
  process.exit(0);
}

if (!existsSync(path.join(shared, 'datasets'))) {
  console.error(`../shared is absent (${shared}): nothing to measure`);
  process.exit(1);
}
const seeds = opt('seeds', '0,1,2').split(',').map(Number);
const datasets = [{ category: 'metal_plate', coreset: 0.1 }, { category: 'magnetic_tile', coreset: 0.01 }].filter((d) => !opt('only') || d.category === opt('only'));
for (const d of datasets)
  for (const seed of seeds)
    for (const mode of ['all', 'update', 'again', 'bounded']) {
      if (mode === 'again' && seed !== seeds[0]) continue; // one seed is enough to count rows
      console.error(`${d.category} seed ${seed} ${mode}`);
      const line = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--run', JSON.stringify({ ...d, mode, seed })],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 }).trim().split('\n').pop();
      appendFileSync(out, `${line}\n`);
      console.error(line);
    }
