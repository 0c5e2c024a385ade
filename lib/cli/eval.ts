/** `reconpatch demo` and `reconpatch eval`: the evaluation protocol (../eval/evaluate.ts) from the command line. */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { ReconpatchError } from '../errors.js';
import { PIXEL_EVAL_SIDE, evaluate, evaluateEnsemble } from '../eval/evaluate.js';
import { GOOD_ONLY_HOLDOUT, evaluateGoodOnly } from '../eval/good_only.js';
import { makeSyntheticDataset } from '../eval/synthetic.js';
import type { EngineOptions } from '../options.js';
import { ENGINE_FLAGS, ENGINE_HELP, engineOptions, ensembleMembers, numberFlag, parseCommandArgs } from './args.js';
import { help, report } from './output.js';
import { progressLogger } from './progress.js';

interface Decision {
  threshold: number; defects_flagged: number; defects: number; good_flagged: number; good: number;
  precision: number | null; recall: number | null; false_alarm_rate: number | null;
  method: string; calibration_images: number; false_alarm_target: number | null; warnings: string[];
}

/**
 * An evaluation's result: one JSON line with `json`; else its metrics as `key value` lines and the
 * decision at the deployed threshold as readable rows (not a JSON blob).
 */
function reportEvaluation(result: Record<string, unknown>, json: boolean | undefined): void {
  if (json) return report(result, true);
  const { decision, ...rest } = result as { decision?: Decision | null };
  report(rest, false);
  if (decision === undefined) return;
  if (decision === null) {
    report({ threshold: 'none (not calibrated)' }, false);
    return;
  }
  const share = (x: number | null) => (x === null ? '-' : x.toFixed(3));
  const target = decision.false_alarm_target === null ? '' : `, target false-alarm rate ${decision.false_alarm_target}`;
  report({
    threshold: `${decision.threshold.toPrecision(6)} (${decision.method} on ${decision.calibration_images} images${target})`,
    'recall at threshold': `${share(decision.recall)} (${decision.defects_flagged} of ${decision.defects} defects flagged)`,
    'false alarms': `${share(decision.false_alarm_rate)} (${decision.good_flagged} of ${decision.good} good parts flagged)`,
    'precision': share(decision.precision),
    ...(decision.warnings.length ? { 'threshold warnings': decision.warnings.join('; ') } : {}),
  }, false);
}

export async function demoCommand(rest: string[]): Promise<number> {
  const { values } = parseCommandArgs({ args: rest, options: { ...ENGINE_FLAGS, dir: { type: 'string' } } });
  if (values.help) return help(`reconpatch demo --backbone <name|file.pt> [--dir <path>] [engine options]\n\nGenerates a synthetic MVTec-layout dataset with scratches, blobs and missing areas, fits on its\ngood images and reports image and pixel AUROC ('npm run demo' uses --backbone random_cnn).\n\n${ENGINE_HELP}`);
  const options = engineOptions(values, { resize: null, crop: null, coreset: { ratio: 0.25 } }); // before any work: a backbone is required
  const dir = values.dir ?? mkdtempSync(path.join(os.tmpdir(), 'reconpatch-demo-'));
  await makeSyntheticDataset(dir, { category: 'synthetic' });
  process.stderr.write(`generated a synthetic dataset in ${dir}\n`);
  const progress = progressLogger();
  reportEvaluation(await evaluate(dir, 'synthetic', options, { onProgress: progress, onScored: (done, total) => progress({ stage: 'score', done, total }) }), values.json);
  return 0;
}
export async function evalCommand(rest: string[]): Promise<number> {
  const { values } = parseCommandArgs({
    args: rest,
    options: {
      ...ENGINE_FLAGS, data: { type: 'string' }, category: { type: 'string' }, 'train-limit': { type: 'string' },
      'scores-out': { type: 'string' }, protocol: { type: 'string' }, 'save-images': { type: 'string' }, good: { type: 'string' },
    },
  });
  if (values.good !== undefined && !values.help) return goodOnly(values.good, values);
  if (values.help || !values.data || !values.category)
    return help(
      `reconpatch eval --data <root> --category <name> --backbone <name|file.pt> [--protocol patchcore] [--train-limit <n>]\n` +
        `               [--scores-out <file.csv>] [--save-images <dir>] [engine options]\n\n` +
        `Fits on <root>/<name>/train/good (every image in the bank; the threshold calibrated on them leave-one-image-out, as a fit\n` +
        `does), scores <root>/<name>/test and reports image AUROC, pixel AUROC and PRO (on maps and masks subsampled to at most\n` +
        `${PIXEL_EVAL_SIDE} px; pixels outside a crop rank lowest), the decision at the deployed threshold (precision, recall,\n` +
        `false-alarm rate), fit time, score time and peak RSS.\n` +
        `--protocol patchcore: resize 256 and center-crop 224 with squash resize (the reference's preprocessing).\n` +
        `--scores-out: writes path,label,score per test image.\n` +
        `--save-images: writes <dir>/<defect>/<name>.png per test image: the image | its heatmap | the ground truth.\n` +
        `Several backbones: an ensemble; with --protocol patchcore each member is normalised by its min / max over the test set\n` +
        `(paper-comparable), otherwise by the training images scored leave-one-image-out (deployment). Reports fused and\n` +
        `per-member metrics.\n\n` +
        `reconpatch eval --good <dir> --backbone <name|file.pt> [engine options]\n` +
        `A folder of good images only (no defects yet): holds out ${GOOD_ONLY_HOLDOUT.share * 100}% of them (${GOOD_ONLY_HOLDOUT.min} to ${GOOD_ONLY_HOLDOUT.max}), fits and\n` +
        `calibrates on the rest, and reports at the deployed threshold the false alarms on the held-out images and the\n` +
        `recall on synthetic defects painted on them (scratches, stains, noise, blur, pasted pieces, holes; 3 sizes), by\n` +
        `kind and size. Synthetic recall is an estimate: docs/results.md says how far it predicts real recall.\n\n${ENGINE_HELP}`,
      !values.help,
    );
  const limit = numberFlag('train-limit', values['train-limit']);
  const protocol: Partial<EngineOptions> =
    values.protocol === 'patchcore' ? { resize: 256, crop: 224, resizeMode: 'squash' } : values.protocol === undefined ? {} : (() => { throw new ReconpatchError('ERR_INVALID_OPTION', `unknown protocol '${values.protocol}' (known: patchcore)`); })();
  const members = ensembleMembers(values, protocol);
  const progress = progressLogger();
  const run = {
    trainLimit: limit, scoresOut: values['scores-out'], saveImages: values['save-images'], onProgress: progress,
    onScored: (done: number, total: number) => progress({ stage: 'score', done, total }),
  };
  if (members && values['save-images']) throw new ReconpatchError('ERR_INVALID_OPTION', '--save-images works with one backbone (an ensemble evaluation has no single heatmap per member)');
  const result = members
    ? await evaluateEnsemble(values.data, values.category, members, values.protocol === 'patchcore' ? 'test-minmax' : 'nominal-minmax', run)
    : await evaluate(values.data, values.category, engineOptions(values, protocol), run);
  reportEvaluation(result, values.json);
  return 0;
}

async function goodOnly(dir: string, values: Record<string, unknown>): Promise<number> {
  for (const flag of ['data', 'category', 'protocol', 'train-limit', 'scores-out', 'save-images'])
    if (values[flag] !== undefined) throw new ReconpatchError('ERR_INVALID_OPTION', `--good evaluates a folder of good images; --${flag} does not apply`);
  if (ensembleMembers(values)) throw new ReconpatchError('ERR_INVALID_OPTION', '--good evaluates one backbone at a time');
  const progress = progressLogger();
  const row = await evaluateGoodOnly(dir, engineOptions(values), { onProgress: progress, onScored: (done, total) => progress({ stage: 'score', done, total }) });
  if (values.json) report(row, true);
  else {
    const { recall_by_kind, recall_by_size, warnings, ...rest } = row;
    const shares = (m: Record<string, number>) => Object.entries(m).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(', ');
    report({ ...rest, recall_by_kind: shares(recall_by_kind), recall_by_size: shares(recall_by_size), ...(warnings.length ? { warnings: warnings.join('; ') } : {}) }, false);
  }
  return 0;
}
