/** `reconpatch libtorch`: assemble or find a libtorch, check that it loads, say how to use it. */
import path from 'node:path';

import { ReconpatchError } from '../errors.js';
import { addonBinaries, pickAddon } from '../native.js';
import { defaultCacheDir } from '../io/weights.js';
import { WHEEL_VERSIONS, assembleLibtorch, checkLibtorch } from '../libtorch/assemble.js';
import { abiTag, describeAbi, findLibtorches } from '../libtorch/find.js';
import { parseCommandArgs } from './args.js';

export const LIBTORCH_HELP = `reconpatch libtorch --variant cpu|cuda [--wheel <torch.whl>] [--wheels <dir>] [--download [--index-url <url>] [--version <v>]]
reconpatch libtorch list [--json]

Assembles a libtorch from PyTorch wheel files into the cache (<cache>/libtorch/<version>), checks that it
loads (and, with a matching addon in this package, that an engine starts on it), and prints the
RECONPATCH_LIBTORCH and Torch_DIR to use. Sources, in this order:
  --wheel <torch.whl>   a torch wheel; CUDA wheels also need the NVIDIA runtime wheels they list
                        (looked for in --wheels <dir>, default the torch wheel's directory)
  --download            pip downloads the wheels (its configured index, or --index-url) into <cache>/wheels;
                        default versions: cpu ${WHEEL_VERSIONS.cpu}, cuda ${WHEEL_VERSIONS.cuda}
  (neither)             an installed Python torch of that variant (python3, or $RECONPATCH_PYTHON), used in place
Nothing is downloaded without --download. Wheels are unpacked into a temporary directory inside
<cache>/libtorch and checked before they replace the libtorch of that version (which a failure leaves
as it was); a wheel with entries outside its own tree, links or devices is refused, and unpacking stops
past 16 GiB in all. list shows the libtorches found, the addons this package
has, and which pair the loader picks.
Cache directory: --cache-dir, else $RECONPATCH_CACHE, else $XDG_CACHE_HOME/reconpatch, else ~/.cache/reconpatch.`;

export async function libtorchCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs({
    args, allowPositionals: true,
    options: {
      variant: { type: 'string' }, wheel: { type: 'string' }, wheels: { type: 'string' }, download: { type: 'boolean' },
      'index-url': { type: 'string' }, version: { type: 'string' }, 'cache-dir': { type: 'string' },
      json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return out(LIBTORCH_HELP, false, 0);
  const cacheDir = values['cache-dir'] ? path.resolve(values['cache-dir']) : defaultCacheDir();
  if (positionals[0] === 'list' && positionals.length === 1) return list(cacheDir, !!values.json);
  if (positionals.length > 0 || (values.variant !== 'cpu' && values.variant !== 'cuda')) {
    if (values.variant !== undefined && values.variant !== 'cpu' && values.variant !== 'cuda') {
      throw new ReconpatchError('ERR_INVALID_OPTION', `--variant must be cpu or cuda, got '${values.variant}'`);
    }
    return out(LIBTORCH_HELP, true, 2);
  }
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const r = await assembleLibtorch({
    variant: values.variant, wheel: values.wheel, wheelsDir: values.wheels, download: values.download,
    indexUrl: values['index-url'], version: values.version, cacheDir, log,
  });
  const check = checkLibtorch(r.root, cacheDir);
  const result = {
    libtorch: describeAbi(r.libtorch), abi: abiTag(r.libtorch), root: r.root, assembled: r.assembled,
    unpackedBytes: r.bytes, torchDir: r.libtorch.torchDir ?? null, ...check,
  };
  if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else {
    const size = r.assembled ? ` (${(r.bytes / 1e9).toFixed(2)} GB unpacked)` : ' (installed Python torch, used in place)';
    process.stdout.write(`${describeAbi(r.libtorch)} at ${r.root}${size}\n`);
    process.stdout.write(`check: ${check.loads ? 'its libraries load' : 'its libraries do not load'}` +
      (check.addon ? `; addon ${check.addon}; engine device ${check.device ?? '-'}` : check.loads ? `; this package has no addon for ${abiTag(r.libtorch)} (build one: Torch_DIR below)` : '') +
      (check.error ? `\n  error: ${check.error}` : '') + '\n');
    if (r.libtorch.torchDir) process.stdout.write(`Torch_DIR=${r.libtorch.torchDir}\n`);
    process.stdout.write(`export RECONPATCH_LIBTORCH=${r.root}\n`);
  }
  return check.loads && !check.error ? 0 : 1;
}

function list(cacheDir: string, json: boolean): number {
  const { found, notes } = findLibtorches(cacheDir);
  const addons = addonBinaries();
  let picked: string | null = null;
  let why: string | null = null;
  try {
    const p = pickAddon(undefined, cacheDir);
    picked = `${describeAbi(p.libtorch)} from ${p.libtorch.source} with ${p.addon.file}`;
  } catch (e) {
    why = e instanceof Error ? e.message : String(e);
  }
  if (json) {
    process.stdout.write(`${JSON.stringify({ libtorches: found.map((t) => ({ ...t, abi: abiTag(t) })), addons, picked, notes, error: why })}\n`);
    return 0;
  }
  process.stdout.write('libtorches found (loader order):\n');
  for (const t of found) process.stdout.write(`  ${abiTag(t).padEnd(16)} ${describeAbi(t).padEnd(30)} ${t.source.padEnd(20)} ${t.libDir}\n`);
  if (!found.length) process.stdout.write('  none\n');
  for (const n of notes) process.stdout.write(`  note: ${n}\n`);
  process.stdout.write('addons in this package:\n');
  for (const a of addons) process.stdout.write(`  ${abiTag({ version: a.abi.torch, variant: a.abi.variant, cuda: a.abi.cuda }).padEnd(16)} ${a.kind.padEnd(9)} ${a.file}\n`);
  if (!addons.length) process.stdout.write('  none\n');
  process.stdout.write(picked ? `loader picks: ${picked}\n` : `loader picks nothing:\n${why}\n`);
  return 0;
}

function out(text: string, asError: boolean, code: number): number {
  (asError ? process.stderr : process.stdout).write(`${text}\n`);
  return code;
}
