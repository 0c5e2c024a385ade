#!/usr/bin/env node
/**
 * The `reconpatch` command line: fit on good parts, score images, evaluate on an MVTec-layout
 * dataset, or run a demo on a generated one. Results go to stdout, progress and logs to stderr.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import cliProgress from 'cli-progress';

import { listImages, readMask, readMvtecDataset } from '../eval/dataset.js';
import { Engine } from '../engine/engine.js';
import { Ensemble, type EnsembleProgress, type MemberOutputs, fuseTestMinMax } from '../ensemble/ensemble.js';
import { ReconpatchError } from '../errors.js';
import { auroc, f1Max, pixelAuroc, pro } from '../eval/metrics.js';
import type { EngineOptions, HeadOptions } from '../options.js';
import { libtorchCommand } from './libtorch.js';
import { makeSyntheticDataset } from '../eval/synthetic.js';
import { type DownloadProgress, TORCHVISION_ARCHITECTURES, TORCHVISION_WEIGHTS, cachedWeights, defaultCacheDir, pullWeights } from '../io/weights.js';

const ENGINE_FLAGS = {
  backbone: { type: 'string', multiple: true },
  weights: { type: 'string' },
  layers: { type: 'string' },
  resize: { type: 'string' },
  crop: { type: 'string' },
  'resize-mode': { type: 'string' },
  coreset: { type: 'string' },
  seed: { type: 'string' },
  threads: { type: 'string' },
  device: { type: 'string' },
  head: { type: 'boolean' },
  'head-iterations': { type: 'string' },
  'head-lr': { type: 'string' },
  'head-batch': { type: 'string' },
  'head-sigma': { type: 'string' },
  'head-normalize': { type: 'boolean' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

const ENGINE_HELP = `Engine options:
  --backbone <name|file.pt>   random_cnn, a torchvision architecture (resnet18, resnet50, wide_resnet50_2,
                              wide_resnet101_2, resnext101_32x8d, densenet201; weights from
                              'reconpatch weights pull <name>') or a TorchScript backbone file; several
                              (a.pt,b.pt or repeated --backbone) make an ensemble: one engine per
                              backbone with these options, scores fused by per-member min-max
  --weights <file.pth>        torchvision architectures: this state dict instead of the cached weights
  --layers <a,b>              torchvision taps (default layer2,layer3; denseblock2,denseblock3)
  --resize <px|none>          resize target (default 256)
  --crop <px|none>            center crop (default 224)
  --resize-mode shorter|squash
  --coreset <ratio>           coreset ratio (default 0.1)
  --head                      train the ReConPatch head (default off: PatchCore)
  --head-iterations <n>  --head-lr <x>  --head-batch <n>  --head-sigma <x>  --head-normalize
  --seed <n>  --threads <n>  --device cpu|cuda|auto
  --json                      one JSON line on stdout`;

const USAGE = `reconpatch <command> [options]

Commands:
  demo [--dir <path>]                          generate a synthetic defect dataset, fit and evaluate on it
  eval --data <root> --category <name>         fit on <root>/<name>/train/good, score <root>/<name>/test
  fit <dir|glob> -o <model.rcp>                fit on the images in <dir> (10% held out to calibrate the threshold);
                                               several --backbone values fit an ensemble saved as one file
  score <model.rcp> <image...>                 score images with a saved model or ensemble [--heatmaps <dir>] [--json]
  info <model.rcp>                             show a model's options, backbone, bank and calibration (and members)
  weights pull <name> [--from <url|file>]      download torchvision's official weights into the cache
  weights list                                 the known weights and whether they are cached
  libtorch --variant cpu|cuda [--download]     assemble a libtorch from PyTorch wheels into the cache and check it
  libtorch list                                the libtorches found, this package's addons, and the pair loaded

Run 'reconpatch <command> --help' for its options.`;

function engineOptions(v: Record<string, unknown>, defaults: Partial<EngineOptions> = {}): EngineOptions {
  const num = (x: unknown) => (x === undefined ? undefined : Number(x));
  const size = (x: unknown) => (x === undefined ? undefined : x === 'none' ? null : Number(x));
  const o: EngineOptions = { ...defaults, backbone: backbonesOf(v)[0] ?? defaults.backbone ?? 'random_cnn' };
  if (v.weights !== undefined) o.weights = v.weights as string;
  if (v.layers !== undefined) o.layers = (v.layers as string).split(',');
  if (v.resize !== undefined) o.resize = size(v.resize);
  if (v.crop !== undefined) o.crop = size(v.crop);
  if (v['resize-mode'] !== undefined) o.resizeMode = v['resize-mode'] as EngineOptions['resizeMode'];
  if (v.coreset !== undefined) o.coreset = { ratio: num(v.coreset) };
  if (v.seed !== undefined) o.seed = num(v.seed);
  if (v.threads !== undefined) o.threads = num(v.threads);
  if (v.device !== undefined) o.device = v.device as EngineOptions['device'];
  const head: HeadOptions = {};
  if (v['head-iterations'] !== undefined) head.iterations = num(v['head-iterations']);
  if (v['head-lr'] !== undefined) head.lr = num(v['head-lr']);
  if (v['head-batch'] !== undefined) head.batch = num(v['head-batch']);
  if (v['head-sigma'] !== undefined) head.sigma = num(v['head-sigma']);
  if (v['head-normalize']) head.normalize = true;
  if (v.head || Object.keys(head).length > 0) o.head = head;
  return o;
}

/** The --backbone values: repeated flags and comma-separated lists, in order. */
function backbonesOf(v: Record<string, unknown>): string[] {
  return ((v.backbone as string[] | undefined) ?? []).flatMap((b) => b.split(',')).filter((b) => b !== '');
}

/** One engine's options per backbone when several are given (an ensemble), else null. */
function ensembleMembers(v: Record<string, unknown>, defaults: Partial<EngineOptions> = {}): EngineOptions[] | null {
  const backbones = backbonesOf(v);
  if (backbones.length < 2) return null;
  const shared = engineOptions(v, defaults);
  return backbones.map((backbone) => ({ ...shared, backbone }));
}

/** Progress on stderr: a bar per stage on a terminal, a plain line a second otherwise (CI logs). */
function progressLogger(): (p: EnsembleProgress) => void {
  if (process.stderr.isTTY && !process.env.CI) {
    let bar: cliProgress.SingleBar | undefined;
    let stage = '';
    return (p) => {
      if (`${p.member}${p.stage}` !== stage) {
        bar?.stop();
        stage = `${p.member}${p.stage}`;
        bar = new cliProgress.SingleBar(
          { format: `  ${p.member !== undefined ? `m${p.member} ` : ''}${p.stage.padEnd(9)} [{bar}] {value}/{total} {eta_formatted}{extra}`, stream: process.stderr, hideCursor: true },
          cliProgress.Presets.shades_classic,
        );
        bar.start(p.total ?? p.done, p.done, { extra: '' });
      }
      bar?.setTotal(p.total ?? p.done);
      bar?.update(p.done, { extra: p.loss !== undefined ? ` loss ${p.loss.toFixed(3)}` : '' });
      if (p.total !== undefined && p.done >= p.total) bar?.stop();
    };
  }
  let last = 0;
  return (p) => {
    const now = Date.now();
    if (now - last < 1000 && p.done !== p.total) return;
    last = now;
    process.stderr.write(`  ${p.member !== undefined ? `member ${p.member} ` : ''}${p.stage}: ${p.done}${p.total ? `/${p.total}` : ''}${p.loss !== undefined ? ` loss ${p.loss.toFixed(4)}` : ''}\n`);
  };
}

/** Every s-th pixel in both directions, s chosen so the longer side is at most `maxSide`. */
function subsample(values: ArrayLike<number>, width: number, height: number, maxSide: number) {
  const s = Math.max(1, Math.ceil(Math.max(width, height) / maxSide));
  const w = Math.ceil(width / s);
  const h = Math.ceil(height / s);
  const out = new Float32Array(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out[y * w + x] = values[y * s * width + x * s];
  return { data: out, width: w, height: h };
}

// Pixel metrics are computed on maps and masks subsampled to at most this side (the network's
// input is 224-256 px, so finer maps carry no more information, only cost).
const PIXEL_EVAL_SIDE = 256;

type TestItem = Awaited<ReturnType<typeof readMvtecDataset>>['test'][number];

/** Test images that enter the pixel metrics, with their masks subsampled like the maps. */
interface PixelTarget {
  index: number;
  mask: Uint8Array;
  width: number;
  height: number;
}

async function pixelTargets(test: TestItem[], sizes: { width: number; height: number }[]): Promise<PixelTarget[]> {
  const targets: PixelTarget[] = [];
  for (const [index, t] of test.entries()) {
    if (t.label === 1 && !t.maskPath) continue; // no mask: image metrics only
    const { width, height } = sizes[index];
    const mask = t.maskPath ? await readMask(t.maskPath, width, height) : new Uint8Array(width * height);
    const m = subsample(mask, width, height, PIXEL_EVAL_SIDE);
    targets.push({ index, mask: Uint8Array.from(m.data), width: m.width, height: m.height });
  }
  return targets;
}

/** Image and pixel metrics of one scorer; `maps[k]` is the subsampled map of `targets[k]`. */
function quality(test: TestItem[], scores: number[], maps: Float32Array[], targets: PixelTarget[]) {
  const labels = test.map((t) => t.label);
  const masks = targets.map((t) => t.mask);
  const hasDefectPixels = masks.some((m) => m.some((x) => x > 0));
  return {
    image_auroc: auroc(scores, labels),
    image_f1_max: f1Max(scores, labels).f1,
    pixel_auroc: hasDefectPixels ? pixelAuroc(maps, masks) : null,
    pro: hasDefectPixels ? pro(maps, masks, targets.map((t) => t.width), targets.map((t) => t.height)) : null,
  };
}

async function readEvalData(root: string, category: string, trainLimit?: number) {
  const data = await readMvtecDataset(root, category);
  if (trainLimit) data.train = data.train.slice(0, trainLimit);
  return data;
}

function writeScores(file: string | undefined, test: TestItem[], scores: number[]) {
  if (!file) return;
  const csv = test.map((t, i) => `${JSON.stringify(t.path)},${t.label},${scores[i]}`).join('\n');
  writeFileSync(file, `path,label,score\n${csv}\n`);
}

async function evaluate(root: string, category: string, options: EngineOptions, trainLimit?: number, scoresOut?: string) {
  const data = await readEvalData(root, category, trainLimit);
  // Every training image goes into the bank, as in the papers' protocol (no calibration hold-out).
  options = { calibration: false, ...options };
  const engine = await Engine.create(options);
  process.stderr.write(`fitting on ${data.train.length} images of ${category}\n`);
  const fit = await engine.fit(data.train, { onProgress: progressLogger() });
  process.stderr.write(`scoring ${data.test.length} test images\n`);
  const started = performance.now();
  const results = await engine.scoreMany(data.test.map((t) => t.path));
  const scoreMs = (performance.now() - started) / data.test.length;
  writeScores(scoresOut, data.test, results.map((r) => r.score));
  const targets = await pixelTargets(data.test, results);
  const maps = targets.map((t) => subsample(results[t.index].map, results[t.index].width, results[t.index].height, PIXEL_EVAL_SIDE).data);
  return {
    category,
    backbone: engine.info.backbone,
    head: engine.options.head,
    coreset: engine.options.coresetRatio,
    n_train: data.train.length,
    n_test: data.test.length,
    ...quality(data.test, results.map((r) => r.score), maps, targets),
    seed: engine.options.seed,
    missing_masks: data.missingMasks,
    fit_seconds: fit.seconds,
    score_ms_per_image: scoreMs,
    peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
  };
}

/**
 * Ensemble evaluation. `fusion: 'test-minmax'` (with --protocol patchcore): every training image in
 * every bank, members normalised by their min / max over the test set (paper-comparable).
 * `'holdout-minmax'`: the deployment path, 10% of the training images held out to set the
 * normalisers. Reports the fused metrics and each member's own metrics from the same fit.
 */
async function evaluateEnsemble(root: string, category: string, members: EngineOptions[], fusion: 'test-minmax' | 'holdout-minmax', trainLimit?: number, scoresOut?: string) {
  const data = await readEvalData(root, category, trainLimit);
  const ensemble = await Ensemble.create({ members, ...(fusion === 'test-minmax' ? { calibration: false } : {}) });
  process.stderr.write(`fitting ${members.length} members on ${data.train.length} images of ${category}\n`);
  const fit = await ensemble.fit(data.train, { onProgress: progressLogger() });
  process.stderr.write(`scoring ${data.test.length} test images\n`);
  const k = ensemble.size;
  const started = performance.now();
  // Kept per test image: raw member scores, and subsampled member maps for the pixel metrics; the
  // full maps' min / max per member are tracked so that subsampling does not change the ranges.
  const outputs: MemberOutputs[] = [];
  const sizes: { width: number; height: number }[] = [];
  const mapRanges = Array.from({ length: k }, () => ({ min: Infinity, max: -Infinity }));
  const fusedHoldout: { score: number; map: Float32Array }[] = [];
  const CHUNK = 16;
  for (let i = 0; i < data.test.length; i += CHUNK) {
    for (const o of await ensemble.scoreMembers(data.test.slice(i, i + CHUNK).map((t) => t.path))) {
      if (fusion === 'holdout-minmax') {
        const f = ensemble.fuse(o);
        fusedHoldout.push({ score: f.score, map: subsample(f.map, o.width, o.height, PIXEL_EVAL_SIDE).data });
      }
      for (const [m, map] of o.maps.entries()) {
        for (const v of map) { if (v < mapRanges[m].min) mapRanges[m].min = v; if (v > mapRanges[m].max) mapRanges[m].max = v; }
      }
      outputs.push({ ...o, maps: o.maps.map((map) => subsample(map, o.width, o.height, PIXEL_EVAL_SIDE).data) });
      sizes.push({ width: o.width, height: o.height });
    }
  }
  const scoreMs = (performance.now() - started) / data.test.length;
  const targets = await pixelTargets(data.test, sizes);
  const perMember = Array.from({ length: k }, (_, m) => ({
    scores: outputs.map((o) => o.scores[m]),
    maps: targets.map((t) => outputs[t.index].maps[m]),
  }));
  const fused =
    fusion === 'test-minmax'
      ? fuseTestMinMax(perMember, mapRanges)
      : { scores: fusedHoldout.map((f) => f.score), maps: targets.map((t) => fusedHoldout[t.index].map) };
  writeScores(scoresOut, data.test, fused.scores);
  const { members: infos } = ensemble.info;
  return {
    category,
    backbone: infos.map((m) => m.backbone).join('+'),
    ensemble: true,
    fusion,
    head: infos[0].options.head,
    coreset: infos[0].options.coresetRatio,
    n_train: data.train.length,
    n_fit: fit.images,
    n_test: data.test.length,
    ...quality(data.test, fused.scores, fused.maps, targets),
    members: infos.map((info, m) => ({ backbone: info.backbone, ...quality(data.test, perMember[m].scores, perMember[m].maps, targets) })),
    seed: infos[0].options.seed,
    missing_masks: data.missingMasks,
    fit_seconds: fit.seconds,
    score_ms_per_image: scoreMs,
    peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
  };
}

function report(result: Record<string, unknown>, json: boolean | undefined) {
  if (json) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  for (const [k, v] of Object.entries(result)) {
    const text = typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(4) : typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v);
    process.stdout.write(`${k.padEnd(20)} ${text}\n`);
  }
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'demo': {
      const { values } = parseArgs({ args: rest, options: { ...ENGINE_FLAGS, dir: { type: 'string' } } });
      if (values.help) return help(`reconpatch demo [--dir <path>] [engine options]\n\nGenerates a synthetic MVTec-layout dataset with scratches, blobs and missing areas, fits on its\ngood images and reports image and pixel AUROC.\n\n${ENGINE_HELP}`);
      const dir = values.dir ?? mkdtempSync(path.join(os.tmpdir(), 'reconpatch-demo-'));
      await makeSyntheticDataset(dir, { category: 'synthetic' });
      process.stderr.write(`generated a synthetic dataset in ${dir}\n`);
      report(await evaluate(dir, 'synthetic', engineOptions(values, { resize: null, crop: null, coreset: { ratio: 0.25 } })), values.json);
      return 0;
    }
    case 'eval': {
      const { values } = parseArgs({
        args: rest,
        options: {
          ...ENGINE_FLAGS, data: { type: 'string' }, category: { type: 'string' }, 'train-limit': { type: 'string' },
          'scores-out': { type: 'string' }, protocol: { type: 'string' },
        },
      });
      if (values.help || !values.data || !values.category)
        return help(
          `reconpatch eval --data <root> --category <name> [--protocol patchcore] [--train-limit <n>] [--scores-out <file.csv>] [engine options]\n\n` +
            `Fits on <root>/<name>/train/good (every image, no calibration hold-out), scores <root>/<name>/test and reports image AUROC,\n` +
            `pixel AUROC and PRO (on maps and masks subsampled to at most ${PIXEL_EVAL_SIDE} px), fit time, score time and peak RSS.\n` +
            `--protocol patchcore: resize 256 and center-crop 224 with squash resize (the reference's preprocessing).\n` +
            `--scores-out: writes path,label,score per test image.\n` +
            `Several backbones: an ensemble; with --protocol patchcore each member is normalised by its min / max over the test set\n` +
            `(paper-comparable), otherwise by 10% held-out training images (deployment). Reports fused and per-member metrics.\n\n${ENGINE_HELP}`,
          !values.help,
        );
      const limit = values['train-limit'] === undefined ? undefined : Number(values['train-limit']);
      const protocol: Partial<EngineOptions> =
        values.protocol === 'patchcore' ? { resize: 256, crop: 224, resizeMode: 'squash' } : values.protocol === undefined ? {} : (() => { throw new ReconpatchError('ERR_INVALID_OPTION', `unknown protocol '${values.protocol}' (known: patchcore)`); })();
      const members = ensembleMembers(values, protocol);
      const result = members
        ? await evaluateEnsemble(values.data, values.category, members, values.protocol === 'patchcore' ? 'test-minmax' : 'holdout-minmax', limit, values['scores-out'])
        : await evaluate(values.data, values.category, engineOptions(values, protocol), limit, values['scores-out']);
      report(result, values.json);
      return 0;
    }
    case 'fit': {
      const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { ...ENGINE_FLAGS, output: { type: 'string', short: 'o' } } });
      if (values.help || positionals.length !== 1 || !values.output)
        return help(`reconpatch fit <dir|glob> -o <model.rcp> [engine options]\n\nFits on the images in <dir> (or matching a glob such as 'good/*.png'); 10% are held out to calibrate the threshold.\n\n${ENGINE_HELP}`, !values.help);
      const members = ensembleMembers(values);
      const model = members ? await Ensemble.create({ members }) : await Engine.create(engineOptions(values));
      const summary = await model.fit(await listImages(positionals[0]), { onProgress: progressLogger() });
      await model.save(values.output);
      report({ model: values.output, ...summary }, values.json);
      return 0;
    }
    case 'score': {
      const { values, positionals } = parseArgs({
        args: rest, allowPositionals: true,
        options: { json: { type: 'boolean' }, heatmaps: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      });
      if (values.help || positionals.length < 2)
        return help('reconpatch score <model.rcp> <image...> [--heatmaps <dir>] [--json]\n\nPrints path, score, normalized score (0.5 = threshold) and anomaly flag per image;\n--heatmaps writes <dir>/<image name>.png overlays.', !values.help);
      const engine = (await Ensemble.isEnsembleFile(positionals[0])) ? await Ensemble.load(positionals[0]) : await Engine.load(positionals[0]);
      if (values.heatmaps) mkdirSync(values.heatmaps, { recursive: true });
      for (const file of positionals.slice(1)) {
        const r = await engine.score(file, { heatmap: values.heatmaps ? 'png' : false });
        let heatmap: string | undefined;
        if (values.heatmaps && r.heatmap) {
          heatmap = path.join(values.heatmaps, `${path.parse(file).name}.png`);
          writeFileSync(heatmap, r.heatmap);
        }
        const memberScores = 'memberScores' in r ? { memberScores: r.memberScores } : {};
        const row = { path: file, score: r.score, normalizedScore: r.normalizedScore, isAnomaly: r.isAnomaly, ...memberScores, width: r.width, height: r.height, ...(heatmap ? { heatmap } : {}) };
        if (values.json) process.stdout.write(`${JSON.stringify(row)}\n`);
        else process.stdout.write(`${file}\t${r.score.toFixed(6)}\t${r.normalizedScore?.toFixed(3) ?? '-'}\t${r.isAnomaly === null ? '-' : r.isAnomaly ? 'ANOMALY' : 'ok'}\n`);
      }
      return 0;
    }
    case 'info': {
      const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { help: { type: 'boolean', short: 'h' } } });
      if (values.help || positionals.length !== 1) return help('reconpatch info <model.rcp>\n\nPrints the model\'s options, backbone, bank size and calibration as JSON.', !values.help);
      if (await Ensemble.isEnsembleFile(positionals[0])) {
        const ensemble = await Ensemble.load(positionals[0]);
        process.stdout.write(`${JSON.stringify({ model: positionals[0], ensemble: true, ...ensemble.info }, null, 2)}\n`);
        return 0;
      }
      const engine = await Engine.load(positionals[0]);
      process.stdout.write(`${JSON.stringify({ model: positionals[0], ...engine.info, options: engine.options }, null, 2)}\n`);
      return 0;
    }
    case 'weights':
      return weightsCommand(rest);
    case 'libtorch':
      return libtorchCommand(rest);
    case undefined:
    case '--help':
    case '-h':
      return help(USAGE, command === undefined);
    default:
      process.stderr.write(`reconpatch: unknown command '${command}'\n\n${USAGE}\n`);
      return 2;
  }
}

const WEIGHTS_HELP = `reconpatch weights pull <name> [--from <url|file>] [--cache-dir <dir>]
reconpatch weights list [--cache-dir <dir>] [--json]

pull downloads torchvision's official ImageNet weights for <name> (${TORCHVISION_ARCHITECTURES.join(', ')})
from download.pytorch.org, or from --from: a mirror URL of the file, a mirror base URL ending in '/', or a
local file. The file's sha256 must start with the hex digits in its name; an interrupted download resumes.
Cache directory: --cache-dir, else $RECONPATCH_CACHE, else $XDG_CACHE_HOME/reconpatch, else ~/.cache/reconpatch.`;

async function weightsCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true,
    options: { from: { type: 'string' }, 'cache-dir': { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  const [action, name, ...extra] = positionals;
  const cacheDir = values['cache-dir'] ? path.resolve(values['cache-dir']) : defaultCacheDir();
  if (values.help) return help(WEIGHTS_HELP);
  if (action === 'list' && name === undefined) {
    const rows = TORCHVISION_ARCHITECTURES.map((arch) => ({ name: arch, file: TORCHVISION_WEIGHTS[arch], cached: cachedWeights(arch, cacheDir) ?? null }));
    if (values.json) process.stdout.write(`${JSON.stringify({ cacheDir, weights: rows })}\n`);
    else {
      process.stdout.write(`cache: ${cacheDir}\n`);
      for (const r of rows) process.stdout.write(`${r.name.padEnd(18)} ${r.file.padEnd(32)} ${r.cached ? 'cached' : '-'}\n`);
    }
    return 0;
  }
  if (action !== 'pull' || name === undefined || extra.length > 0) return help(WEIGHTS_HELP, true);
  const file = await pullWeights(name, { cacheDir, from: values.from, onProgress: downloadProgress(name) });
  process.stdout.write(values.json ? `${JSON.stringify({ name, file })}\n` : `${file}\n`);
  return 0;
}

/** Download progress on stderr: a bar on a terminal, a line every 2 s otherwise. */
function downloadProgress(name: string): (p: DownloadProgress) => void {
  const mb = (n: number) => (n / 2 ** 20).toFixed(1);
  if (process.stderr.isTTY && !process.env.CI) {
    const bar = new cliProgress.SingleBar(
      { format: `  ${name} [{bar}] {percentage}% {got}/{size} MB {eta_formatted}`, stream: process.stderr, hideCursor: true },
      cliProgress.Presets.shades_classic,
    );
    let started = false;
    return (p) => {
      const total = p.total ?? p.received;
      if (!started) bar.start(total, p.received, { got: mb(p.received), size: mb(total) });
      started = true;
      bar.setTotal(total);
      bar.update(p.received, { got: mb(p.received), size: mb(total) });
      if (p.total !== undefined && p.received >= p.total) bar.stop();
    };
  }
  let last = 0;
  return (p) => {
    const now = Date.now();
    const done = p.total !== undefined && p.received >= p.total;
    if (now - last < 2000 && !done) return;
    last = now;
    process.stderr.write(`  ${name}: ${mb(p.received)}${p.total ? `/${mb(p.total)}` : ''} MB\n`);
  };
}

function help(text: string, asError = false): number {
  (asError ? process.stderr : process.stdout).write(`${text}\n`);
  return asError ? 2 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const code = err instanceof ReconpatchError ? ` [${err.code}]` : '';
    process.stderr.write(`reconpatch: error${code}: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
