// Distribution: `npm run build:prebuild` + `npm pack` make a tarball with exactly the runtime (dist, the
// prebuild, the native sources, the install scripts), and that tarball installs with no network
// into an empty project, once from the prebuild only (PREBUILDS_ONLY=1) and once compiled from
// source. Both installs fit and score, and agree. A prebuild whose libtorch cannot be found fails
// with ERR_NATIVE_LOAD naming the Debian packages.
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { auroc } from '../lib/metrics.js';
import { repoRoot, syntheticDataset, tempDir } from './support/data.js';

const execFileAsync = promisify(execFile);
const PREBUILD = 'prebuilds/linux-x64/reconpatch.glibc.node';
// A port nothing listens on, as the proxy: on top of --offline, any network request fails at once
// (the registry URL itself stays, since the npm cache is keyed by it).
const DEAD_PROXY = 'http://127.0.0.1:9';

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
import { Engine } from 'reconpatch';

const data = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const engine = await Engine.create({ backbone: 'random_cnn', resize: null, crop: null, coreset: { ratio: 0.25 } });
await engine.fit(data.train);
const results = await engine.scoreMany(data.test);
const loaded = readFileSync('/proc/self/maps', 'utf8').split('\\n')
  .map((l) => l.split(/\\s+/).slice(5).join(' ')).filter((p) => /\\/reconpatch[^/]*\\.node$/.test(p));
console.log(JSON.stringify({ scores: results.map((r) => r.score), device: engine.info.device, loaded: [...new Set(loaded)] }));
`;

/** Type-checks against the installed package's .d.ts (resolved through package.json "exports"). */
const CONSUMER_TYPES = `
import { Engine, ReconpatchError, type EngineOptions, type ScoreResult } from 'reconpatch';
const options: EngineOptions = { backbone: 'random_cnn', device: 'auto', coreset: { ratio: 0.1 } };
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
}

describe('npm package', () => {
  const dir = tempDir('package');
  let tarball = '';
  let packed: string[] = [];
  let dataFile = '';
  let labels: number[] = [];
  let prebuildScores: number[] = [];

  /**
   * An empty project that depends on the tarball, installed from the npm cache only. Its lockfile
   * pins the dependency versions of the repository's own lockfile (runtime entries, with their
   * registry tarball URLs), so npm needs no registry metadata: exactly what `npm install` in the
   * checkout (CI's first step) put in the cache.
   */
  async function install(name: string, env: Record<string, string | undefined>): Promise<string> {
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
    const r = await run('npm', ['ci', '--offline', `--proxy=${DEAD_PROXY}`, `--https-proxy=${DEAD_PROXY}`, '--no-audit', '--no-fund', '--foreground-scripts'], {
      cwd: project,
      env: { ...env, npm_config_offline: 'true' },
    });
    expect(r.code, `npm ci (${name}) failed:\n${r.stdout}\n${r.stderr}`).toBe(0);
    return project;
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
    console.info(`[package] image AUROC ${imageAuroc.toFixed(3)} over ${labels.length} test images, addon ${out.loaded.join(', ')}`);
    expect(imageAuroc).toBeGreaterThanOrEqual(0.9);
    expect(out.device).toBe('cpu');
  }

  beforeAll(async () => {
    // The prebuild is produced here (and so in CI), not committed: a relink of the existing build.
    const pre = await run('npm', ['run', 'build:prebuild'], { cwd: repoRoot });
    expect(pre.code, `npm run build:prebuild failed:\n${pre.stdout}\n${pre.stderr}`).toBe(0);
    const pack = await run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: repoRoot });
    expect(pack.code, `npm pack failed:\n${pack.stderr}`).toBe(0);
    const info = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('['))) as { filename: string; size: number; unpackedSize: number; files: { path: string }[] }[];
    tarball = path.join(dir, info[0].filename);
    packed = info[0].files.map((f) => f.path).sort();
    console.info(`[package] ${info[0].filename}: ${packed.length} files, ${(info[0].size / 1e6).toFixed(2)} MB packed, ${(info[0].unpackedSize / 1e6).toFixed(2)} MB unpacked`);

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

  it('the tarball holds dist (ESM + .d.ts), the prebuild, the native sources and install scripts, nothing else', () => {
    const libs = readdirSync(path.join(repoRoot, 'lib')).filter((f) => f.endsWith('.ts')).map((f) => f.slice(0, -3));
    const native = (
      readdirSync(path.join(repoRoot, 'native'), { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile())
        .map((e) => path.relative(repoRoot, path.join(e.parentPath, e.name)))
    );
    const expected = [
      'package.json', 'README.md', 'CMakeLists.txt', 'binding.gyp', 'scripts/build-native.mjs', 'scripts/setup.sh', PREBUILD,
      ...native,
      ...libs.flatMap((l) => [`dist/${l}.js`, `dist/${l}.d.ts`]),
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

  it('installs offline from the prebuild only (PREBUILDS_ONLY=1): fit + score, types resolve', async () => {
    const project = await install('prebuilt', { PREBUILDS_ONLY: '1', RECONPATCH_FORCE_BUILD: undefined });
    const pkgDir = path.join(project, 'node_modules/reconpatch');
    expect(existsSync(path.join(pkgDir, PREBUILD))).toBe(true);
    expect(existsSync(path.join(pkgDir, 'build')), 'nothing was compiled').toBe(false);
    const out = await fitAndScore(project, { PREBUILDS_ONLY: '1' });
    expect(out.loaded).toEqual([path.join(pkgDir, PREBUILD)]);
    checkScores(out);
    prebuildScores = out.scores;

    const tsc = path.join(repoRoot, 'node_modules/typescript/bin/tsc');
    const types = await run(process.execPath, [tsc, '--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext',
      '--target', 'es2022', '--skipLibCheck', '--typeRoots', path.join(repoRoot, 'node_modules/@types'), '--types', 'node', 'consumer.ts'], { cwd: project });
    expect(types.stdout + types.stderr).toBe('');
  }, 600_000);

  it('a prebuild whose libtorch cannot be loaded fails with ERR_NATIVE_LOAD naming the packages', async () => {
    // The real dynamic-loader failure of a machine without libtorch1.13: a copy of the installed
    // package whose prebuild asks for a libtorch soname that no package provides (same length, so
    // the ELF string table is edited in place, as `patchelf --replace-needed` would).
    const project = path.join(dir, 'prebuilt');
    const broken = path.join(project, 'node_modules/reconpatch-no-torch');
    cpSync(path.join(project, 'node_modules/reconpatch'), broken, { recursive: true });
    const file = path.join(broken, PREBUILD);
    const elf = readFileSync(file);
    const needed = Buffer.from('\0libtorch.so.1.13\0');
    const at = elf.indexOf(needed);
    expect(at, 'the prebuild links libtorch.so.1.13').toBeGreaterThan(0);
    expect(elf.indexOf(needed, at + 1), 'one occurrence only').toBe(-1);
    Buffer.from('\0libtorch.so.0.00\0').copy(elf, at);
    writeFileSync(file, elf);

    const probe = `
      import { Engine } from './node_modules/reconpatch-no-torch/dist/index.js';
      try { await Engine.create({ backbone: 'random_cnn' }); console.log('loaded'); }
      catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message })); }
      const again = await Engine.create({ backbone: 'random_cnn' }).catch((e) => e.code);
      console.log(again);`;
    const r = await run(process.execPath, ['--input-type=module', '-e', probe], { cwd: project, env: { PREBUILDS_ONLY: '1' } });
    expect(r.code, r.stderr).toBe(0);
    const [first, second] = r.stdout.trim().split('\n');
    const err = JSON.parse(first) as { name: string; code: string; message: string };
    expect(err.name).toBe('ReconpatchError');
    expect(err.code).toBe('ERR_NATIVE_LOAD');
    expect(err.message).toContain('sudo apt-get install libtorch1.13 libopenblas0-pthread');
    expect(err.message).toContain('libtorch-dev');
    expect(err.message).toContain('scripts/setup.sh');
    expect(err.message).toContain('libtorch.so.0.00: cannot open shared object file');
    expect(second, 'the failure repeats cleanly on the next call').toBe('ERR_NATIVE_LOAD');

    // The install step says the same instead of compiling when only prebuilds are allowed.
    const install = await run(process.execPath, [path.join(broken, 'scripts/build-native.mjs')], { cwd: broken, env: { PREBUILDS_ONLY: '1' } });
    expect(install.code).toBe(1);
    expect(install.stderr).toContain('sudo apt-get install libtorch1.13 libopenblas0-pthread');
    expect(install.stderr).not.toContain('cmake');

    // No prebuild for this platform at all: PREBUILDS_ONLY refuses to compile and says how to build.
    rmSync(path.join(broken, 'prebuilds'), { recursive: true });
    const none = await run(process.execPath, [path.join(broken, 'scripts/build-native.mjs')], { cwd: broken, env: { PREBUILDS_ONLY: '1' } });
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('no prebuilt binary loads on this platform (linux-x64)');
    expect(none.stderr).toContain('Unset PREBUILDS_ONLY to build from source');
    expect(existsSync(path.join(broken, 'build')), 'nothing was compiled').toBe(false);
  }, 120_000);

  it('installs offline compiling from source (RECONPATCH_FORCE_BUILD=1): fit + score agree with the prebuild', async () => {
    const project = await install('source', { RECONPATCH_FORCE_BUILD: '1', PREBUILDS_ONLY: undefined });
    const pkgDir = path.join(project, 'node_modules/reconpatch');
    const built = path.join(pkgDir, 'build/Release/reconpatch.node');
    expect(existsSync(built)).toBe(true);
    const out = await fitAndScore(project, { PREBUILDS_ONLY: undefined });
    expect(out.loaded).toEqual([built]);
    checkScores(out);
    // Same sources, same flags (CMakeLists.txt), same seeds: the same scores.
    expect(prebuildScores.length).toBe(out.scores.length);
    for (const [i, s] of out.scores.entries()) expect(s).toBeCloseTo(prebuildScores[i], 4);
  }, 1_500_000);
});
