/** `reconpatch demo` and `reconpatch eval`: the evaluation protocol (../eval/evaluate.ts) from the command line. */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { ReconpatchError } from '../errors.js';
import { PIXEL_EVAL_SIDE, evaluate, evaluateEnsemble } from '../eval/evaluate.js';
import { makeSyntheticDataset } from '../eval/synthetic.js';
import type { EngineOptions } from '../options.js';
import { ENGINE_FLAGS, ENGINE_HELP, engineOptions, ensembleMembers } from './args.js';
import { help, report } from './output.js';
import { progressLogger } from './progress.js';

export async function demoCommand(rest: string[]): Promise<number> {
  const { values } = parseArgs({ args: rest, options: { ...ENGINE_FLAGS, dir: { type: 'string' } } });
  if (values.help) return help(`reconpatch demo [--dir <path>] [engine options]\n\nGenerates a synthetic MVTec-layout dataset with scratches, blobs and missing areas, fits on its\ngood images and reports image and pixel AUROC.\n\n${ENGINE_HELP}`);
  const dir = values.dir ?? mkdtempSync(path.join(os.tmpdir(), 'reconpatch-demo-'));
  await makeSyntheticDataset(dir, { category: 'synthetic' });
  process.stderr.write(`generated a synthetic dataset in ${dir}\n`);
  report(await evaluate(dir, 'synthetic', engineOptions(values, { resize: null, crop: null, coreset: { ratio: 0.25 } }), { onProgress: progressLogger() }), values.json);
  return 0;
}
export async function evalCommand(rest: string[]): Promise<number> {
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
  const run = { trainLimit: limit, scoresOut: values['scores-out'], onProgress: progressLogger() };
  const result = members
    ? await evaluateEnsemble(values.data, values.category, members, values.protocol === 'patchcore' ? 'test-minmax' : 'holdout-minmax', run)
    : await evaluate(values.data, values.category, engineOptions(values, protocol), run);
  report(result, values.json);
  return 0;
}
