/** `reconpatch weights`: torchvision's official weights into the cache, and what is cached. */
import path from 'node:path';

import { TORCHVISION_ARCHITECTURES, TORCHVISION_WEIGHTS, cachedWeights, defaultCacheDir, pullWeights } from '../io/weights.js';
import { parseCommandArgs } from './args.js';
import { help } from './output.js';
import { downloadProgress } from './progress.js';

const WEIGHTS_HELP = `reconpatch weights pull <name> [--from <url|file>] [--cache-dir <dir>]
reconpatch weights list [--cache-dir <dir>] [--json]

pull downloads torchvision's official ImageNet weights for <name> (${TORCHVISION_ARCHITECTURES.join(', ')})
from download.pytorch.org, or from --from: a mirror URL of the file, a mirror base URL ending in '/', or a
local file. The file's sha256 must start with the hex digits in its name; an interrupted download resumes.
Cache directory: --cache-dir, else $RECONPATCH_CACHE, else $XDG_CACHE_HOME/reconpatch, else ~/.cache/reconpatch.`;

export async function weightsCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs({
    args, allowPositionals: true,
    options: { from: { type: 'string' }, 'cache-dir': { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  const [action, name, ...extra] = positionals;
  const cacheDir = values['cache-dir'] ? path.resolve(values['cache-dir']) : defaultCacheDir();
  if (values.help) return help(WEIGHTS_HELP);
  if (action === 'list' && name === undefined) {
    const rows = TORCHVISION_ARCHITECTURES.map((arch) => ({ name: arch, file: TORCHVISION_WEIGHTS[arch], cached: cachedWeights(arch, cacheDir) ?? null }));
    if (values.json) process.stdout.write(`${JSON.stringify({ cacheDir, weights: rows })}\n`);
    else {
      process.stdout.write(`cache: ${cacheDir}\n`);
      for (const r of rows) process.stdout.write(`${r.name.padEnd(18)} ${r.file.padEnd(32)} ${r.cached ? 'cached' : '-'}\n`);
    }
    return 0;
  }
  if (action !== 'pull' || name === undefined || extra.length > 0) return help(WEIGHTS_HELP, true);
  const file = await pullWeights(name, { cacheDir, from: values.from, onProgress: downloadProgress(name) });
  process.stdout.write(values.json ? `${JSON.stringify({ name, file })}\n` : `${file}\n`);
  return 0;
}
