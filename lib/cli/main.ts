#!/usr/bin/env node
/**
 * The `reconpatch` command line: fit on good parts, score images, evaluate on an MVTec-layout
 * dataset, run a demo on a generated one, fetch weights, assemble a libtorch. Results go to
 * stdout, progress and logs to stderr. One file per group of commands beside this one.
 */
import { ReconpatchError } from '../errors.js';
import { demoCommand, evalCommand } from './eval.js';
import { libtorchCommand } from './libtorch.js';
import { fitCommand, infoCommand, scoreCommand } from './model.js';
import { help } from './output.js';
import { updateCommand } from './update.js';
import { weightsCommand } from './weights.js';

const USAGE = `reconpatch <command> [options]

Commands:
  demo [--dir <path>]                          generate a synthetic defect dataset, fit and evaluate on it
  eval --data <root> --category <name>         fit on <root>/<name>/train/good, score <root>/<name>/test
  fit <dir|glob> -o <model.rcp>                fit on the images in <dir> (10% held out to calibrate the threshold);
                                               several --backbone values fit an ensemble saved as one file
  update <model.rcp> <dir|glob> [-o <out>]     take new good images into a saved model (no refit)
  score <model.rcp> <image...>                 score images with a saved model or ensemble [--heatmaps <dir>] [--json]
  info <model.rcp>                             show a model's options, backbone, bank and calibration (and members)
  weights pull <name> [--from <url|file>]      download torchvision's official weights into the cache
  weights list                                 the known weights and whether they are cached
  libtorch --variant cpu|cuda [--download]     assemble a libtorch from PyTorch wheels into the cache and check it
  libtorch list                                the libtorches found, this package's addons, and the pair loaded

Run 'reconpatch <command> --help' for its options.`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'demo':
      return demoCommand(rest);
    case 'eval':
      return evalCommand(rest);
    case 'fit':
      return fitCommand(rest);
    case 'score':
      return scoreCommand(rest);
    case 'info':
      return infoCommand(rest);
    case 'update':
      return updateCommand(rest);
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

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const code = err instanceof ReconpatchError ? ` [${err.code}]` : '';
    process.stderr.write(`reconpatch: error${code}: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
