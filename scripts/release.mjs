// `npm run release`: the package as it is published, in one command.
//   1. brings the local build for each libtorch the package ships a prebuild for up to date
//      (scripts/build-native.mjs, incremental): Debian's libtorch 1.13 into build/, the PyTorch 2.13
//      CPU and 2.14.1 CUDA 13 wheels (assembled in the cache by `reconpatch libtorch`) into build-<tag>/;
//   2. copies them, stripped, into prebuilds/ (scripts/prebuild.mjs);
//   3. packs the tarball into release/ (npm pack) and checks it: exactly these prebuilds, each with
//      its reconpatch.json, no test addon, and no probe code in any .node it carries.
// prebuildify and node-gyp-build are not used: CONTRIBUTING.md "Making the prebuilds and the package" says why.
//   --no-build        use the local builds as they are (the package test does: CI has just built them)
//   --tags <a,b,...>  the ABI tags to ship (default: the three below)
//   --out <dir>       where the tarball goes (default: release/)
// The last line of stdout is JSON: { tarball, size, unpackedSize, files } (sizes in bytes).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { probeMarkersIn } from './probe-markers.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const RELEASE_TAGS = ['torch1.13-cpu', 'torch2.13-cpu', 'torch2.14-cu13'];
const DEBIAN_TORCH_DIR = '/usr/lib/x86_64-linux-gnu/cmake/Torch';

const args = process.argv.slice(2);
const option = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const build = !args.includes('--no-build');
const tags = option('--tags')?.split(',') ?? RELEASE_TAGS;
const outDir = path.resolve(root, option('--out') ?? 'release');

function fail(message) {
  console.error(`release: ${message}`);
  process.exit(1);
}

/** Runs a command in the repository, its output on stderr (stdout carries only the summary). */
function step(what, cmd, cmdArgs, env = {}) {
  console.error(`release: ${what}`);
  const r = spawnSync(cmd, cmdArgs, { cwd: root, stdio: ['ignore', 2, 2], env: { ...process.env, ...env } });
  if (r.status !== 0) fail(`${what} failed (exit ${r.status ?? r.signal})`);
}

if (build) {
  // The loader's own code finds the wheel libtorches, so the TypeScript is built first.
  step('building the TypeScript', 'npm', ['run', 'build:ts']);
  const { abiTag, cachedLibtorches } = await import(pathToFileURL(path.join(root, 'dist/libtorch/find.js')).href);
  const { defaultCacheDir } = await import(pathToFileURL(path.join(root, 'dist/io/weights.js')).href);
  const wheels = cachedLibtorches(defaultCacheDir());
  for (const tag of tags) {
    if (tag === 'torch1.13-cpu') {
      if (!existsSync(path.join(DEBIAN_TORCH_DIR, 'TorchConfig.cmake'))) fail(`${tag} needs Debian's libtorch-dev (bash scripts/setup.sh)`);
      step(`building ${tag} into build/`, process.execPath, ['scripts/build-native.mjs'], { Torch_DIR: DEBIAN_TORCH_DIR, RECONPATCH_LIBTORCH: '' });
      continue;
    }
    const t = wheels.find((w) => abiTag(w) === tag);
    if (!t) {
      const variant = tag.includes('-cu') ? 'cuda' : 'cpu';
      fail(`no libtorch for ${tag} in ${defaultCacheDir()}/libtorch: npx reconpatch libtorch --variant ${variant} --download assembles it`);
    }
    step(`building ${tag} into build-${tag}/`, process.execPath, ['scripts/build-native.mjs', '--libtorch', path.dirname(t.libDir)]);
  }
}

// Only the prebuilds of this release: an earlier run's or another local build's stay out.
const platformDir = `prebuilds/${process.platform}-${process.arch}`;
rmSync(path.join(root, platformDir), { recursive: true, force: true });
step('copying the builds into prebuilds/', process.execPath, ['scripts/prebuild.mjs', '--require', tags.join(',')]);
const extra = readdirSync(path.join(root, platformDir)).filter((t) => !tags.includes(t));
for (const t of extra) rmSync(path.join(root, platformDir, t), { recursive: true });

mkdirSync(outDir, { recursive: true });
console.error('release: npm pack');
const pack = spawnSync('npm', ['pack', '--json', '--pack-destination', outDir], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 2] });
if (pack.status !== 0) fail('npm pack failed');
const [info] = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('[')));
const tarball = path.join(outDir, info.filename);
const files = info.files.map((f) => f.path).sort();

// The check: every release prebuild with its ABI file, and nothing of the tests' code.
const problems = [];
for (const tag of tags) {
  for (const f of ['reconpatch.node', 'reconpatch.json']) if (!files.includes(`${platformDir}/${tag}/${f}`)) problems.push(`${platformDir}/${tag}/${f} is missing`);
}
const nodes = files.filter((f) => f.endsWith('.node'));
for (const f of nodes) if (!f.startsWith(`${platformDir}/`) || path.basename(f) !== 'reconpatch.node') problems.push(`${f} should not be in the package`);
// Read back from the tarball itself, not from prebuilds/: what users get.
const unpacked = mkdtempSync(path.join(os.tmpdir(), 'reconpatch-release-'));
try {
  const tar = spawnSync('tar', ['-xzf', tarball, '-C', unpacked, ...nodes.map((f) => `package/${f}`)], { stdio: 'inherit' });
  if (tar.status !== 0) fail(`tar could not read ${tarball}`);
  for (const f of nodes) {
    const markers = probeMarkersIn(path.join(unpacked, 'package', f));
    if (markers.length) problems.push(`${f} carries probe code (${markers.join(', ')})`);
  }
} finally {
  rmSync(unpacked, { recursive: true, force: true });
}
if (problems.length) fail(`${tarball} is not a release:\n  ${problems.join('\n  ')}`);

const mb = (b) => `${(b / 1e6).toFixed(2)} MB`;
for (const f of info.files.filter((x) => x.path.endsWith('.node'))) console.error(`release:   ${f.path} ${mb(f.size)}`);
console.error(`release: ${path.relative(root, tarball)}: ${files.length} files, ${mb(info.size)} packed, ${mb(info.unpackedSize)} unpacked; prebuilds ${tags.join(', ')}; no probes`);
console.log(JSON.stringify({ tarball, size: info.size, unpackedSize: info.unpackedSize, files }));
