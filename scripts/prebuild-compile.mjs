#!/usr/bin/env node
// Stands in for node-gyp under prebuildify (`prebuildify --node-gyp scripts/prebuild-compile.mjs`):
// prebuildify 6 only knows node-gyp, but CMakeLists.txt is this project's one build description.
// prebuildify calls `<this> rebuild --target=<node version> --devdir=... --arch=<arch> --release`
// and then takes the .node from build/Release, which is where cmake-js writes it.
// The addon uses N-API 8 only, so one build serves every Node.js version: --target is not needed.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const option = (name) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
if (args[0] !== 'rebuild') {
  console.error(`prebuild-compile: expected 'rebuild' from prebuildify, got: ${args.join(' ')}`);
  process.exit(1);
}
const arch = option('arch') ?? process.arch;
if (arch !== process.arch) {
  console.error(`prebuild-compile: cannot cross-compile (${process.arch} -> ${arch}); build on a ${arch} machine.`);
  process.exit(1);
}
if (args.includes('--debug')) {
  console.error('prebuild-compile: debug prebuilds are not supported (CMakeLists.txt builds Release).');
  process.exit(1);
}
const buildNative = path.join(path.dirname(fileURLToPath(import.meta.url)), 'build-native.mjs');
const env = { ...process.env, RECONPATCH_FORCE_BUILD: '1' };
delete env.PREBUILDS_ONLY;
const r = spawnSync(process.execPath, [buildNative], { stdio: 'inherit', env });
process.exit(r.status ?? 1);
