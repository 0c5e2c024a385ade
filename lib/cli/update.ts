/** `reconpatch update`: take new images of good parts into a saved model (engine or ensemble). */
import { parseArgs } from 'node:util';

import { Engine } from '../engine/engine.js';
import { Ensemble } from '../ensemble/ensemble.js';
import { listImages } from '../eval/dataset.js';
import { help, report } from './output.js';
import { progressLogger } from './progress.js';

const UPDATE_HELP = `reconpatch update <model.rcp> <dir|glob> [-o <out.rcp>] [--json]

Adds the images' patches that lie outside the model's coverage to its memory bank (nothing is
refitted; images that show nothing new add nothing), re-estimates the threshold from a held-out
share of them, and saves the model (to <model.rcp> itself unless -o is given; written atomically).`;

export async function updateCommand(rest: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: rest, allowPositionals: true,
    options: { output: { type: 'string', short: 'o' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help || positionals.length !== 2) return help(UPDATE_HELP, !values.help);
  const [file, images] = positionals;
  const model = (await Ensemble.isEnsembleFile(file)) ? await Ensemble.load(file) : await Engine.load(file);
  const summary = await model.update(await listImages(images), { onProgress: progressLogger() });
  const out = values.output ?? file;
  await model.save(out);
  report({ model: out, ...summary }, values.json);
  return 0;
}
