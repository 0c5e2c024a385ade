// npm "install" step: use a loadable prebuild or existing build, else compile with cmake-js.
//   PREBUILDS_ONLY=1         never compile: fail with what to do when no prebuild loads here.
//   RECONPATCH_FORCE_BUILD=1 always compile (ignore prebuilds and earlier builds).
//   Torch_DIR=<dir>          compile against that libtorch (e.g. a CUDA one) instead of Debian's;
//                            implies a build (the CPU prebuild must not win), from scratch when
//                            build/ was configured against another libtorch.
// Fails with the exact setup command when libtorch is not installed.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const torchDir = process.env.Torch_DIR ? path.resolve(process.env.Torch_DIR) : '';
const forceBuild = !!process.env.RECONPATCH_FORCE_BUILD || !!torchDir;
const prebuildsOnly = !!process.env.PREBUILDS_ONLY;

/** Why the prebuild or build did not load, or '' when one loads. */
function loadError() {
  try {
    require('node-gyp-build')(root);
    return '';
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

if (forceBuild && prebuildsOnly) {
  console.error('reconpatch: PREBUILDS_ONLY forbids compiling, but RECONPATCH_FORCE_BUILD or Torch_DIR asks for it; unset one.');
  process.exit(1);
}
if (!forceBuild) {
  const why = loadError();
  if (!why) {
    console.log('reconpatch: native addon present, skipping build');
    process.exit(0);
  }
  if (prebuildsOnly) {
    const missingTorch = /lib(torch|c10)[^ ]*\.so/.test(why);
    console.error(
      'reconpatch: PREBUILDS_ONLY is set, so no compiling, but ' +
        (missingTorch
          ? 'the prebuilt binary cannot load: the system libtorch is missing. On Debian bookworm run ' +
            '`sudo apt-get install libtorch1.13 libopenblas0-pthread`, then `npm rebuild reconpatch`.'
          : `no prebuilt binary loads on this platform (${process.platform}-${process.arch}). ` +
            'Unset PREBUILDS_ONLY to build from source (needs libtorch-dev, see `scripts/setup.sh`).') +
        `\n  cause: ${why.split('\n')[0]}`,
    );
    process.exit(1);
  }
}
const systemTorchDir = '/usr/lib/x86_64-linux-gnu/cmake/Torch';
if (!torchDir && !existsSync(path.join(systemTorchDir, 'TorchConfig.cmake'))) {
  console.error(
    'reconpatch: libtorch is not installed. Run `sudo bash scripts/setup.sh` ' +
      '(apt-get install -y libtorch-dev libopenblas0-pthread), or set Torch_DIR to a libtorch ' +
      'CMake directory, then `npm install` again.',
  );
  process.exit(1);
}
// CMake caches what find_package(Torch) found, so a build/ configured against another libtorch
// is rebuilt from scratch rather than mixing the two.
const cache = path.join(root, 'build/CMakeCache.txt');
const configuredFor = existsSync(cache) ? /^Torch_DIR:PATH=(.*)$/m.exec(readFileSync(cache, 'utf8'))?.[1] : undefined;
const wanted = torchDir || systemTorchDir;
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const args = [cmakeJs, configuredFor && path.resolve(configuredFor) !== wanted ? 'rebuild' : 'compile'];
if (torchDir) args.push(`--CDTorch_DIR=${torchDir}`);
const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);
