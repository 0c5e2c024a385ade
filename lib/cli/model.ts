/** `reconpatch fit`, `score` and `info`: making, using and showing a model file (an engine or an ensemble). */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { Engine } from '../engine/engine.js';
import { checkWritable } from '../engine/model_file.js';
import { Ensemble } from '../ensemble/ensemble.js';
import { ReconpatchError } from '../errors.js';
import { AUTO_RESIZE } from '../options.js';
import { type NativeOptions, type RawFrame } from '../native.js';
import { type InputOptions, toRawFrame } from '../io/images.js';
import type { Calibration } from '../calibration.js';
import { ENGINE_FLAGS, ENGINE_HELP, LOAD_FLAGS, LOAD_HELP, engineOptions, ensembleMembers, inputOptions, loadOptions, numberFlag, parseCommandArgs } from './args.js';
import { type InputImage, expandInputs, mirroredPaths } from './inputs.js';
import { errorRecord, help, report, rowFormat, rowWriter } from './output.js';
import { distributedFitCommand } from './fleet.js';
import { progressLogger } from './progress.js';

const FIT_HELP = `reconpatch fit <dir|glob|image>... -o <model.rcp> --backbone <file.pt|name> [options]

Fits on the images of good parts given: folders (every image below them), globs ('good/**/*.png',
'good/0[0-4]*.jpg') or files. Then every fit image (up to 100, spread evenly) is scored against the
bank without its own patches, and the threshold is set so that about 1% of good parts are flagged
(--false-alarm-rate); a warning on stderr says when the evidence is thin.
  -o, --output <file>         the model file to write
  --false-alarm-rate <x>      target share of good parts flagged (default 0.01)
  --threshold <raw score>     set the image threshold by hand instead (info shows the calibrated one)
  --continue-on-error         skip images that cannot be read (each reported on stderr) instead of stopping
  --max-staged-patches <n>    bound the features held during the fit (merge and reduce), for very many images;
                              at least 512
  --model-id <id>             the model's name (letters, digits, '.', '_', '-'), named by every verdict and
                              used by model stores; default: a new UUID
  --redis <url>               a distributed fit instead: the workers on this Redis embed the images in shards
                              and publish the model to their store as --model-id (no -o); the images and the
                              backbone file must be on storage the workers share
  --shards <n>                with --redis: shard jobs (default: one per 128 images)
  --fit-queue <name>          with --redis: the workers' fit queue (default reconpatch-fit)

${ENGINE_HELP}`;

export async function fitCommand(rest: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs({
    args: rest, allowPositionals: true,
    options: {
      ...ENGINE_FLAGS, output: { type: 'string', short: 'o' }, 'false-alarm-rate': { type: 'string' }, threshold: { type: 'string' },
      'continue-on-error': { type: 'boolean' }, 'max-staged-patches': { type: 'string' }, 'model-id': { type: 'string' },
      redis: { type: 'string' }, shards: { type: 'string' }, 'fit-queue': { type: 'string' },
    },
  });
  if (values.redis && !values.help && positionals.length > 0) return distributedFitCommand(values, positionals);
  if (values.help || positionals.length === 0 || !values.output) return help(FIT_HELP, !values.help);
  const falseAlarmRate = numberFlag('false-alarm-rate', values['false-alarm-rate']);
  const threshold = numberFlag('threshold', values.threshold);
  const maxStagedPatches = numberFlag('max-staged-patches', values['max-staged-patches']);
  await checkWritable(values.output); // fail before the fit, not after it
  const calibration = falseAlarmRate === undefined ? undefined : { falseAlarmRate };
  const members = ensembleMembers(values);
  const model = members ? await Ensemble.create({ members, calibration }) : await Engine.create({ ...engineOptions(values), calibration });
  const images = await expandInputs(positionals);
  const skipped: { path: string; error: ReconpatchError }[] = [];
  const summary = await model.fit(values['continue-on-error'] ? readable(images, skipped, inputOptions(values)) : images.map((i) => i.path), {
    onProgress: progressLogger(), ...(maxStagedPatches === undefined ? {} : { maxStagedPatches }),
    ...(values['model-id'] === undefined ? {} : { modelId: values['model-id'] }),
  });
  if (threshold !== undefined) await model.setThreshold(threshold);
  await model.save(values.output);
  const calibrationInfo = model.info.calibration;
  for (const w of summary.warnings) process.stderr.write(`reconpatch: warning: ${w}\n`);
  const { calibration: _c, ...flat } = summary; // its threshold and method are reported below
  report({
    model: values.output, ...flat,
    threshold: calibrationInfo?.threshold ?? null, thresholdMethod: calibrationInfo?.method ?? null,
    falseAlarmRate: calibrationInfo?.falseAlarmRate ?? null,
    ...('headCheck' in model.info && model.info.headCheck ? { headCheck: `kept ${model.info.headCheck.decision}: ${model.info.headCheck.reason}` } : {}),
    ...(skipped.length ? { skipped: skipped.map((s) => ({ path: s.path, ...errorRecord(s.error) })) } : {}),
  }, values.json);
  return 0;
}

/** The images decoded one by one; those that fail are reported and left out of the fit. */
async function* readable(images: InputImage[], skipped: { path: string; error: ReconpatchError }[], input: InputOptions | undefined): AsyncGenerator<RawFrame> {
  for (const [i, im] of images.entries()) {
    try {
      yield await toRawFrame(im.path, i, input ?? {});
    } catch (err) {
      const error = err instanceof ReconpatchError ? err : new ReconpatchError('ERR_IO', String(err));
      skipped.push({ path: im.path, error });
      process.stderr.write(`reconpatch: skipped ${im.path}: ${error.message}\n`);
    }
  }
}

const SCORE_HELP = `reconpatch score <model.rcp> <dir|glob|image>... [options]

Scores images with a saved model or ensemble: folders (every image below them), globs or files.
One row per image: path, score, normalizedScore (0.5 = threshold), isAnomaly.
  --format text|jsonl|csv     output rows (default text; --json means jsonl)
  --heatmaps <dir>            write a heatmap per image, mirroring the input tree below <dir>
  --threshold <raw score>     decide with this image threshold instead of the model's (this run only)
  --continue-on-error         report an image that fails as a row with its error and go on
                              (the exit code is then 1 if any failed); default: stop at the first
  --json                      jsonl rows; errors as JSON too

${LOAD_HELP}`;

export async function scoreCommand(rest: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs({
    args: rest, allowPositionals: true,
    options: {
      json: { type: 'boolean' }, format: { type: 'string' }, heatmaps: { type: 'string' }, threshold: { type: 'string' },
      'continue-on-error': { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, ...LOAD_FLAGS,
    },
  });
  if (values.help || positionals.length < 2) return help(SCORE_HELP, !values.help);
  const format = rowFormat(values.format, values.json);
  const writeRow = rowWriter(format);
  const threshold = numberFlag('threshold', values.threshold);
  const model = await loadModel(positionals[0], values);
  if (threshold !== undefined) await model.setThreshold(threshold); // not saved: this run only
  const images = await expandInputs(positionals.slice(1));
  const outputs = values.heatmaps ? mirroredPaths(images, values.heatmaps) : [];
  const progress = progressLogger();
  let failed = 0;
  let done = 0;
  const stream = model.scoreStream(images.map((i) => i.path), { concurrency: 2, onError: 'yield', heatmap: values.heatmaps ? 'png' : false });
  for await (const item of stream) {
    const image = images[item.index];
    progress({ stage: 'score', done: ++done, total: images.length });
    if (item.error) {
      failed++;
      if (!values['continue-on-error']) throw new ReconpatchError(item.error.code, `${image.path}: ${item.error.message}`, { cause: item.error });
      writeRow({ path: image.path, error: errorRecord(item.error) });
      continue;
    }
    let heatmap: string | undefined;
    if (item.heatmap) {
      heatmap = outputs[item.index];
      mkdirSync(path.dirname(heatmap), { recursive: true });
      writeFileSync(heatmap, item.heatmap);
    }
    const memberScores = 'memberScores' in item ? { memberScores: item.memberScores } : {};
    writeRow({
      path: image.path, score: item.score, normalizedScore: item.normalizedScore, isAnomaly: item.isAnomaly, ...memberScores,
      width: item.width, height: item.height, ...(heatmap ? { heatmap } : {}),
    });
  }
  return failed ? 1 : 0;
}

/**
 * The engine or ensemble in `file`, loaded with the LOAD_FLAGS given (threads, input limits);
 * `--device` is checked against the device it loaded on (a loaded model cannot move).
 */
export async function loadModel(file: string, values: Record<string, unknown>): Promise<Engine | Ensemble> {
  const device = values.device as string | undefined;
  if (device !== undefined && device !== 'cpu' && device !== 'cuda' && device !== 'auto')
    throw new ReconpatchError('ERR_INVALID_OPTION', `--device must be cpu, cuda or auto, got '${device}'`);
  const options = loadOptions(values);
  const model = (await Ensemble.isEnsembleFile(file)) ? await Ensemble.load(file, options) : await Engine.load(file, options);
  if (device === 'cpu' || device === 'cuda') {
    const devices = model instanceof Ensemble ? model.info.members.map((m) => m.device) : [model.info.device];
    const off = devices.find((d) => !d.startsWith(device));
    if (off !== undefined) throw new ReconpatchError('ERR_DEVICE_UNAVAILABLE', `--device ${device}: ${file} loaded on ${off} (a saved model runs on the device chosen when it loads; give --device auto or ${off.replace(/:.*/, '')})`);
  }
  return model;
}

const INFO_HELP = `reconpatch info <model.rcp|ensemble.rcpe> [--json] [--evidence] [options]

Shows what a saved model holds: its id, version and provenance (when and with what it was fitted,
on which image sizes), backbone, memory bank, training images, the threshold and how it was set,
preprocessing, head, device (for an ensemble: each member, and the fused threshold).
  --json                      the full info as one JSON line (without the per-image calibration evidence)
  --evidence                  include the per-image calibration evidence (with --json: still one line)

${LOAD_HELP}`;

export async function infoCommand(rest: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs({
    args: rest, allowPositionals: true,
    options: { help: { type: 'boolean', short: 'h' }, json: { type: 'boolean' }, evidence: { type: 'boolean' }, ...LOAD_FLAGS },
  });
  if (values.help || positionals.length !== 1) return help(INFO_HELP, !values.help);
  const file = positionals[0];
  const model = await loadModel(file, values);
  const strip = (c: Calibration | null) => (c && !values.evidence ? (({ evidence: _e, ...rest }) => rest)(c) : c);
  if (model instanceof Ensemble) {
    const info = model.info;
    if (values.json) {
      const members = info.members.map((m) => ({ ...m, calibration: strip(m.calibration) }));
      const { model: modelInfo, ...rest } = info;
      process.stdout.write(`${JSON.stringify({ model: file, ensemble: true, modelInfo, ...rest, members, calibration: strip(info.calibration) })}\n`);
      return 0;
    }
    const lines = [`model         ${file} (ensemble of ${info.members.length})`, ...modelLines(info.model), ...thresholdLines(info.calibration, 'fused scores; ')];
    for (const [i, m] of info.members.entries()) lines.push(`member ${i}`, ...engineLines(m, m.options).map((l) => `  ${l}`));
    if (values.evidence) lines.push(...evidenceLines(info.calibration));
    process.stdout.write(`${lines.join('\n')}\n`);
    return 0;
  }
  const info = model.info;
  if (values.json) {
    // `model` is the file, as it always was; the model's identity is `modelInfo`.
    const { model: modelInfo, ...rest } = info;
    process.stdout.write(`${JSON.stringify({ model: file, modelInfo, ...rest, calibration: strip(info.calibration), options: model.options })}\n`);
    return 0;
  }
  const lines = [`model         ${file}`, ...modelLines(info.model), ...engineLines(info, model.options), ...thresholdLines(info.calibration, '')];
  if (values.evidence) lines.push(...evidenceLines(info.calibration));
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

type InfoOf = Engine['info'];
type ModelInfo = NonNullable<InfoOf['model']>;

/** A member's or an engine's summary: backbone, bank, images, preprocessing, head, device (its threshold for a member too). */
function engineLines(info: InfoOf, o: NativeOptions): string[] {
  const lines = [
    `backbone      ${info.backbone}${o.layers ? ` (${o.layers})` : ''}${o.weights ? ` weights ${o.weights}` : ''}`,
    `bank          ${info.bankRows} rows x ${info.featureDim} features (coreset ${o.coresetRatio})`,
    `train images  ${info.trainImages}${info.updates ? ` (${info.updates} update${info.updates > 1 ? 's' : ''} added ${info.updateRows} rows)` : ''}`,
    `resize        ${resizeText(o)}${o.crop > 0 ? `, crop ${o.crop}` : ''}`,
    `tiles         ${o.tileSize > 0 ? `${o.tileSize} px, overlap ${o.tileOverlap} px (one bank; features stitched)` : 'none (the whole image at once)'}`,
    `head          ${o.head ? `on (${o.headIterations} iterations)` : 'off (PatchCore)'}`,
    ...(info.headCheck ? [`head check    kept ${info.headCheck.decision}: ${info.headCheck.reason}`] : []),
    `device        ${info.device}`,
  ];
  return lines;
}

/** The resize as the user would have asked for it ('auto' when it is the auto policy's). */
function resizeText(o: NativeOptions): string {
  if (o.resize === AUTO_RESIZE && o.resizeMode === 'area' && !o.upscale) return `auto (about ${AUTO_RESIZE} x ${AUTO_RESIZE} px, never above the image's own size)`;
  return `${o.resize > 0 ? o.resize : 'none'} (${o.resizeMode}${o.upscale ? '' : ', never above the image\'s own size'})`;
}

/** The model's identity and provenance (older files: what can be derived). */
function modelLines(m: ModelInfo | null): string[] {
  if (!m) return [];
  const s = m.trainingSet.sizes;
  const range = (lo: number, hi: number) => (lo === hi ? `${lo}` : `${lo}-${hi}`);
  return [
    `id            ${m.id ?? '(none: written before models had ids)'}`,
    `version       ${m.version} (hash ${m.hash.slice(0, 16)})`,
    `created       ${m.created ?? 'unknown'}${m.packageVersion ? ` by reconpatch ${m.packageVersion}, libtorch ${m.libtorch}` : ''}`,
    ...(s ? [`image sizes   ${range(s.minWidth, s.maxWidth)} x ${range(s.minHeight, s.maxHeight)} px`] : []),
  ];
}

/** The threshold and how it was set. */
function thresholdLines(c: Calibration | null, note: string): string[] {
  if (!c) return [`threshold     none (${note}not calibrated)`];
  const how = c.method === 'leave-one-out' || c.method === 'holdout'
    ? `${c.method} on ${c.images} good images, false-alarm rate ${c.falseAlarmRate}`
    : c.method === 'labels' && c.validation
      ? `labels (${c.validation.objective}) on ${c.validation.images} images: precision ${c.validation.precision.toFixed(3)}, recall ${c.validation.recall.toFixed(3)}`
      : c.method;
  return [
    `threshold     ${fmt(c.threshold)} (${note}${how})`,
    ...c.warnings.map((w) => `warning       ${w}`),
  ];
}

function evidenceLines(c: Calibration | null): string[] {
  const ev = c?.evidence ?? [];
  return [`evidence      ${ev.length} images (score, map min, max, mean)`, ...ev.map((e) => `  ${fmt(e.score)}  ${fmt(e.mapMin)}  ${fmt(e.mapMax)}  ${fmt(e.mapMean)}`)];
}

const fmt = (x: number) => (Number.isInteger(x) ? String(x) : x.toPrecision(6));
