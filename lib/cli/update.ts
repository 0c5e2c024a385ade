/** `reconpatch update`: take new images of good parts into a saved model (engine or ensemble). */
import { parseArgs } from 'node:util';

import { Engine } from '../engine/engine.js';
import { Ensemble } from '../ensemble/ensemble.js';
import { INPUT_FLAGS, INPUT_HELP, inputOptions } from './args.js';
import { expandInputs } from './inputs.js';
import { help, report } from './output.js';
import { progressLogger } from './progress.js';

const UPDATE_HELP = `reconpatch update <model.rcp> <dir|glob|image>... [-o <out.rcp>] [--json]

Adds the images' patches that lie outside the model's coverage to its memory bank (nothing is
refitted; images that show nothing new add nothing), re-estimates the threshold from the new
images scored against the grown bank without their own patches, pooled with the model's earlier
nominal evidence, and saves the model (to <model.rcp> itself unless -o is given; written atomically).
Images: folders (every image below them), globs or files.

${INPUT_HELP}`;

export async function updateCommand(rest: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: rest, allowPositionals: true,
    options: { output: { type: 'string', short: 'o' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, ...INPUT_FLAGS },
  });
  if (values.help || positionals.length < 2) return help(UPDATE_HELP, !values.help);
  const [file, ...inputs] = positionals;
  const input = inputOptions(values);
  const model = (await Ensemble.isEnsembleFile(file)) ? await Ensemble.load(file, { input }) : await Engine.load(file, { input });
  const images = (await expandInputs(inputs)).map((i) => i.path);
  const summary = await model.update(images, { onProgress: progressLogger() });
  for (const w of summary.warnings) process.stderr.write(`reconpatch: warning: ${w}\n`);
  const out = values.output ?? file;
  await model.save(out);
  report({ model: out, ...summary }, values.json);
  return 0;
}
