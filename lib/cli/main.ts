#!/usr/bin/env node
/**
 * The `reconpatch` command line: fit on good parts, score images, evaluate on an MVTec-layout
 * dataset, run a demo on a generated one, fetch weights, assemble a libtorch. Results go to
 * stdout, progress and logs to stderr. One file per group of commands beside this one.
 */
import { readFileSync } from 'node:fs';

import { ReconpatchError } from '../errors.js';
import { demoCommand, evalCommand } from './eval.js';
import { submitCommand, workerCommand } from './fleet.js';
import { libtorchCommand } from './libtorch.js';
import { fitCommand, infoCommand, scoreCommand } from './model.js';
import { modelsCommand } from './models.js';
import { errorRecord, help } from './output.js';
import { serveCommand } from './serve.js';
import { updateCommand } from './update.js';
import { weightsCommand } from './weights.js';

const USAGE = `reconpatch <command> [options]

Commands:
  demo [--dir <path>]                          generate a synthetic defect dataset, fit and evaluate on it
  eval --data <root> --category <name>         fit on <root>/<name>/train/good, score <root>/<name>/test
  fit <dir|glob|image>... -o <model.rcp> --backbone <file.pt|name>
                                               fit on images of good parts and calibrate the threshold on them;
                                               several --backbone values fit an ensemble saved as one file
  update <model.rcp> <dir|glob|image>... (-o <out> | --in-place)
                                               take new good images into a saved model (no refit)
  score <model.rcp> <dir|glob|image>...        score images with a saved model or ensemble
                                               [--heatmaps <dir>] [--format text|jsonl|csv] [--continue-on-error]
  info <model.rcp> [--json] [--evidence]       a model's backbone, bank and threshold (per member for an ensemble)
  models publish|list|rollback --store <dir>   a model store: versions by id, the current one, rollback
  worker --redis <url> --store <dir>           a scoring worker: takes score jobs from Redis, models from the store
  submit --redis <url> --model <id> <dir|glob|image>...
                                               score frames on the workers; one row per frame as verdicts arrive
  serve --store <dir> --token <t> [--port <p>] the inspection service: score by model id, metrics, health,
                                               verdicts, labels, updates, and the review page for operators
  weights pull <name> [--from <url|file>]      download torchvision's official weights into the cache
  weights list                                 the known weights and whether they are cached
  libtorch --variant cpu|cuda [--download]     assemble a libtorch from PyTorch wheels into the cache and check it
  libtorch list                                the libtorches found, this package's addons, and the pair loaded

Run 'reconpatch <command> --help' for its options; 'reconpatch --version' prints the version.`;

/** The package's version, from its package.json (two folders above dist/cli). */
function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

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
    case 'models':
      return modelsCommand(rest);
    case 'worker':
      return workerCommand(rest);
    case 'submit':
      return submitCommand(rest);
    case 'serve':
      return serveCommand(rest);
    case 'weights':
      return weightsCommand(rest);
    case 'libtorch':
      return libtorchCommand(rest);
    case '--version':
    case '-v':
      process.stdout.write(`reconpatch ${version()}\n`);
      return 0;
    case undefined:
    case '--help':
    case '-h':
      return help(USAGE, command === undefined);
    default:
      process.stderr.write(`reconpatch: unknown command '${command}'\n\n${USAGE}\n`);
      return 2;
  }
}

/** Whether the command line asked for JSON output (--json, or --format jsonl). */
function jsonMode(argv: string[]): boolean {
  return argv.some((a, i) => a === '--json' || a === '--format=jsonl' || (a === '--format' && argv[i + 1] === 'jsonl'));
}

/** A usage error (an unknown flag, a bad value: ERR_INVALID_OPTION) exits 2, as a wrong command does; any other error 1. */
function exitCode(err: unknown): number {
  return err instanceof ReconpatchError && err.code === 'ERR_INVALID_OPTION' ? 2 : 1;
}

// A reader that stops early (`reconpatch score … | head`) closes the pipe: the rows it wanted were
// written, so end quietly (as other Unix tools do) instead of an unhandled EPIPE error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    // In --json mode stdout is the machine channel: the error goes there as one JSON line.
    if (jsonMode(process.argv.slice(2))) {
      process.stdout.write(`${JSON.stringify({ error: errorRecord(err) })}\n`);
    } else {
      const code = err instanceof ReconpatchError ? ` [${err.code}]` : '';
      process.stderr.write(`reconpatch: error${code}: ${err instanceof Error ? err.message : String(err)}\n`);
    }
    process.exit(exitCode(err));
  },
);
