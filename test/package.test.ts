// Distribution: the release command (`npm run release`, here with the local builds as they are) makes
// a tarball with exactly the runtime (dist, one prebuild per libtorch ABI, the native sources, the
// install scripts; no test addon, no probe code), and that tarball installs with no network into an
// empty project, running no compiler: from the prebuilds only (PREBUILDS_ONLY=1) on Debian's libtorch
// 1.13 and, where `reconpatch libtorch` has assembled them in the cache (CI does), on the PyTorch 2.13
// CPU wheel and the PyTorch 2.14.1 CUDA 13 wheel; and once compiled from source. Every install fits
// and scores the same data; the libtorches agree. A libtorch that cannot load, or no libtorch that
// matches, fails with ERR_NATIVE_LOAD saying what exists and what to run.
// It packages once and tests every libtorch itself, so it does not run again in CI's per-libtorch
// runs of the suite (RECONPATCH_LIBTORCH set).
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { abiTag, cachedLibtorches, type Libtorch } from '../lib/libtorch/find.js';
import { auroc } from '../lib/eval/metrics.js';
import { defaultCacheDir } from '../lib/io/weights.js';
import { probeMarkersIn } from '../scripts/probe-markers.mjs';
import { repoRoot, syntheticDataset, tempDir } from './support/data.js';

const execFileAsync = promisify(execFile);
const PREBUILDS = 'prebuilds/linux-x64';
const prebuild = (tag: string) => `${PREBUILDS}/${tag}/reconpatch.node`;
const DEBIAN_TAG = 'torch1.13-cpu';
// The PyTorch wheels this package ships prebuilds for, when assembled in the cache.
const WHEEL_LIBTORCHES: Libtorch[] = cachedLibtorches(defaultCacheDir()).filter((t) => ['torch2.13-cpu', 'torch2.14-cu13'].includes(abiTag(t)));
const WHEEL_TAGS = WHEEL_LIBTORCHES.map((t) => abiTag(t));
if (WHEEL_TAGS.length < 2) {
  console.warn(`[package] the PyTorch wheel libtorches are not assembled in ${defaultCacheDir()}/libtorch (found: ${WHEEL_TAGS.join(', ') || 'none'}): ` +
    'their installs are skipped; npx reconpatch libtorch --variant cpu|cuda --download assembles them');
}
// A port nothing listens on, as the proxy: on top of --offline, any network request fails at once
// (the registry URL itself stays, since the npm cache is keyed by it).
const DEAD_PROXY = 'http://127.0.0.1:9';
// What a build would run first. Stand-ins for them go ahead of PATH in the prebuilt installs: each
// records its call and fails, so "no compiler ran" is observed, not inferred from a missing build/.
const BUILD_TOOLS = ['cmake', 'ninja', 'make', 'cc', 'c++', 'gcc', 'g++', 'nvcc'];

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(cmd: string, args: string[], opts: { cwd: string; env?: Record<string, string | undefined> }): Promise<Run> {
  const env: Record<string, string | undefined> = { ...process.env, ...opts.env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
  try {
    const { stdout, stderr } = await execFileAsync(cmd, args, { cwd: opts.cwd, env, maxBuffer: 1 << 26 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: typeof err.code === 'number' ? err.code : 1, stdout: err.stdout ?? '', stderr: err.stderr ?? String(e) };
  }
}

/** Fits on good images and scores the test images; prints which addon binary was mapped. */
const CONSUMER_SCRIPT = `
import { readFileSync } from 'node:fs';
import { Engine, runtimeInfo } from 'reconpatch';

const data = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const engine = await Engine.create({ head: false, backbone: 'random_cnn', resize: null, crop: null, coreset: { ratio: 0.25 } });
await engine.fit(data.train);
const results = await engine.scoreMany(data.test);
const loaded = readFileSync('/proc/self/maps', 'utf8').split('\\n')
  .map((l) => l.split(/\\s+/).slice(5).join(' ')).filter((p) => /\\/reconpatch[^/]*\\.node$/.test(p));
const cudaMapped = readFileSync('/proc/self/maps', 'utf8').includes('/libtorch_cuda.so');
const rt = runtimeInfo();
console.log(JSON.stringify({ scores: results.map((r) => r.score), device: engine.info.device, loaded: [...new Set(loaded)],
  libtorch: [rt.libtorch.version, rt.libtorch.variant, rt.libtorch.source].join(' '), cudaMapped }));
`;

/** Type-checks against the installed package's .d.ts (resolved through package.json "exports"). */
const CONSUMER_TYPES = `
import { Engine, ReconpatchError, type EngineOptions, type ScoreResult } from 'reconpatch';
const options: EngineOptions = { head: false, backbone: 'random_cnn', device: 'auto', coreset: { ratio: 0.1 } };
const engine: Engine = await Engine.create(options);
const result: ScoreResult = await engine.score('frame.png');
const code: string = new ReconpatchError('ERR_IO', 'x').code;
console.log(result.score, code);
export {};
`;

type LockEntry = Record<string, unknown> & { dev?: boolean; link?: boolean; resolved?: string };

interface ConsumerOutput {
  scores: number[];
  device: string;
  loaded: string[];
  libtorch: string;
  cudaMapped: boolean;
}

describe.skipIf(!!process.env.RECONPATCH_LIBTORCH)('npm package', () => {
  const dir = tempDir('package');
  let tarball = '';
  let packed: string[] = [];
  let dataFile = '';
  let labels: number[] = [];
  let debianScores: number[] = [];

  /**
   * An empty project that depends on the tarball, installed from the npm cache only. Its lockfile
   * pins the dependency versions of the repository's own lockfile (runtime entries, with their
   * registry tarball URLs), so npm needs no registry metadata: exactly what `npm install` in the
   * checkout (CI's first step) put in the cache.
   */
  async function install(name: string, env: Record<string, string | undefined>): Promise<{ project: string; seconds: number; output: string }> {
    const project = path.join(dir, name);
    rmSync(project, { recursive: true, force: true });
    cpSync(path.join(dir, 'template'), project, { recursive: true });
    const spec = `file:../${path.basename(tarball)}`;
    const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as Record<string, unknown>;
    const repoLock = JSON.parse(readFileSync(path.join(repoRoot, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
    const packages: Record<string, LockEntry> = {
      '': { name: 'consumer', dependencies: { reconpatch: spec } },
      'node_modules/reconpatch': {
        version: pkg.version, resolved: spec, hasInstallScript: true, license: pkg.license,
        dependencies: pkg.dependencies, bin: pkg.bin, engines: pkg.engines,
      },
    };
    for (const [where, entry] of Object.entries(repoLock.packages)) {
      if (where === '' || entry.dev || entry.link) continue;
      const depName = where.slice(where.lastIndexOf('node_modules/') + 'node_modules/'.length);
      const file = `${depName.split('/').pop()}-${entry.version as string}.tgz`;
      packages[where] = { ...entry, resolved: entry.resolved ?? `https://registry.npmjs.org/${depName}/-/${file}` };
    }
    writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module', dependencies: { reconpatch: spec } }));
    writeFileSync(path.join(project, 'package-lock.json'), JSON.stringify({ name: 'consumer', lockfileVersion: 3, requires: true, packages }));
    const started = performance.now();
    const r = await run('npm', ['ci', '--offline', `--proxy=${DEAD_PROXY}`, `--https-proxy=${DEAD_PROXY}`, '--no-audit', '--no-fund', '--foreground-scripts'], {
      cwd: project,
      env: { ...env, npm_config_offline: 'true' },
    });
    const seconds = (performance.now() - started) / 1000;
    expect(r.code, `npm ci (${name}) failed:\n${r.stdout}\n${r.stderr}`).toBe(0);
    return { project, seconds, output: r.stdout + r.stderr };
  }

  /** Env for a prebuilt install: the build tools on PATH are stand-ins that log to `log` and fail. */
  function noCompilers(name: string): { env: Record<string, string>; log: string } {
    const bin = path.join(dir, `${name}-no-compilers`);
    const log = path.join(bin, 'calls.log');
    mkdirSync(bin, { recursive: true });
    for (const tool of BUILD_TOOLS) writeFileSync(path.join(bin, tool), `#!/bin/sh\necho "${tool} $*" >> '${log}'\nexit 1\n`, { mode: 0o755 });
    return { env: { PATH: `${bin}${path.delimiter}${process.env.PATH}` }, log };
  }

  /** No stand-in was called, nothing was compiled, and the installed package carries no probe code. */
  async function checkPrebuiltInstall(project: string, tag: string, log: string, seconds: number): Promise<void> {
    const pkgDir = path.join(project, 'node_modules/reconpatch');
    expect(existsSync(log) ? readFileSync(log, 'utf8') : '', 'no build tool was called').toBe('');
    expect(existsSync(path.join(pkgDir, 'build')), 'nothing was compiled').toBe(false);
    expect(probeMarkersIn(path.join(pkgDir, prebuild(tag)))).toEqual([]);
    const du = async (p: string) => Number((await run('du', ['-sk', p], { cwd: project })).stdout.split('\t')[0]) / 1024;
    const [pkgMB, allMB] = [await du(pkgDir), await du(path.join(project, 'node_modules'))];
    console.info(`[package] ${tag}: npm ci ${seconds.toFixed(1)} s; installed reconpatch ${pkgMB.toFixed(1)} MB, node_modules ${allMB.toFixed(1)} MB`);
    expect(pkgMB).toBeLessThan(50);
  }

  async function fitAndScore(project: string, env: Record<string, string | undefined>): Promise<ConsumerOutput> {
    const r = await run(process.execPath, ['consumer.mjs', dataFile], { cwd: project, env });
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout.trim().split('\n').pop()!) as ConsumerOutput;
  }

  function checkScores(out: ConsumerOutput): void {
    expect(out.scores.length).toBe(labels.length);
    for (const s of out.scores) expect(Number.isFinite(s)).toBe(true);
    const mean = (label: number) => {
      const xs = out.scores.filter((_, i) => labels[i] === label);
      return xs.reduce((a, b) => a + b, 0) / xs.length;
    };
    expect(mean(1)).toBeGreaterThan(mean(0));
    const imageAuroc = auroc(out.scores, labels);
    console.info(`[package] image AUROC ${imageAuroc.toFixed(3)} over ${labels.length} test images, libtorch ${out.libtorch}, addon ${out.loaded.join(', ')}`);
    expect(imageAuroc).toBeGreaterThanOrEqual(0.9);
    expect(out.device).toBe('cpu');
  }

  /** Largest |a - b| / |b| over two score lists. */
  function maxRelativeDiff(a: number[], b: number[]): number {
    expect(a.length).toBe(b.length);
    return Math.max(...a.map((x, i) => Math.abs(x - b[i]) / Math.max(Math.abs(b[i]), 1e-12)));
  }

  beforeAll(async () => {
    // The prebuilds are produced here (and so in CI) from the local builds, not committed, by the
    // release command itself (which also checks the tarball: every prebuild, no probes).
    const release = await run(process.execPath, ['scripts/release.mjs', '--no-build', '--tags', [DEBIAN_TAG, ...WHEEL_TAGS].join(','), '--out', dir], { cwd: repoRoot });
    expect(release.code, `npm run release failed:\n${release.stdout}\n${release.stderr}`).toBe(0);
    const info = JSON.parse(release.stdout.trim().split('\n').pop()!) as { tarball: string; files: string[] };
    tarball = info.tarball;
    packed = info.files;
    console.info(`[package] ${release.stderr.split('\n').filter((l) => l.startsWith('release:   ') || l.includes('packed')).join('\n')}`);

    const data = await syntheticDataset();
    labels = data.test.map((t) => t.label);
    dataFile = path.join(dir, 'data.json');
    writeFileSync(dataFile, JSON.stringify({ train: data.train, test: data.test.map((t) => t.path) }));
    const template = path.join(dir, 'template');
    rmSync(template, { recursive: true, force: true });
    mkdirSync(template, { recursive: true });
    writeFileSync(path.join(template, 'consumer.mjs'), CONSUMER_SCRIPT);
    writeFileSync(path.join(template, 'consumer.ts'), CONSUMER_TYPES);
  }, 600_000);

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('the tarball holds dist (ESM + .d.ts), one prebuild per libtorch ABI, the native sources and install scripts, nothing else', () => {
    const libs = readdirSync(path.join(repoRoot, 'lib'), { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile() && e.name.endsWith('.ts'))
      .map((e) => path.relative(path.join(repoRoot, 'lib'), path.join(e.parentPath, e.name)).slice(0, -3));
    // The review page's static files (lib/serve/review), copied into dist by the build.
    const assets = readdirSync(path.join(repoRoot, 'lib/serve/review')).filter((f) => !f.endsWith('.ts')).map((f) => `dist/serve/review/${f}`);
    expect(assets.length).toBeGreaterThanOrEqual(3);
    const native = (
      readdirSync(path.join(repoRoot, 'native'), { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile())
        .map((e) => path.relative(repoRoot, path.join(e.parentPath, e.name)))
    );
    const expected = [
      'package.json', 'README.md', 'CMakeLists.txt', 'binding.gyp', 'scripts/build-native.mjs', 'scripts/setup.sh',
      ...[DEBIAN_TAG, ...WHEEL_TAGS].flatMap((t) => [prebuild(t), `${PREBUILDS}/${t}/reconpatch.json`]),
      ...native,
      ...libs.flatMap((l) => [`dist/${l}.js`, `dist/${l}.d.ts`]),
      ...assets,
    ].sort();
    expect(packed).toEqual(expected);
    for (const bad of ['test/', 'bench/', 'docs/', 'build/', 'node_modules/', 'examples/', '.ci/']) {
      expect(packed.filter((p) => p.startsWith(bad))).toEqual([]);
    }
    // ESM: the package is "type": "module" and dist uses import/export.
    const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { type: string };
    expect(pkg.type).toBe('module');
    expect(readFileSync(path.join(repoRoot, 'dist/index.js'), 'utf8')).toMatch(/^export \{ Engine \}/m);
  });

  it('binding.gyp carries no compile flags of its own: it delegates to CMakeLists.txt', () => {
    const gypText = readFileSync(path.join(repoRoot, 'binding.gyp'), 'utf8').replace(/^\s*#.*$/gm, '');
    const gyp = JSON.parse(gypText) as { targets: Record<string, unknown>[] };
    expect(gyp.targets).toHaveLength(1);
    const target = gyp.targets[0];
    expect(target.type).toBe('none');
    for (const key of ['sources', 'cflags', 'cflags_cc', 'defines', 'include_dirs', 'libraries', 'ldflags', 'dependencies']) {
      expect(target[key], `binding.gyp must not set ${key}`).toBeUndefined();
    }
    expect(JSON.stringify(target.actions)).toContain('scripts/build-native.mjs');
  });

  it('installs offline from the prebuilds only on Debian libtorch 1.13 (PREBUILDS_ONLY=1): fit + score, types resolve', async () => {
    const tools = noCompilers('prebuilt');
    const { project, seconds, output } = await install('prebuilt', { PREBUILDS_ONLY: '1', RECONPATCH_FORCE_BUILD: undefined, RECONPATCH_LIBTORCH: undefined, ...tools.env });
    const pkgDir = path.join(project, 'node_modules/reconpatch');
    await checkPrebuiltInstall(project, DEBIAN_TAG, tools.log, seconds);
    // npm 11 warns about any dependency with an install script (its presence, not what it does).
    console.info(`[package] npm's install-scripts warning: ${/install-scripts/.test(output) ? 'printed' : 'none'}`);
    // The install script's own work when a prebuild loads: one load of the addon in a child.
    const started = performance.now();
    const check = await run(process.execPath, [path.join(pkgDir, 'scripts/build-native.mjs')], { cwd: pkgDir, env: { PREBUILDS_ONLY: '1', ...tools.env } });
    expect(check.stdout).toContain('native addon present, skipping build');
    console.info(`[package] install script with a matching prebuild: ${((performance.now() - started) / 1000).toFixed(2)} s`);
    const out = await fitAndScore(project, { PREBUILDS_ONLY: '1' });
    expect(out.loaded).toEqual([path.join(pkgDir, prebuild(DEBIAN_TAG))]);
    expect(out.libtorch).toBe('1.13.0 cpu debian');
    checkScores(out);
    debianScores = out.scores;

    const tsc = path.join(repoRoot, 'node_modules/typescript/bin/tsc');
    const types = await run(process.execPath, [tsc, '--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext',
      '--target', 'es2022', '--skipLibCheck', '--typeRoots', path.join(repoRoot, 'node_modules/@types'), '--types', 'node', 'consumer.ts'], { cwd: project });
    expect(types.stdout + types.stderr).toBe('');
  }, 600_000);

  for (const t of WHEEL_LIBTORCHES) {
    const tag = abiTag(t);
    it(`installs offline from the prebuilds only on ${t.version} ${t.variant} (RECONPATCH_LIBTORCH): loads ${tag}, scores agree with Debian's`, async () => {
      const env = { PREBUILDS_ONLY: '1', RECONPATCH_FORCE_BUILD: undefined, RECONPATCH_LIBTORCH: path.dirname(path.dirname(t.libDir)) };
      const tools = noCompilers(`prebuilt-${tag}`);
      const { project, seconds } = await install(`prebuilt-${tag}`, { ...env, ...tools.env });
      const pkgDir = path.join(project, 'node_modules/reconpatch');
      await checkPrebuiltInstall(project, tag, tools.log, seconds);
      const out = await fitAndScore(project, env);
      expect(out.loaded).toEqual([path.join(pkgDir, prebuild(tag))]);
      expect(out.libtorch).toBe(`${t.version} ${t.variant} RECONPATCH_LIBTORCH`);
      // The CUDA prebuild really is the CUDA build: libtorch_cuda is among its libraries and mapped.
      const needed = (await run('readelf', ['-d', path.join(pkgDir, prebuild(tag))], { cwd: project })).stdout;
      expect(needed.includes('[libtorch_cuda.so]')).toBe(t.variant === 'cuda');
      expect(out.cudaMapped).toBe(t.variant === 'cuda');
      expect(needed, 'prebuilds carry no RUNPATH: the loader finds libtorch').not.toMatch(/RUNPATH|RPATH/);
      checkScores(out);
      // Same data, same seeds, another libtorch release: the scores agree to 1e-4 relative.
      const diff = maxRelativeDiff(out.scores, debianScores);
      console.info(`[package] ${tag} vs ${DEBIAN_TAG}: max relative score difference ${diff.toExponential(2)}`);
      expect(diff).toBeLessThan(1e-4);
    }, 600_000);
  }

  it('no libtorch that matches, or one that cannot load, fails with ERR_NATIVE_LOAD saying what exists and what to run', async () => {
    const project = path.join(dir, 'prebuilt');
    const probe = `
      import { Engine } from 'reconpatch';
      for (let i = 0; i < 2; i++) {
        try { await Engine.create({ head: false, backbone: 'random_cnn' }); console.log(JSON.stringify({ loaded: true })); }
        catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message })); }
      }`;
    const attempt = async (env: Record<string, string | undefined>) => {
      const r = await run(process.execPath, ['--input-type=module', '-e', probe], { cwd: project, env: { PREBUILDS_ONLY: '1', ...env } });
      expect(r.code, r.stderr).toBe(0);
      const [first, second] = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { name: string; code: string; message: string });
      expect(second, 'the failure repeats cleanly on the next call').toEqual(first);
      return first;
    };

    // A libtorch of a version no prebuild is built for (a fake 2.99 with the Debian libraries).
    const fake = path.join(dir, 'fake-libtorch');
    mkdirSync(path.join(fake, 'lib'), { recursive: true });
    writeFileSync(path.join(fake, 'lib/libtorch_cpu.so'), '');
    writeFileSync(path.join(fake, 'build-version'), '2.99.0+cpu\n');
    const none = await attempt({ RECONPATCH_LIBTORCH: fake });
    expect(none.name).toBe('ReconpatchError');
    expect(none.code).toBe('ERR_NATIVE_LOAD');
    expect(none.message).toContain('no native addon matches a libtorch on this machine');
    expect(none.message).toContain('libtorch 2.99.0 (CPU) from RECONPATCH_LIBTORCH');
    expect(none.message).toContain('libtorch 1.13.0 (CPU) (prebuild');
    expect(none.message).toContain('sudo apt-get install libtorch1.13 libopenblas0-pthread');
    expect(none.message).toContain('npx reconpatch libtorch --variant cuda --download');
    expect(none.message).toContain('Torch_DIR=<libtorch>/share/cmake/Torch npm rebuild reconpatch');

    // The install step says the same instead of compiling when only prebuilds are allowed.
    const pkgDir = path.join(project, 'node_modules/reconpatch');
    const refused = await run(process.execPath, [path.join(pkgDir, 'scripts/build-native.mjs')], { cwd: pkgDir, env: { PREBUILDS_ONLY: '1', RECONPATCH_LIBTORCH: fake } });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('PREBUILDS_ONLY is set, so no compiling');
    expect(refused.stderr).toContain('no native addon matches');
    expect(existsSync(path.join(pkgDir, 'build')), 'nothing was compiled').toBe(false);

    // A CUDA libtorch whose NVIDIA runtime is incomplete (cuDNN missing): the dynamic loader's
    // error, and the command that assembles the runtime. Symbolic links (no 4 GB copy): a library's
    // $ORIGIN is the directory it was opened from, so the links see the broken tree.
    const cuda = WHEEL_LIBTORCHES.find((t) => t.variant === 'cuda');
    if (!cuda) return;
    const root = path.dirname(path.dirname(cuda.libDir));
    const broken = path.join(dir, 'cuda-without-cudnn');
    for (const e of readdirSync(root, { recursive: true, withFileTypes: true })) {
      const rel = path.relative(root, path.join(e.parentPath, e.name));
      if (!e.isFile() || rel.startsWith('nvidia/cudnn') || rel.startsWith('torch/include')) continue;
      mkdirSync(path.dirname(path.join(broken, rel)), { recursive: true });
      symlinkSync(path.join(root, rel), path.join(broken, rel));
    }
    const missing = await attempt({ RECONPATCH_LIBTORCH: broken });
    expect(missing.code).toBe('ERR_NATIVE_LOAD');
    expect(missing.message).toContain('could not be loaded');
    expect(missing.message).toContain('libcudnn.so.9: cannot open shared object file');
    expect(missing.message).toContain('npx reconpatch libtorch --variant cuda');
  }, 120_000);

  it('installs offline compiling from source (RECONPATCH_FORCE_BUILD=1): fit + score agree with the prebuild', async () => {
    const { project, output } = await install('source', { RECONPATCH_FORCE_BUILD: '1', PREBUILDS_ONLY: undefined, RECONPATCH_LIBTORCH: undefined });
    const pkgDir = path.join(project, 'node_modules/reconpatch');
    const built = path.join(pkgDir, 'build/Release/reconpatch.node');
    expect(existsSync(built)).toBe(true);
    // Built as a dependency: only the addon users get (the build log names every target linked),
    // with no probe code in it.
    expect(output).toMatch(/Linking CXX shared library Release\/reconpatch\.node/);
    expect(output).not.toContain('reconpatch_probes');
    expect(probeMarkersIn(built)).toEqual([]);
    // Only what loads is kept: the objects and the precompiled header (570 MB) are removed.
    const installedMB = Number((await run('du', ['-sm', pkgDir], { cwd: project })).stdout.split('\t')[0]);
    console.log(`[package] installed from source: ${installedMB} MB in node_modules/reconpatch`);
    expect(readdirSync(path.join(pkgDir, 'build'))).toEqual(['Release']);
    expect(installedMB).toBeLessThan(50);
    const out = await fitAndScore(project, { PREBUILDS_ONLY: undefined });
    expect(out.loaded).toEqual([built]);
    checkScores(out);
    // Same sources, same flags (CMakeLists.txt), same seeds: the same scores.
    expect(maxRelativeDiff(out.scores, debianScores)).toBeLessThan(1e-6);
  }, 1_500_000);
});
