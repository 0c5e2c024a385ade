// npm "install" step: use a loadable prebuild or existing build, else compile with cmake-js.
// Fails with the exact setup command when libtorch is not installed.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

function loadable() {
  if (process.env.RECONPATCH_FORCE_BUILD) return false;
  try {
    require('node-gyp-build')(root);
    return true;
  } catch {
    return false;
  }
}

if (loadable()) {
  console.log('reconpatch: native addon present, skipping build');
  process.exit(0);
}
const torchConfig = '/usr/lib/x86_64-linux-gnu/cmake/Torch/TorchConfig.cmake';
if (!process.env.Torch_DIR && !existsSync(torchConfig)) {
  console.error(
    'reconpatch: libtorch is not installed. Run `sudo bash scripts/setup.sh` ' +
      '(apt-get install -y libtorch-dev libopenblas0-pthread), or set Torch_DIR to a libtorch ' +
      'CMake directory, then `npm install` again.',
  );
  process.exit(1);
}
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const args = [cmakeJs, 'compile'];
if (process.env.Torch_DIR) args.push(`--CDTorch_DIR=${process.env.Torch_DIR}`);
const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);
