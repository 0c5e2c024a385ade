// npm "install" step, and the way to build the addon against a given libtorch.
//   node scripts/build-native.mjs                    use a prebuild or build that loads here, else compile into build/
//   node scripts/build-native.mjs --libtorch <dir>   compile against that libtorch into build-<abi tag>/ (e.g.
//                                                    build-torch2.14-cu13), beside the default build
// Environment:
//   PREBUILDS_ONLY=1         never compile: fail with what to do when no prebuild loads here.
//   RECONPATCH_FORCE_BUILD=1 always compile (ignore prebuilds and earlier builds).
//   Torch_DIR=<dir>          compile against the libtorch whose TorchConfig.cmake is in <dir>; implies a build.
//   RECONPATCH_LIBTORCH=<dir> the libtorch to compile against when one must be compiled (else a Python
//                            torch, else Debian's libtorch-dev).
// CMake gets what a wheel's libtorch needs: its own Torch/Caffe2 configs ahead of Debian's, and for CUDA
// the toolkit root (nvcc) and the NVIDIA runtime wheels' nvrtc.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const args = process.argv.slice(2);
const libtorchArg = args[0] === '--libtorch' ? args[1] : undefined;
if (args.length && !libtorchArg) {
  console.error('usage: node scripts/build-native.mjs [--libtorch <dir>]');
  process.exit(2);
}
const torchDirEnv = process.env.Torch_DIR ? path.resolve(process.env.Torch_DIR) : '';
const forceBuild = !!process.env.RECONPATCH_FORCE_BUILD || !!torchDirEnv || !!libtorchArg;
const prebuildsOnly = !!process.env.PREBUILDS_ONLY;
const dist = path.join(root, 'dist/libtorch/find.js');

/** The loader's own functions when the TypeScript is built (always in the npm package). */
async function loader() {
  return existsSync(dist) ? await import(pathToFileURL(dist).href) : undefined;
}

/** Why no addon loads here, or '' when one does (the real loader, in a child process). */
function loadError() {
  if (!existsSync(path.join(root, 'dist/index.js'))) {
    // A checkout before its first TypeScript build: a previous native build counts as present.
    return existsSync(path.join(root, 'build/Release/reconpatch.json')) ? '' : 'no build yet';
  }
  const probe = `import(${JSON.stringify(pathToFileURL(path.join(root, 'dist/native.js')).href)}).then((m) => m.native())`;
  const r = spawnSync(process.execPath, ['-e', probe], { encoding: 'utf8' });
  return r.status === 0 ? '' : (r.stderr || `exit ${r.status}`).trim();
}

if (forceBuild && prebuildsOnly) {
  console.error('reconpatch: PREBUILDS_ONLY forbids compiling, but RECONPATCH_FORCE_BUILD, Torch_DIR or --libtorch asks for it; unset one.');
  process.exit(1);
}
if (!forceBuild) {
  const why = loadError();
  if (!why) {
    console.log('reconpatch: native addon present, skipping build');
    process.exit(0);
  }
  if (prebuildsOnly) {
    console.error(`reconpatch: PREBUILDS_ONLY is set, so no compiling, but no prebuilt addon loads here.\n${why}`);
    process.exit(1);
  }
}

/** The CMake definitions for the libtorch to compile against, and the build directory. */
async function target() {
  const find = await loader();
  if (torchDirEnv) return { defs: { Torch_DIR: torchDirEnv }, out: 'build', what: `Torch_DIR=${torchDirEnv}` };
  const explicit = libtorchArg ?? process.env.RECONPATCH_LIBTORCH;
  let t;
  if (explicit) {
    if (!find) {
      console.error('reconpatch: building against a given libtorch needs the TypeScript built first: npm run build:ts');
      process.exit(1);
    }
    t = find.describeLibtorch(explicit, 'RECONPATCH_LIBTORCH');
    if (!t) {
      console.error(`reconpatch: ${explicit} holds no libtorch (no lib/libtorch_cpu.so with a version.py or build-version beside it).`);
      process.exit(1);
    }
  } else if (find) {
    const { defaultCacheDir } = await import(pathToFileURL(path.join(root, 'dist/io/weights.js')).href);
    t = find.findLibtorches(defaultCacheDir()).found.find((x) => x.torchDir);
  }
  if (!t || t.source === 'debian') {
    const systemTorchDir = '/usr/lib/x86_64-linux-gnu/cmake/Torch';
    if (!existsSync(path.join(systemTorchDir, 'TorchConfig.cmake'))) {
      console.error(
        'reconpatch: no libtorch to compile against. Run `sudo bash scripts/setup.sh` (apt-get install -y libtorch-dev ' +
          'libopenblas0-pthread), or `npx reconpatch libtorch --variant cpu|cuda --download` and set RECONPATCH_LIBTORCH, ' +
          'or set Torch_DIR to a libtorch CMake directory, then `npm install` again.',
      );
      process.exit(1);
    }
    return { defs: { Torch_DIR: systemTorchDir }, out: libtorchArg ? `build-${find.abiTag(t)}` : 'build', what: 'Debian libtorch-dev' };
  }
  if (!t.torchDir) {
    console.error(`reconpatch: ${t.libDir} has no CMake files (share/cmake/Torch); a source build needs a full libtorch (a wheel or a libtorch zip).`);
    process.exit(1);
  }
  const torchRoot = path.dirname(t.libDir);
  const defs = { CMAKE_PREFIX_PATH: torchRoot, Torch_DIR: t.torchDir, Caffe2_DIR: path.join(torchRoot, 'share/cmake/Caffe2') };
  if (t.variant === 'cuda') {
    const toolkit = [process.env.CUDA_HOME, process.env.CUDA_PATH, '/usr/local/cuda'].find((d) => d && existsSync(path.join(d, 'bin/nvcc')));
    if (!toolkit) {
      console.error(`reconpatch: compiling against ${t.libDir} (CUDA ${t.cuda}) needs the CUDA toolkit (nvcc) for CMake; set CUDA_HOME.`);
      process.exit(1);
    }
    defs.CUDA_TOOLKIT_ROOT_DIR = toolkit;
    // The toolkit may lack nvrtc; the wheel's NVIDIA runtime has it.
    const nvidia = path.join(torchRoot, '..', 'nvidia');
    for (const d of existsSync(nvidia) ? readdirSync(nvidia) : []) {
      const lib = path.join(nvidia, d, 'lib');
      const nvrtc = existsSync(lib) ? readdirSync(lib).find((f) => /^libnvrtc\.so\.\d+$/.test(f)) : undefined;
      if (nvrtc) defs.CUDA_nvrtc_LIBRARY = path.join(lib, nvrtc);
    }
  }
  const out = libtorchArg ? `build-${find.abiTag(t)}` : 'build';
  return { defs, out, what: `${find.describeAbi(t)} at ${t.libDir}` };
}

const { defs, out, what } = await target();
// Installed as a dependency, only the addon users load is built: the test addon (reconpatch_probes.node,
// the addon plus the test and benchmark probes; CMakeLists.txt) is for a checkout's tests.
const installed = root.split(path.sep).includes('node_modules');
if (installed) defs.RECONPATCH_TEST_ADDON = 'OFF';
// CMake caches what find_package(Torch) found, so a build directory configured against another
// libtorch is rebuilt from scratch rather than mixing the two.
const cache = path.join(root, out, 'CMakeCache.txt');
const configuredFor = existsSync(cache) ? /^Torch_DIR:(?:PATH|UNINITIALIZED)=(.*)$/m.exec(readFileSync(cache, 'utf8'))?.[1] : undefined;
const fresh = configuredFor !== undefined && path.resolve(configuredFor) !== path.resolve(defs.Torch_DIR);
console.log(`reconpatch: compiling against ${what} into ${out}/`);
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const cmdArgs = [cmakeJs, fresh ? 'rebuild' : 'compile', '--out', out, ...Object.entries(defs).map(([k, v]) => `--CD${k}=${v}`)];
const r = spawnSync(process.execPath, cmdArgs, { cwd: root, stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);

// Installed as a dependency, the build directory keeps only what loads: the objects and the
// ~570 MB precompiled header are never used again (a checkout keeps them for incremental builds).
if (installed) {
  const buildDir = path.join(root, out);
  for (const entry of readdirSync(buildDir)) if (entry !== 'Release') rmSync(path.join(buildDir, entry), { recursive: true, force: true });
  const release = path.join(buildDir, 'Release');
  for (const entry of readdirSync(release))
    if (entry !== 'reconpatch.node' && entry !== 'reconpatch.json') rmSync(path.join(release, entry), { recursive: true, force: true });
  console.log(`reconpatch: kept ${out}/Release/reconpatch.node and its reconpatch.json; removed the build's intermediates`);
}
