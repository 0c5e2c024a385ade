/**
 * The libtorches on this machine, and loading one before the addon.
 *
 * A libtorch's C++ ABI is fixed to its version, so each addon binary is built against one libtorch
 * (the `reconpatch.json` beside it says which) and must run against a libtorch of that version and
 * variant. The addons carry no RUNPATH: the loader finds a matching libtorch and loads its
 * libraries first, by absolute path, so the addon's `libtorch_cpu.so`-style dependencies resolve
 * to them (the dynamic loader matches already loaded libraries by soname) without the user
 * setting `LD_LIBRARY_PATH`.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * Where a libtorch was found: `RECONPATCH_LIBTORCH` (alone when set), else in this order a Python
 * torch, Debian's package, one assembled by `reconpatch libtorch` in the cache; `build` is the
 * libtorch a local build was compiled against.
 * @example
 * const fromPip = (s: LibtorchSource) => s === 'python';
 */
export type LibtorchSource = 'RECONPATCH_LIBTORCH' | 'python' | 'debian' | 'cache' | 'build';

/** One libtorch on this machine. */
export interface Libtorch {
  source: LibtorchSource;
  /** The directory holding `libtorch_cpu.so` (and `libtorch_cuda.so` for CUDA). */
  libDir: string;
  /** Its version without a local suffix: `'2.14.1'`, `'1.13.0'`. */
  version: string;
  variant: 'cpu' | 'cuda';
  /** The CUDA version it was built for (`'13.0'`); CUDA variant only. */
  cuda?: string;
  /** The directory holding `TorchConfig.cmake`, when it ships CMake files (for source builds). */
  torchDir?: string;
}

/** What an addon binary was built against: the `reconpatch.json` beside it. */
export interface AddonAbi {
  torch: string;
  variant: 'cpu' | 'cuda';
  cuda?: string;
}

/**
 * The ABI key two sides must share: libtorch major.minor, the variant and, for CUDA, the CUDA
 * major version (its runtime libraries' sonames change with it). Patch releases of libtorch keep
 * the C++ ABI of their minor release.
 * @example abiTag({ version: '2.14.1', variant: 'cuda', cuda: '13.0' }) // 'torch2.14-cu13'
 */
export function abiTag(t: { version: string; variant: 'cpu' | 'cuda'; cuda?: string }): string {
  const [major, minor] = t.version.split('.');
  const cudaMajor = t.cuda ? t.cuda.split('.')[0] : '';
  return `torch${major}.${minor}-${t.variant === 'cuda' ? `cu${cudaMajor}` : 'cpu'}`;
}

/** Human form of a libtorch: `libtorch 2.14.1 (CUDA 13.0)`. */
export function describeAbi(t: { version: string; variant: 'cpu' | 'cuda'; cuda?: string }): string {
  return `libtorch ${t.version} (${t.variant === 'cuda' ? `CUDA ${t.cuda ?? '?'}` : 'CPU'})`;
}

const DEBIAN_LIBDIR = `/usr/lib/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`;

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** `__version__ = '2.14.1+cu130'` and `cuda = '13.0'` from a torch package's version.py. */
function parseVersionPy(text: string): { version: string; cuda?: string } | undefined {
  const v = /^__version__\s*=\s*['"]([^'"]+)['"]/m.exec(text)?.[1];
  if (!v) return undefined;
  const cuda = /^cuda(?:\s*:[^=]*)?=\s*['"]([0-9.]+)['"]/m.exec(text)?.[1];
  return { version: v.replace(/[+a-z].*$/, ''), cuda };
}

/**
 * Describes the libtorch in `dir`: a torch package (`site-packages/torch`), a directory holding one
 * (`site-packages`, or a libtorch assembled by `reconpatch libtorch`), a libtorch zip's root
 * (`lib/`, `build-version`) or a `lib` directory itself. Undefined when `dir` holds none.
 */
export function describeLibtorch(dir: string, source: LibtorchSource): Libtorch | undefined {
  const abs = path.resolve(dir);
  for (const root of [abs, path.join(abs, 'torch'), path.dirname(abs)]) {
    const libDir = path.join(root, 'lib');
    if (!existsSync(path.join(libDir, 'libtorch_cpu.so'))) continue;
    const fromPy = readText(path.join(root, 'version.py'));
    const fromZip = readText(path.join(root, 'build-version'));
    const parsed = fromPy ? parseVersionPy(fromPy) : fromZip ? parseVersionPy(`__version__ = '${fromZip.trim()}'`) : undefined;
    if (!parsed) continue;
    const hasCuda = existsSync(path.join(libDir, 'libtorch_cuda.so'));
    // A zip's build-version says `2.14.1+cu130`: the CUDA version is in the suffix.
    const cudaFromSuffix = /\+cu(\d+)(\d)$/.exec((fromZip ?? '').trim());
    const cuda = hasCuda ? (parsed.cuda ?? (cudaFromSuffix ? `${cudaFromSuffix[1]}.${cudaFromSuffix[2]}` : undefined)) : undefined;
    const torchDir = path.join(root, 'share/cmake/Torch');
    return {
      source,
      libDir,
      version: parsed.version,
      variant: hasCuda ? 'cuda' : 'cpu',
      cuda,
      torchDir: existsSync(path.join(torchDir, 'TorchConfig.cmake')) ? torchDir : undefined,
    };
  }
  return undefined;
}

/** Debian bookworm's libtorch1.13 package, when installed. */
function debianLibtorch(): Libtorch | undefined {
  const lib = path.join(DEBIAN_LIBDIR, 'libtorch_cpu.so.1.13');
  if (!existsSync(lib)) return undefined;
  let version = '1.13.0';
  try {
    const m = /libtorch_cpu\.so\.(\d+\.\d+\.\d+)$/.exec(realpathSync(lib));
    if (m) version = m[1];
  } catch {
    // keep the soname's version
  }
  const torchDir = path.join(DEBIAN_LIBDIR, 'cmake/Torch');
  return { source: 'debian', libDir: DEBIAN_LIBDIR, version, variant: 'cpu', torchDir: existsSync(path.join(torchDir, 'TorchConfig.cmake')) ? torchDir : undefined };
}

/**
 * The torch package of a Python on PATH (`RECONPATCH_PYTHON`, else `python3`), found without
 * importing it (that takes seconds): only its location is asked for.
 */
function pythonLibtorch(): Libtorch | undefined {
  const python = process.env.RECONPATCH_PYTHON || 'python3';
  const script = 'import importlib.util as u; s = u.find_spec("torch"); print(s.submodule_search_locations[0] if s and s.submodule_search_locations else "")';
  const r = spawnSync(python, ['-c', script], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] });
  const dir = r.status === 0 ? r.stdout.trim() : '';
  if (!dir) return undefined;
  const found = describeLibtorch(dir, 'python');
  // Debian's python3-torch keeps its libraries in the system directory: that is the 'debian' entry.
  if (found && realpathSync(path.join(found.libDir, 'libtorch_cpu.so')).startsWith(`${DEBIAN_LIBDIR}/`)) return undefined;
  return found;
}

/** Libtorches assembled by `reconpatch libtorch` in the cache directory, newest version first. */
export function cachedLibtorches(cacheDir: string): Libtorch[] {
  const root = path.join(cacheDir, 'libtorch');
  if (!isDir(root)) return [];
  return readdirSync(root)
    .filter((name) => !name.startsWith('.'))
    .map((name) => describeLibtorch(path.join(root, name), 'cache'))
    .filter((t): t is Libtorch => t !== undefined)
    .sort((a, b) => b.version.localeCompare(a.version, 'en', { numeric: true }));
}

/**
 * The libtorches to try, in order: `RECONPATCH_LIBTORCH` (alone when set), a Python torch, Debian's
 * package, libtorches assembled in `cacheDir`. `notes` says what was looked at and not usable.
 */
export function findLibtorches(cacheDir: string): { found: Libtorch[]; notes: string[] } {
  const notes: string[] = [];
  const explicit = process.env.RECONPATCH_LIBTORCH;
  if (explicit) {
    const t = describeLibtorch(explicit, 'RECONPATCH_LIBTORCH');
    if (!t) notes.push(`RECONPATCH_LIBTORCH=${explicit} holds no libtorch (no lib/libtorch_cpu.so with a version.py or build-version beside it)`);
    return { found: t ? [t] : [], notes };
  }
  const found: Libtorch[] = [];
  const py = pythonLibtorch();
  if (py) found.push(py);
  const deb = debianLibtorch();
  if (deb) found.push(deb);
  found.push(...cachedLibtorches(cacheDir));
  return { found, notes };
}

/** Linux's RTLD_NODELETE: keeps a library mapped after process.dlopen closes it (see below). */
const RTLD_NODELETE = 0x1000;

/**
 * Loads `t`'s libraries into the process by absolute path, so that an addon linked against them
 * (by soname, no RUNPATH) finds them. Node's `process.dlopen` maps the library, then reports that
 * it is not a Node module and closes it; RTLD_NODELETE keeps it mapped. Each library finds its own
 * dependencies (libgomp, the NVIDIA runtime wheels) through its RPATH. Throws the dynamic loader's
 * message when a library or one of its dependencies cannot be loaded.
 */
export function preloadLibtorch(t: Libtorch): void {
  if (t.source === 'debian') return; // in the default search path already
  const names = ['libgomp.so.1', 'libc10.so', 'libtorch_cpu.so'];
  if (t.variant === 'cuda') names.push('libc10_cuda.so', 'libtorch_cuda.so');
  names.push('libtorch.so');
  const flags = os.constants.dlopen.RTLD_NOW | os.constants.dlopen.RTLD_LOCAL | RTLD_NODELETE;
  for (const name of names) {
    const file = path.join(t.libDir, name);
    if (name === 'libgomp.so.1' && !existsSync(file)) continue; // only wheels bundle it
    try {
      process.dlopen({ exports: {} } as NodeJS.Module, file, flags);
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      if (!/did not self-register/.test(msg)) throw new Error(`${file}: ${msg}`);
    }
  }
}
