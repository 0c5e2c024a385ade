/**
 * `reconpatch libtorch`: a usable libtorch from PyTorch wheel files (torch plus, for CUDA, the
 * NVIDIA runtime wheels it requires), unpacked into the cache directory in the wheels' own layout
 * (`torch/lib`, `nvidia/<name>/lib`) so that the libraries' RPATHs find each other; or a Python
 * torch that is already installed, used in place. Nothing is downloaded unless asked
 * (`download: true` runs `pip download` against pip's configured index or `indexUrl`).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { ReconpatchError } from '../errors.js';
import { type Libtorch, describeAbi, describeLibtorch, findLibtorches } from './find.js';
import { WHEEL_LIMITS, type WheelLimits, readEntries, unpackWheel, wheelError } from './wheel_zip.js';

/** The PyTorch releases this package ships prebuilds for: what `download` fetches by default. */
export const WHEEL_VERSIONS = { cpu: '2.13.0+cpu', cuda: '2.14.1' } as const;

/** `cuda-toolkit[extra]` requirements of recent torch wheels, as the NVIDIA wheels that hold them. */
const CUDA_TOOLKIT_EXTRAS: Record<string, string> = {
  cublas: 'nvidia-cublas', cudart: 'nvidia-cuda-runtime', cufft: 'nvidia-cufft', cufile: 'nvidia-cufile',
  cupti: 'nvidia-cuda-cupti', curand: 'nvidia-curand', cusolver: 'nvidia-cusolver', cusparse: 'nvidia-cusparse',
  nvjitlink: 'nvidia-nvjitlink', nvrtc: 'nvidia-cuda-nvrtc', nvtx: 'nvidia-nvtx',
};

export interface AssembleOptions {
  variant: 'cpu' | 'cuda';
  /** A torch wheel file. Default: none (use a Python torch, or download with `download`). */
  wheel?: string;
  /** Where the NVIDIA runtime wheels are (default: the torch wheel's directory). */
  wheelsDir?: string;
  /** Fetch the wheels with `pip download` (pip's configured index, or `indexUrl`) into `<cacheDir>/wheels`. */
  download?: boolean;
  indexUrl?: string;
  /** The torch version to download (default {@link WHEEL_VERSIONS}). */
  version?: string;
  cacheDir: string;
  /** The Python whose pip downloads (default `RECONPATCH_PYTHON` or `python3`). */
  python?: string;
  log?: (line: string) => void;
  /**
   * Caps on unpacking (default {@link WHEEL_LIMITS}: 16 GiB written in all, 4 GiB per file,
   * 200 000 entries per wheel, 1 MiB read from `version.py` / `METADATA`). Lower them to test, or
   * raise them for a wheel that really is larger.
   */
  limits?: Partial<WheelLimits>;
}

export interface AssembleResult {
  libtorch: Libtorch;
  /** The directory to pass as `RECONPATCH_LIBTORCH`. */
  root: string;
  /** false: an installed Python torch is used in place. */
  assembled: boolean;
  /** Bytes unpacked (0 when used in place). */
  bytes: number;
}

/** pip's normalised project name of a wheel file: `nvidia_cublas-13.1.1.3-py3-...whl` -> `nvidia-cublas`. */
function wheelProject(file: string): string {
  return path.basename(file).split('-')[0].toLowerCase().replace(/[-_.]+/g, '-');
}

/** The NVIDIA runtime wheels a torch wheel requires on Linux, as pip requirement strings. */
export function nvidiaRequirements(metadata: string): string[] {
  const out: string[] = [];
  for (const line of metadata.split('\n')) {
    const m = /^Requires-Dist:\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*([^;]*)(;.*)?$/.exec(line.trim());
    if (!m) continue;
    const [, name, extras, spec, marker] = m;
    if (marker && !/platform_system\s*==\s*"Linux"/.test(marker)) continue;
    if (/\bextra\s*==/.test(marker ?? '')) continue;
    const project = name.toLowerCase().replace(/[-_.]+/g, '-');
    if (project.startsWith('nvidia-')) out.push(`${project}${spec.trim()}`);
    else if (project === 'cuda-toolkit' && extras) {
      for (const x of extras.slice(1, -1).split(',')) {
        const nv = CUDA_TOOLKIT_EXTRAS[x.trim()];
        if (nv) out.push(nv);
      }
    }
  }
  return [...new Set(out)];
}

function pipDownload(python: string, requirements: string[], dest: string, indexUrl: string | undefined, log: (l: string) => void): void {
  mkdirSync(dest, { recursive: true });
  const args = ['-m', 'pip', 'download', '--no-deps', '--disable-pip-version-check', '-d', dest, ...(indexUrl ? ['--index-url', indexUrl] : []), ...requirements];
  log(`libtorch: ${python} ${args.join(' ')}`);
  const r = spawnSync(python, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) {
    throw new ReconpatchError('ERR_LIBTORCH', `pip download failed (exit ${r.status ?? r.error?.message}) for: ${requirements.join(' ')}; ` +
      'give the wheel files with --wheel/--wheels, or a reachable index with --index-url');
  }
}

function newestWheel(dir: string, project: string, version?: string): string | undefined {
  if (!existsSync(dir)) return undefined;
  const files = readdirSync(dir).filter((f) => f.endsWith('.whl') && wheelProject(f) === project);
  const wanted = version ? files.filter((f) => f.split('-')[1] === version) : files;
  return wanted.sort((a, b) => b.localeCompare(a, 'en', { numeric: true })).map((f) => path.join(dir, f))[0];
}

/** The wheel in `dir` that satisfies `requirement` (`nvidia-cudnn-cu13==9.24.0.43` or a bare name). */
function wheelFor(dir: string, requirement: string): string | undefined {
  const m = /^([a-z0-9-]+)\s*(?:==\s*([^,\s]+))?/.exec(requirement);
  return m ? newestWheel(dir, m[1], m[2]) : undefined;
}

/**
 * Assembles (or finds) a libtorch of `variant`. Order: the given wheel; a download when asked; an
 * installed Python torch of that variant (used in place). Throws ERR_LIBTORCH saying what is
 * missing and how to get it.
 */
export async function assembleLibtorch(o: AssembleOptions): Promise<AssembleResult> {
  const log = o.log ?? (() => {});
  const python = o.python ?? (process.env.RECONPATCH_PYTHON || 'python3');
  let wheel = o.wheel ? path.resolve(o.wheel) : undefined;
  let wheelsDir = o.wheelsDir ? path.resolve(o.wheelsDir) : wheel ? path.dirname(wheel) : undefined;
  if (!wheel && o.download) {
    wheelsDir = wheelsDir ?? path.join(o.cacheDir, 'wheels');
    const version = o.version ?? WHEEL_VERSIONS[o.variant];
    wheel = newestWheel(wheelsDir, 'torch', version);
    if (!wheel) {
      pipDownload(python, [`torch==${version}`], wheelsDir, o.indexUrl, log);
      wheel = newestWheel(wheelsDir, 'torch', version);
    }
  }
  if (!wheel) {
    const py = findLibtorches(o.cacheDir).found.find((t) => t.source === 'python');
    if (py && py.variant === o.variant) {
      log(`libtorch: using the installed Python torch in place: ${describeAbi(py)} at ${py.libDir}`);
      return { libtorch: py, root: path.dirname(py.libDir), assembled: false, bytes: 0 };
    }
    const version = o.version ?? WHEEL_VERSIONS[o.variant];
    throw new ReconpatchError('ERR_LIBTORCH',
      `no ${o.variant.toUpperCase()} libtorch to assemble: ` +
      (py ? `the Python torch found is ${describeAbi(py)}, not ${o.variant}; ` : 'no Python torch was found; ') +
      `give a torch wheel (--wheel torch-${version}-...whl), or let pip fetch it from its configured index (--download), ` +
      `e.g. npx reconpatch libtorch --variant ${o.variant} --download`);
  }
  if (!existsSync(wheel)) throw new ReconpatchError('ERR_LIBTORCH', `wheel not found: ${wheel}`);
  if (wheelProject(wheel) !== 'torch') throw new ReconpatchError('ERR_LIBTORCH', `${wheel} is not a torch wheel`);
  const limits: WheelLimits = { ...WHEEL_LIMITS, ...o.limits };

  const [versionPy, metadata] = await readEntries(wheel, [/^torch\/version\.py$/, /^torch-[^/]+\.dist-info\/METADATA$/], limits);
  if (!versionPy || !metadata) throw new ReconpatchError('ERR_LIBTORCH', `${wheel} has no torch/version.py or METADATA: not a PyTorch wheel`);
  const version = /^__version__\s*=\s*['"]([^'"]+)['"]/m.exec(versionPy)?.[1] ?? '';
  // The version names the target directory: only a plain version number may do that.
  if (version.length > 64 || !VERSION_PATTERN.test(version)) {
    throw wheelError(wheel, `torch/version.py gives the version ${JSON.stringify(version.slice(0, 80))}, not a version number like 2.13.0+cpu`);
  }
  const cuda = /^cuda(?:\s*:[^=]*)?=\s*['"]([0-9.]+)['"]/m.exec(versionPy)?.[1];
  const variant = cuda ? 'cuda' : 'cpu';
  if (variant !== o.variant) {
    throw new ReconpatchError('ERR_LIBTORCH', `${path.basename(wheel)} is a ${variant.toUpperCase()} build of torch ${version}; --variant ${o.variant} needs a ${o.variant.toUpperCase()} wheel`);
  }

  const nvidia = variant === 'cuda' ? nvidiaRequirements(metadata) : [];
  const dir = wheelsDir ?? path.dirname(wheel);
  let missing = nvidia.filter((r) => !wheelFor(dir, r));
  if (missing.length && o.download) {
    pipDownload(python, missing, dir, o.indexUrl, log);
    missing = nvidia.filter((r) => !wheelFor(dir, r));
  }
  if (missing.length) {
    throw new ReconpatchError('ERR_LIBTORCH',
      `torch ${version} needs these NVIDIA runtime wheels, not found in ${dir}: ${missing.join(' ')}; ` +
      `fetch them with: pip download --no-deps -d ${dir} ${missing.map((m) => `'${m}'`).join(' ')}  (or add --download)`);
  }

  const name = version.includes('+') ? version.replace('+', '-') : `${version}-${variant}`; // 2.14.1-cu130, 2.13.0-cpu
  const parent = path.resolve(o.cacheDir, 'libtorch');
  const root = path.join(parent, name);
  if (path.dirname(root) !== parent || path.basename(root) !== name) {
    throw new ReconpatchError('ERR_LIBTORCH', `refusing to assemble into ${root}: not a directory directly in ${parent}`);
  }
  const wheels = [wheel, ...nvidia.map((r) => wheelFor(dir, r)!)];
  let tmp: string | undefined;
  try {
    // Unpacked and checked in a fresh directory beside the target, then swapped in: a failure at
    // any point leaves the libtorch already there as it was, and no temporary directory behind.
    mkdirSync(parent, { recursive: true });
    tmp = mkdtempSync(path.join(parent, `.${name}.tmp-`));
    const total = { bytes: 0 };
    for (const w of wheels) {
      log(`libtorch: unpacking ${path.basename(w)}`);
      // torch: the C++ parts only: libraries (not the Python extension), headers, CMake files, version.py.
      // NVIDIA wheels: their libraries.
      const keep = w === wheel
        ? (n: string) => (/^torch\/(lib|include|share)\//.test(n) && n !== 'torch/lib/libtorch_python.so') || n === 'torch/version.py'
        : (n: string) => /^nvidia\/[^/]+\/lib\/[^/]+$/.test(n);
      await unpackWheel(w, tmp, keep, limits, total);
    }
    writeFileSync(path.join(tmp, 'reconpatch-libtorch.json'), JSON.stringify({ torch: version, variant, cuda, wheels: wheels.map((w) => path.basename(w)) }, null, 2));
    const unpacked = describeLibtorch(tmp, 'cache');
    if (!unpacked || !unpacked.libDir.startsWith(tmp + path.sep)) {
      throw wheelError(wheel, 'it holds no usable libtorch (no torch/lib/libtorch_cpu.so beside torch/version.py)');
    }
    replaceDir(tmp, root);
    tmp = undefined;
    const libtorch = describeLibtorch(root, 'cache');
    if (!libtorch) throw new ReconpatchError('ERR_LIBTORCH', `${root}: the assembled libtorch is not there after the swap; run the command again`);
    return { libtorch, root, assembled: true, bytes: total.bytes };
  } catch (err) {
    if (err instanceof ReconpatchError) throw err;
    throw new ReconpatchError('ERR_LIBTORCH', `could not assemble a libtorch in ${parent} (${(err as Error).message}); ` +
      'check that the cache directory is writable and has room, or give another with --cache-dir', { cause: err });
  } finally {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }
}

/** Torch versions as PyPI and PyTorch's index spell them: `2.13.0+cpu`, `2.14.1`, `2.6.0.dev20241112+cu124`, `2.5.0a0+git1a2b3c`. */
const VERSION_PATTERN = /^[0-9]+(\.[0-9]+)*([a-z0-9.]*)?(\+[a-z0-9.]+)?$/i;

/**
 * Puts directory `fresh` at `target` (both in the same directory): the old one is renamed aside,
 * the new one renamed in, then the old one removed; if the second rename fails the old one is put back.
 */
function replaceDir(fresh: string, target: string): void {
  const old = `${fresh}.old`;
  let hadOld = true;
  try {
    renameSync(target, old);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    hadOld = false;
  }
  try {
    renameSync(fresh, target);
  } catch (err) {
    if (hadOld) renameSync(old, target);
    throw err;
  }
  if (!hadOld) return;
  try {
    rmSync(old, { recursive: true, force: true, maxRetries: 2 });
  } catch {
    // the new libtorch is in place; a leftover dot-directory is ignored by the loader (cachedLibtorches)
  }
}

export interface LibtorchCheck {
  /** Its libraries (and, for CUDA, the NVIDIA runtime) load in a fresh process. */
  loads: boolean;
  /** The addon binary of this package that matches it, if any. */
  addon?: string;
  /** The device an engine created with `device: 'auto'` got, when an addon matches. */
  device?: string;
  error?: string;
}

/**
 * Loads the libtorch at `root` in a child process (its libraries, then the matching addon and a
 * built-in engine when this package has one): what `native()` would do with `RECONPATCH_LIBTORCH=root`.
 */
export function checkLibtorch(root: string, cacheDir: string): LibtorchCheck {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const find = new URL('./find.js', import.meta.url).href;
  const index = new URL('../index.js', import.meta.url).href;
  const nativeJs = new URL('../native.js', import.meta.url).href;
  const script = `
    const { describeLibtorch, preloadLibtorch } = await import(${JSON.stringify(find)});
    const out = { loads: false };
    try {
      const t = describeLibtorch(process.env.RECONPATCH_LIBTORCH, 'RECONPATCH_LIBTORCH');
      preloadLibtorch(t);
      out.loads = true;
      const { pickAddon } = await import(${JSON.stringify(nativeJs)});
      let pick;
      try { pick = pickAddon(undefined, ${JSON.stringify(cacheDir)}); } catch { pick = undefined; }
      if (pick) {
        out.addon = pick.addon.file;
        const { Engine } = await import(${JSON.stringify(index)});
        out.device = (await Engine.create({ backbone: 'random_cnn', device: 'auto' })).info.device;
      }
    } catch (e) { out.error = e.message; }
    console.log(JSON.stringify(out));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: here, encoding: 'utf8', env: { ...process.env, RECONPATCH_LIBTORCH: root }, timeout: 300_000,
  });
  const last = r.stdout?.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(last) as LibtorchCheck;
  } catch {
    return { loads: false, error: (r.stderr || r.error?.message || `exit ${r.status}`).trim() };
  }
}
