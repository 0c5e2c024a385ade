/** `reconpatch fit`, `score` and `info`: making, using and showing a model file (an engine or an ensemble). */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { Engine } from '../engine/engine.js';
import { checkWritable } from '../engine/model_file.js';
import { Ensemble } from '../ensemble/ensemble.js';
import { listImages } from '../eval/dataset.js';
import { ENGINE_FLAGS, ENGINE_HELP, engineOptions, ensembleMembers } from './args.js';
import { help, report } from './output.js';
import { progressLogger } from './progress.js';

export async function fitCommand(rest: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: rest, allowPositionals: true, options: { ...ENGINE_FLAGS, output: { type: 'string', short: 'o' }, 'max-staged-patches': { type: 'string' } },
  });
  if (values.help || positionals.length !== 1 || !values.output)
    return help(`reconpatch fit <dir|glob> -o <model.rcp> [--max-staged-patches <n>] [engine options]\n\nFits on the images in <dir> (or matching a glob such as 'good/*.png'); 10% are held out to calibrate the threshold.\n--max-staged-patches bounds the features held during the fit (merge and reduce), for very many images.\n\n${ENGINE_HELP}`, !values.help);
  await checkWritable(values.output); // fail before the fit, not after it
  const members = ensembleMembers(values);
  const model = members ? await Ensemble.create({ members }) : await Engine.create(engineOptions(values));
  const budget = values['max-staged-patches'] === undefined ? {} : { maxStagedPatches: Number(values['max-staged-patches']) };
  const summary = await model.fit(await listImages(positionals[0]), { onProgress: progressLogger(), ...budget });
  await model.save(values.output);
  report({ model: values.output, ...summary }, values.json);
  return 0;
}
export async function scoreCommand(rest: string[]): Promise<number> {
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
export async function infoCommand(rest: string[]): Promise<number> {
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
