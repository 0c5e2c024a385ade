// `npm run build:prebuild`: copies each local build (build/, build-<abi tag>/) into the package's
// prebuilds, one folder per libtorch ABI: prebuilds/<platform>-<arch>/<abi tag>/reconpatch.node
// (stripped) with its reconpatch.json (what it was built against, minus the builder's paths).
//   --require <tag,tag>   fail unless these ABI tags are among them (the release set:
//                         torch1.13-cpu,torch2.13-cpu,torch2.14-cu13)
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const required = args[0] === '--require' ? args[1].split(',') : [];

/** The loader's ABI key (lib/libtorch/find.ts abiTag): libtorch major.minor, variant, CUDA major. */
function abiTag(j) {
  const [major, minor] = j.torch.split('.');
  return `torch${major}.${minor}-${j.variant === 'cuda' ? `cu${j.cuda.split('.')[0]}` : 'cpu'}`;
}

const outRoot = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
const made = [];
for (const dir of readdirSync(root).filter((d) => d === 'build' || d.startsWith('build-')).sort()) {
  const node = path.join(root, dir, 'Release/reconpatch.node');
  const meta = path.join(root, dir, 'Release/reconpatch.json');
  if (!existsSync(node) || !existsSync(meta)) continue;
  const j = JSON.parse(readFileSync(meta, 'utf8'));
  const tag = abiTag(j);
  if (made.some((m) => m.tag === tag)) {
    console.error(`prebuild: ${dir} and ${made.find((m) => m.tag === tag).dir} are both ${tag}; keeping the first`);
    continue;
  }
  const out = path.join(outRoot, tag);
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  copyFileSync(node, path.join(out, 'reconpatch.node'));
  const s = spawnSync('strip', ['--strip-unneeded', path.join(out, 'reconpatch.node')], { stdio: 'inherit' });
  if (s.status !== 0) process.exit(s.status ?? 1);
  const { libDir, ...abi } = j;
  writeFileSync(path.join(out, 'reconpatch.json'), `${JSON.stringify(abi)}\n`);
  made.push({ tag, dir, bytes: statSync(path.join(out, 'reconpatch.node')).size });
}
for (const m of made) console.log(`prebuild: ${m.dir}/ -> prebuilds/${process.platform}-${process.arch}/${m.tag}/reconpatch.node (${(m.bytes / 1e6).toFixed(2)} MB)`);
const missing = required.filter((t) => !made.some((m) => m.tag === t));
if (missing.length) {
  console.error(`prebuild: no build for ${missing.join(', ')}; build them with node scripts/build-native.mjs --libtorch <dir>`);
  process.exit(1);
}
if (!made.length) {
  console.error('prebuild: no local build found (build/Release/reconpatch.node with reconpatch.json); run npm install first');
  process.exit(1);
}
