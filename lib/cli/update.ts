/** `reconpatch update`: take new images of good parts into a saved model (engine or ensemble). */
import { checkWritable } from '../engine/model_file.js';
import { ReconpatchError } from '../errors.js';
import { LOAD_FLAGS, LOAD_HELP, parseCommandArgs } from './args.js';
import { expandInputs } from './inputs.js';
import { loadModel } from './model.js';
import { help, report } from './output.js';
import { progressLogger } from './progress.js';

const UPDATE_HELP = `reconpatch update <model.rcp> <dir|glob|image>... (-o <out.rcp> | --in-place) [--json]

Adds the images' patches that lie outside the model's coverage to its memory bank (nothing is
refitted; images that show nothing new add nothing), re-estimates the threshold from the new
images scored against the grown bank without their own patches, pooled with the model's earlier
nominal evidence, and saves the updated model (written atomically).
Images: folders (every image below them), globs or files.
  -o, --output <file>         where to write the updated model (<model.rcp> is left as it was)
  --in-place                  overwrite <model.rcp> itself instead (one of -o and --in-place is required)
  --json                      one JSON line on stdout

${LOAD_HELP}`;

export async function updateCommand(rest: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs({
    args: rest, allowPositionals: true,
    options: {
      output: { type: 'string', short: 'o' }, 'in-place': { type: 'boolean' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, ...LOAD_FLAGS,
    },
  });
  if (values.help || positionals.length < 2) return help(UPDATE_HELP, !values.help);
  const [file, ...inputs] = positionals;
  if (values.output === undefined && !values['in-place'])
    throw new ReconpatchError('ERR_INVALID_OPTION', `update needs -o <out.rcp> (a new model file) or --in-place (overwrite ${file})`);
  if (values.output !== undefined && values['in-place']) throw new ReconpatchError('ERR_INVALID_OPTION', 'give either -o <out.rcp> or --in-place, not both');
  const out = values.output ?? file;
  await checkWritable(out); // fail before the update, not after it
  const model = await loadModel(file, values);
  const images = (await expandInputs(inputs)).map((i) => i.path);
  const summary = await model.update(images, { onProgress: progressLogger() });
  for (const w of summary.warnings) process.stderr.write(`reconpatch: warning: ${w}\n`);
  await model.save(out);
  report({ model: out, ...summary }, values.json);
  return 0;
}
