// Run as a child process by test/fuzz.test.ts (a crash must fail the test, not kill the runner):
// a few hundred generated bad inputs, from a fixed seed, through score / scoreMany, Engine.load /
// Engine.loadBytes / Ensemble.loadBytes, reconpatch libtorch's wheel assembly and the service
// (examples/embed-fastify). Prints one JSON line:
// { cases: [{ kind, name, outcome }], live: {...} } where outcome is 'ok' or an error code
// ('THROWN:<name>' for anything that is not a ReconpatchError, 'HTTP <status>' for the server).
//   node fuzz_child.mjs '<json: { dist, serverModule, model, probe, trainRoot, dir, seed }>'
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import sharp from 'sharp';

import { buildModel, parseModel } from './model_file.mjs';
import { zeroPng } from './png.mjs';
import { makeZip } from './zip.mjs';

const { dist, serverModule, model, probe, trainRoot, dir, seed } = JSON.parse(process.argv[2]);
const { Engine, Ensemble, ReconpatchError } = await import(dist);
const cases = [];

// A small deterministic PRNG (mulberry32).
let state = seed >>> 0;
const rand = () => {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const int = (n) => Math.floor(rand() * n);
const pick = (a) => a[int(a.length)];
const randomBytes = (n) => Buffer.from(Array.from({ length: n }, () => int(256)));

const outcomeOf = (err) => (err instanceof ReconpatchError ? err.code : `THROWN:${err?.name ?? typeof err}:${String(err?.message ?? err).slice(0, 120)}`);
async function attempt(kind, name, fn) {
  try {
    await fn();
    cases.push({ kind, name, outcome: 'ok' });
  } catch (err) {
    cases.push({ kind, name, outcome: outcomeOf(err), ...(err instanceof ReconpatchError ? {} : { stack: String(err?.stack ?? err).slice(0, 400) }) });
  }
}

// ---- valid samples to damage ------------------------------------------------------------------
const base = sharp(probe);
const samples = {
  png: await base.clone().png().toBuffer(),
  jpeg: await base.clone().jpeg().toBuffer(),
  webp: await base.clone().webp().toBuffer(),
  tiff: await base.clone().tiff().toBuffer(),
  gif: await base.clone().gif().toBuffer(),
  bmp: await (async () => {
    const { data, info } = await base.clone().removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const stride = Math.ceil((info.width * 24) / 32) * 4;
    const b = Buffer.alloc(54 + stride * info.height);
    b.write('BM', 0);
    b.writeUInt32LE(b.length, 2);
    b.writeUInt32LE(54, 10);
    b.writeUInt32LE(40, 14);
    b.writeInt32LE(info.width, 18);
    b.writeInt32LE(info.height, 22);
    b.writeUInt16LE(1, 26);
    b.writeUInt16LE(24, 28);
    for (let y = 0; y < info.height; y++)
      for (let x = 0; x < info.width; x++)
        for (let c = 0; c < 3; c++) b[54 + (info.height - 1 - y) * stride + x * 3 + c] = data[(y * info.width + x) * info.channels + (2 - c)];
    return b;
  })(),
};


// ---- images: score and scoreMany ----------------------------------------------------------------
const imageCases = []; // [name, input, successAllowed]
for (let i = 0; i < 25; i++) imageCases.push([`random ${i}`, randomBytes(int(3000)), false]);
const magics = { png: samples.png.subarray(0, 8), jpeg: Buffer.from([0xff, 0xd8, 0xff, 0xe0]), bmp: Buffer.from('BM'), gif: Buffer.from('GIF89a'), tiffLE: Buffer.from('II*\0'), tiffBE: Buffer.from('MM\0*'), webp: Buffer.from('RIFF\x10\0\0\0WEBPVP8 ', 'latin1') };
for (const [name, magic] of Object.entries(magics)) for (let i = 0; i < 4; i++) imageCases.push([`${name} magic + random ${i}`, Buffer.concat([magic, randomBytes(int(2000))]), false]);
for (const [name, bytes] of Object.entries(samples)) {
  for (let i = 0; i < 6; i++) imageCases.push([`${name} truncated ${i}`, bytes.subarray(0, int(bytes.length)), true]);
  for (let i = 0; i < 4; i++) {
    const b = Buffer.from(bytes);
    for (let k = 0; k < 1 + int(8); k++) b[int(b.length)] = int(256);
    imageCases.push([`${name} flipped ${i}`, b, true]);
  }
}
const dims = [[0, 0], [1, 1], [7, 7], [1, 100000], [100000, 1], [65535, 65535], [2 ** 31 - 1, 1], [1, 2 ** 31 - 1], [2 ** 31 - 1, 2 ** 31 - 1], [2 ** 32 - 1, 2 ** 32 - 1], [200000, 8], [8, 200000], [16000, 16000], [9000, 9000],
  [16384, 16], [16, 16384], [65000, 16], [67108864, 1], [1, 67108864]]; // issue 26: past maxResizedPixels, under the 8-pixel minimum
for (const [w, h] of dims) {
  imageCases.push([`png ${w}x${h} 1-bit grey, no data`, zeroPng(w, h, { bitDepth: 1, colorType: 0, rows: 0, level: 6 }), false]);
  imageCases.push([`png ${w}x${h} 8-bit RGB, one row`, zeroPng(w, h, { dataBytes: Math.min(1 + w * 3, 1 << 20), level: 6 }), false]);
}
for (let i = 0; i < 15; i++) {
  const b = Buffer.from(samples.bmp);
  const field = pick([[18, 'i32'], [22, 'i32'], [10, 'u32'], [14, 'u32'], [28, 'u16'], [30, 'u32'], [46, 'u32']]);
  const value = pick([0, 1, -1, 2 ** 31 - 1, -(2 ** 31), 0xffff, 7, 8, 32, 16, 3, 100000]);
  if (field[1] === 'i32') b.writeInt32LE(value | 0, field[0]);
  else if (field[1] === 'u32') b.writeUInt32LE(value >>> 0, field[0]);
  else b.writeUInt16LE(value & 0xffff, field[0]);
  imageCases.push([`bmp field ${field[0]} = ${value}`, b, true]);
}
const u8 = (n) => new Uint8Array(n);
const raws = [
  ['raw wrong length', { data: u8(10), width: 4, height: 4, channels: 3 }],
  ['raw channels 5', { data: u8(80), width: 4, height: 4, channels: 5 }],
  ['raw channels 0', { data: u8(0), width: 4, height: 4, channels: 0 }],
  ['raw NaN width', { data: u8(48), width: NaN, height: 4, channels: 3 }],
  ['raw negative', { data: u8(48), width: -4, height: -4, channels: 3 }],
  ['raw fractional', { data: u8(48), width: 4.5, height: 4, channels: 3 }],
  ['raw huge width, tiny data', { data: u8(3), width: 2 ** 31, height: 1, channels: 3 }],
  ['raw 2^53 pixels', { data: u8(3), width: 2 ** 27, height: 2 ** 26, channels: 1 }],
  ['raw data is a string', { data: 'abc', width: 1, height: 1, channels: 3 }],
  ['raw data is Uint16Array', { data: new Uint16Array(48), width: 4, height: 4, channels: 3 }],
  ['raw too small', { data: u8(7 * 7 * 3), width: 7, height: 7, channels: 3 }],
  ['raw strip 30000x8', { data: u8(30000 * 8), width: 30000, height: 8, channels: 1 }],
  ['raw strip 8x30000', { data: u8(30000 * 8), width: 8, height: 30000, channels: 1 }],
  ['raw width as string', { data: u8(48), width: '4', height: 4, channels: 3 }],
  ['raw with getter that throws', Object.defineProperty({ data: u8(48), height: 4, channels: 3 }, 'width', { get() { throw new Error('boom'); }, enumerable: true })],
  ['raw grey+alpha fine', { data: u8(16 * 16 * 2), width: 16, height: 16, channels: 2 }],
];
for (const [name, input] of raws) imageCases.push([name, input, name.endsWith('fine')]);
const odd = [null, undefined, 42, true, {}, [], () => 0, Symbol('x'), new Uint16Array(10), Buffer.alloc(0), new ArrayBuffer(8), { data: u8(3) }];
for (const [i, input] of odd.entries()) imageCases.push([`wrong type ${i}`, input, false]);
// Paths: missing, special files, odd names.
const fifo = path.join(dir, 'fifo.png');
execFileSync('mkfifo', [fifo]);
mkdirSync(path.join(dir, 'a-dir.png'));
symlinkSync(path.join(dir, 'loop-b'), path.join(dir, 'loop-a'));
symlinkSync(path.join(dir, 'loop-a'), path.join(dir, 'loop-b'));
writeFileSync(path.join(dir, 'empty.png'), '');
for (const p of [path.join(dir, 'missing.png'), path.join(dir, 'a-dir.png'), '/dev/null', '/dev/zero', '/dev/urandom', fifo, path.join(dir, 'loop-a'), path.join(dir, 'empty.png'), 'x\0y', 'x'.repeat(5000), '', '/proc/self/mem'])
  imageCases.push([`path ${p.length > 40 ? `${p.slice(0, 20)}…(${p.length})` : JSON.stringify(p)}`, p, false]);

const engine = await Engine.load(model);
const before = (await engine.score(probe)).score;
// Concurrently in groups of 16: the batching of score() calls must isolate every failure.
for (let i = 0; i < imageCases.length; i += 16) {
  await Promise.all(imageCases.slice(i, i + 16).map(([name, input, okAllowed]) =>
    attempt('image', name, async () => {
      await engine.score(input);
      if (!okAllowed) throw new Error('decoded an input that should have been refused');
    })));
}
for (let i = 0; i < 6; i++) {
  const batch = [probe, ...Array.from({ length: 3 }, () => pick(imageCases.filter((c) => !c[2]))[1])];
  await attempt('image', `scoreMany mixed ${i}`, async () => {
    await engine.scoreMany(batch);
    throw new Error('scoreMany took a batch with bad images');
  });
}
await attempt('image', 'fit with a bad image keeps the engine', async () => {
  await engine.fit([probe, probe, samples.png.subarray(0, 100), probe]);
});

// ---- model files: Engine.load / loadBytes, Ensemble.loadBytes --------------------------------
const { readFile } = await import('node:fs/promises');
const good = await readFile(model);
const sections = (bytes) => parseModel(bytes).sections;
const build = (secs, options = {}) => buildModel(secs, { version: 1, ...options });
const goodSections = sections(good);
const replace = (tag, payload) => goodSections.map(([t, p]) => [t, t === tag ? payload : p]);
const opts = goodSections.find(([t]) => t === 'OPTS')[1].toString('utf8');
const optionKeys = opts.split('\n').filter(Boolean).map((l) => l.split('=')[0]);
const bank = goodSections.find(([t]) => t === 'BANK')[1];
const dim = Number(bank.readBigUInt64LE(10));
const tensor = (shape, fill = 0, type = 0) => {
  const b = Buffer.alloc(2 + 8 * shape.length + 4 * shape.reduce((a, x) => a * Math.min(x, 1 << 16), 1));
  b[0] = type;
  b[1] = shape.length;
  shape.forEach((d, i) => b.writeBigUInt64LE(BigInt(d), 2 + 8 * i));
  for (let i = 2 + 8 * shape.length; i + 4 <= b.length; i += 4) b.writeFloatLE(fill, i);
  return b;
};

const modelCases = []; // [name, bytes]
for (let i = 0; i < 8; i++) modelCases.push([`random ${i}`, randomBytes(int(4096))]);
for (let i = 0; i < 8; i++) modelCases.push([`magic + random ${i}`, Buffer.concat([Buffer.from('RCPMODEL'), randomBytes(int(4096))])]);
for (let i = 0; i < 15; i++) modelCases.push([`truncated ${i}`, good.subarray(0, int(good.length))]);
for (let i = 0; i < 15; i++) {
  const b = Buffer.from(good);
  b[int(b.length)] ^= 1 + int(255);
  modelCases.push([`flipped ${i}`, b]);
}
const badValues = ['', '-1', '0', 'nan', 'inf', '-inf', '1e308', '99999999999999999999', 'abc', '1.5', '0x10', ' 1', '\u00ff\u00fe'];
for (let i = 0; i < 30; i++) {
  const key = pick(optionKeys);
  const value = pick(badValues);
  const text = opts.replace(new RegExp(`^${key}=.*$`, 'm'), `${key}=${value}`);
  modelCases.push([`option ${key}=${JSON.stringify(value)}`, build(replace('OPTS', Buffer.from(text, 'latin1')))]);
}
const crafted = [
  ['no sections', build([])],
  ['OPTS missing', build(goodSections.filter(([t]) => t !== 'OPTS'))],
  ['BANK missing', build(goodSections.filter(([t]) => t !== 'BANK'))],
  ['empty OPTS', build(replace('OPTS', Buffer.alloc(0)))],
  ['OPTS without =', build(replace('OPTS', Buffer.from('resize\ncrop\n')))],
  ['OPTS unknown key', build(replace('OPTS', Buffer.from(`${opts}bogus=1\n`)))],
  ['OPTS duplicated key', build(replace('OPTS', Buffer.from(`${opts}resize=3\n`)))],
  ['OPTS binary', build(replace('OPTS', randomBytes(300)))],
  ['OPTS reweight on, 1-row bank', build(replace('OPTS', Buffer.from(opts.replace(/^reweight=.*$/m, 'reweight=1'))).map(([t, p]) => [t, t === 'BANK' ? tensor([1, dim], 0.5) : p]))],
  ['OPTS head on, no head sections', build(replace('OPTS', Buffer.from(opts.replace(/^head=.*$/m, 'head=1'))))],
  ['head on, wrong head shapes', build([...replace('OPTS', Buffer.from(opts.replace(/^head=.*$/m, 'head=1'))), ['HDFW', tensor([3, 3])], ['HDFB', tensor([3])]])],
  ['bank rank 1', build(replace('BANK', tensor([dim])))],
  ['bank rank 5', build(replace('BANK', tensor([1, 1, 1, 1, dim])))],
  ['bank 0 rows', build(replace('BANK', tensor([0, dim])))],
  ['bank wrong dim', build(replace('BANK', tensor([4, dim + 1])))],
  ['bank type 1', build(replace('BANK', tensor([4, dim], 0, 1)))],
  ['bank implausible shape', build(replace('BANK', Buffer.concat([tensor([1, 1]).subarray(0, 2), Buffer.from('ffffffffffffff7f0100000000000000', 'hex')])))],
  ['bank size mismatch', build(replace('BANK', tensor([4, dim]).subarray(0, 100)))],
  ['bank of NaN', build(replace('BANK', tensor([2, dim], NaN)))],
  ['bank of Infinity', build(replace('BANK', tensor([2, dim], Infinity)))],
  ['META not JSON', build(replace('META', Buffer.from('{not json')))],
  ['META a number', build(replace('META', Buffer.from('42')))],
  ['META calibration a string', build(replace('META', Buffer.from('{"calibration":"x"}')))],
  ['META calibration of strings', build(replace('META', Buffer.from('{"calibration":{"images":"a","scoreMean":"b","scoreStd":null,"threshold":{},"low":[]}}')))],
  ['META deep nesting', build(replace('META', Buffer.from(`${'['.repeat(100000)}${']'.repeat(100000)}`)))],
  ['META huge string', build(replace('META', Buffer.from(JSON.stringify({ x: 'y'.repeat(1 << 20) }))))],
  ['BKSH wrong', build(replace('BKSH', Buffer.from('0'.repeat(64))))],
  ['BKNM binary', build(replace('BKNM', randomBytes(64)))],
  ['BKTS garbage', build([...goodSections, ['BKTS', randomBytes(2000)]])],
  ['BKSD garbage', build([...goodSections, ['BKSD', randomBytes(2000)]], { version: 2 })],
  ['BKSD zip header', build([...goodSections, ['BKSD', Buffer.concat([Buffer.from('PK\x03\x04', 'latin1'), randomBytes(500)])]], { version: 2 })],
  ['STAT garbage', build(replace('STAT', randomBytes(100)))],
  ['STAT huge numbers', build(replace('STAT', Buffer.from('trainImages=99999999999999999999999\ntrainPatches=-5\n')))],
  ['unknown section', build([...goodSections, ['ZZZZ', randomBytes(10)]])],
  ['duplicate BANK', build([...goodSections, ['BANK', tensor([1, 3])]])],
  ['version 0', build(goodSections, { version: 0 })],
  ['version 99', build(goodSections, { version: 99 })],
  ['section count too high', build(goodSections, { count: goodSections.length + 5 })],
  ['section count 2^32-1', build(goodSections, { count: 2 ** 32 - 1 })],
  ['section length past the end', (() => { const b = build(goodSections); b.writeBigUInt64LE(2n ** 62n, 16 + 4); return b; })()],
  ['ensemble magic', build(goodSections, { magic: 'RCPENSEM' })],
  // Issue 26: values within each option's old range that asked for gigabytes or threads by the thousand.
  ['dims 65536', build(replace('OPTS', Buffer.from(opts.replace(/^targetDim=.*$/m, 'targetDim=65536').replace(/^pretrainDim=.*$/m, 'pretrainDim=65536')
    .replace(/^coresetProjection=.*$/m, 'coresetProjection=65536'))).map(([t, p]) => [t, t === 'BANK' ? tensor([2, 65536], 0.5) : p]))],
  ['resize 8192 squash, batch 1024', build(replace('OPTS', Buffer.from(opts.replace(/^resize=.*$/m, 'resize=8192').replace(/^crop=.*$/m, 'crop=0')
    .replace(/^resizeMode=.*$/m, 'resizeMode=squash').replace(/^batchSize=.*$/m, 'batchSize=1024'))))],
  ['coreset starts 100000', build(replace('OPTS', Buffer.from(opts.replace(/^coresetStarts=.*$/m, 'coresetStarts=100000'))))],
  ['head weights 3e38', build([...replace('OPTS', Buffer.from(opts.replace(/^head=.*$/m, 'head=1'))), ['HDFW', tensor([dim, dim], 3e38)], ['HDFB', tensor([dim], 0)]])],
  ['threads 1024 (clamped, scores)', build(replace('OPTS', Buffer.from(opts.replace(/^threads=.*$/m, 'threads=1024'))))],
];
modelCases.push(...crafted);

for (const [i, [name, bytes]] of modelCases.entries()) {
  // Every third one through a file, the rest through bytes.
  await attempt('model', name, async () => {
    let loaded;
    if (i % 3 === 0) {
      const file = path.join(dir, `case-${i}.rcp`);
      writeFileSync(file, bytes);
      loaded = await Engine.load(file);
    } else loaded = await Engine.loadBytes(bytes);
    // A crafted file that loads must also score (or refuse the image with a typed error).
    const r = await loaded.score(probe);
    if (!Number.isFinite(r.score)) throw new Error(`score ${r.score}`);
  });
}
for (let i = 0; i < 8; i++) await attempt('ensemble', `ensemble random ${i}`, () => Ensemble.loadBytes(Buffer.concat([Buffer.from('RCPENSEM'), randomBytes(int(2000))])));
for (const name of ['not bytes', 'number']) await attempt('model-arg', name, () => Engine.loadBytes(name === 'number' ? 42 : 'x'));

// ---- wheels: reconpatch libtorch --wheel --------------------------------------------------------
// A fake CPU torch wheel (what describeLibtorch accepts), then random, truncated and flipped copies
// ('wheel': assembled or ERR_LIBTORCH; the valid one 'wheel-valid') and crafted unsafe ones ('wheel-unsafe': ERR_LIBTORCH only),
// all into one cache 5 levels below `wheelRoot`, where a version of ../../../../../../outside/victim
// would land on <wheelRoot>/outside/victim-cpu. Last, a 'wheel-confined' case: nothing was written
// outside the cache, no temporary directory is left, the victim's file is intact.
const { assembleLibtorch } = await import(path.join(path.dirname(dist), 'libtorch/assemble.js'));
const wheelRoot = path.join(dir, 'wheel-fuzz');
const wheelCache = path.join(wheelRoot, 'd1/d2/d3/d4/d5');
const victim = path.join(wheelRoot, 'outside/victim-cpu');
mkdirSync(wheelCache, { recursive: true });
mkdirSync(victim, { recursive: true });
writeFileSync(path.join(victim, 'precious'), 'keep me');
const torchWheel = (version = '2.13.0+cpu', extra = [], drop = '') => makeZip([
  { name: 'torch/version.py', data: `__version__ = '${version}'\ncuda: Optional[str] = None\n` },
  { name: 'torch/lib/libtorch_cpu.so', data: randomBytes(2000), method: 'deflate', mode: 0o100755 },
  { name: 'torch/include/torch/torch.h', data: '#pragma once\n'.repeat(50), method: 'deflate' },
  { name: 'torch-2.13.0+cpu.dist-info/METADATA', data: 'Metadata-Version: 2.1\nName: torch\n' },
  ...extra,
].filter((e) => e.name !== drop));
const goodWheel = torchWheel();
const wheelCases = [['valid', goodWheel, 'wheel-valid']]; // [name, bytes or a directory marker, kind, limits]
for (let i = 0; i < 8; i++) wheelCases.push([`random ${i}`, randomBytes(int(3000)), 'wheel']);
for (let i = 0; i < 8; i++) wheelCases.push([`PK + random ${i}`, Buffer.concat([Buffer.from('PK\x03\x04', 'latin1'), randomBytes(int(3000))]), 'wheel']);
for (let i = 0; i < 8; i++) wheelCases.push([`truncated ${i}`, goodWheel.subarray(0, int(goodWheel.length)), 'wheel']);
for (let i = 0; i < 12; i++) {
  const b = Buffer.from(goodWheel);
  for (let k = 0; k < 1 + int(6); k++) b[int(b.length)] = int(256);
  wheelCases.push([`flipped ${i}`, b, 'wheel']);
}
const zeros = Buffer.alloc(8 << 20);
wheelCases.push(
  ['version ../../../../../../outside/victim', torchWheel('../../../../../../outside/victim'), 'wheel-unsafe'],
  ['version /abs', torchWheel('/tmp/reconpatch-fuzz-abs'), 'wheel-unsafe'],
  ['version with a slash', torchWheel('2.13.0/../../x'), 'wheel-unsafe'],
  ['entry ../x', torchWheel(undefined, [{ name: '../x', data: 'x' }]), 'wheel-unsafe'],
  ['entry torch/lib/../../../x', torchWheel(undefined, [{ name: 'torch/lib/../../../x', data: 'x' }]), 'wheel-unsafe'],
  ['entry /abs', torchWheel(undefined, [{ name: '/tmp/reconpatch-fuzz-abs.so', data: 'x' }]), 'wheel-unsafe'],
  ['entry with a backslash', torchWheel(undefined, [{ name: 'torch\\lib\\x.so', data: 'x' }]), 'wheel-unsafe'],
  ['entry with NUL', torchWheel(undefined, [{ name: 'torch/lib/a\0b.so', data: 'x' }]), 'wheel-unsafe'],
  ['entry with an empty segment', torchWheel(undefined, [{ name: 'torch/lib//x.so', data: 'x' }]), 'wheel-unsafe'],
  ['symlink entry', torchWheel(undefined, [{ name: 'torch/lib/libc10.so', data: '/etc/passwd', mode: 0o120777 }]), 'wheel-unsafe'],
  ['FIFO entry', torchWheel(undefined, [{ name: 'torch/lib/libc10.so', mode: 0o010644 }]), 'wheel-unsafe'],
  ['duplicate entry', torchWheel(undefined, [{ name: 'torch/lib/libtorch_cpu.so', data: 'again' }]), 'wheel-unsafe'],
  ['bomb past maxBytes', torchWheel(undefined, [{ name: 'torch/lib/libbomb.so', data: zeros, method: 'deflate' }]), 'wheel-unsafe', { maxBytes: 1 << 20 }],
  ['bomb with a small declared size', torchWheel(undefined, [{ name: 'torch/lib/libbomb.so', data: zeros, method: 'deflate', declaredSize: 100 }]), 'wheel-unsafe'],
  ['wrong CRC', torchWheel(undefined, [{ name: 'torch/lib/libx.so', data: 'payload', crc: 1234 }]), 'wheel-unsafe'],
  ['huge METADATA', makeZip([
    { name: 'torch/version.py', data: "__version__ = '2.13.0+cpu'\n" },
    { name: 'torch-2.13.0+cpu.dist-info/METADATA', data: zeros, method: 'deflate' },
  ]), 'wheel-unsafe', { maxReadBytes: 64 << 10 }],
  ['too many entries', torchWheel(undefined, Array.from({ length: 30 }, (_, k) => ({ name: `torch/include/h${k}.h`, data: 'x' }))), 'wheel-unsafe', { maxEntries: 20 }],
  ['no libtorch_cpu.so', torchWheel(undefined, [], 'torch/lib/libtorch_cpu.so'), 'wheel-unsafe'],
  ['empty file', Buffer.alloc(0), 'wheel-unsafe'],
  ['text file', Buffer.from('not a zip\n'.repeat(50)), 'wheel-unsafe'],
  ['a directory', 'DIRECTORY', 'wheel-unsafe'],
);
for (const [i, [name, bytes, kind, limits]] of wheelCases.entries()) {
  const file = path.join(wheelRoot, 'wheels', String(i), 'torch-2.13.0+cpu-cp312-cp312-manylinux_2_28_x86_64.whl');
  mkdirSync(bytes === 'DIRECTORY' ? file : path.dirname(file), { recursive: true });
  if (bytes !== 'DIRECTORY') writeFileSync(file, bytes);
  await attempt(kind, name, () => assembleLibtorch({ variant: 'cpu', wheel: file, cacheDir: wheelCache, limits }));
}
{
  const libtorchDir = path.join(wheelCache, 'libtorch');
  const problems = [
    ...(readdirSync(wheelRoot).sort().join() === 'd1,outside,wheels' ? [] : [`wheel root holds ${readdirSync(wheelRoot).join()}`]),
    ...(readdirSync(path.dirname(victim)).join() === 'victim-cpu' && readdirSync(victim).join() === 'precious' && readFileSync(path.join(victim, 'precious'), 'utf8') === 'keep me' ? [] : ['the victim changed']),
    ...(existsSync(libtorchDir) ? readdirSync(libtorchDir).filter((n) => n.startsWith('.')).map((n) => `left behind: ${n}`) : []),
    ...['/tmp/reconpatch-fuzz-abs', '/tmp/reconpatch-fuzz-abs.so', path.join(wheelRoot, 'x'), path.join(wheelCache, 'x')].filter((f) => existsSync(f)).map((f) => `written: ${f}`),
  ];
  cases.push({ kind: 'wheel-confined', name: 'nothing outside the cache, no temporary directories', outcome: problems.length ? `ESCAPED: ${problems.join('; ')}` : 'ok' });
}

// ---- the service, as examples/embed-fastify registers it ----------------------------------------
const { DirectoryModelStore } = await import(path.join(path.dirname(dist), 'fleet/store.js'));
const storeDir = path.join(dir, 'store');
mkdirSync(storeDir, { recursive: true });
await new DirectoryModelStore(storeDir).publish(model, { id: 'm' });
const { createApp } = await import(serverModule);
const token = 'fuzz-token-0123456789abcdef';
const app = await createApp({ storeDir, token, logger: false });
const port = Number(new URL(await app.listen({ port: 0, host: '127.0.0.1' })).port);
const baseUrl = `http://127.0.0.1:${port}`;
const auth = { authorization: `Bearer ${token}` };
async function request(name, route, init) {
  try {
    const r = await fetch(`${baseUrl}${route}`, { redirect: 'manual', ...init });
    await r.arrayBuffer();
    cases.push({ kind: 'server', name, outcome: `HTTP ${r.status}` });
  } catch (err) {
    cases.push({ kind: 'server', name, outcome: `FETCH:${err?.cause?.code ?? err?.message}` });
  }
}
for (let i = 0; i < 10; i++) {
  const method = pick(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']);
  const route = pick(['/', '/inspect/score', '/inspect/score?model=m', '/inspect/models/m/update', '/inspect/verdicts/x/label', '/%00', '/../etc/passwd',
    '/inspect/review/..%2f..%2fpackage.json', `/inspect/${randomBytes(8).toString('hex')}`]);
  await request(`${method} ${route}`, route, { method, headers: auth, ...(method === 'GET' || method === 'OPTIONS' ? {} : { body: randomBytes(int(200)) }) });
}
for (let i = 0; i < 20; i++) {
  const input = pick(imageCases.filter((c) => Buffer.isBuffer(c[1]) && !c[2]))[1];
  await request(`score body ${i}`, pick(['/inspect/score?model=m', '/inspect/score?model=m&tag=x', '/inspect/score?model=..%2fm']), { method: 'POST', body: input, headers: { ...auth, 'content-type': pick(['image/png', 'image/jpeg', 'application/octet-stream', 'text/plain', '']) } });
}
// The JSON route (a verdict's label): a verdict that exists, bodies of every shape.
const scoredOnce = await (await fetch(`${baseUrl}/inspect/score?model=m`, { method: 'POST', body: await readFile(probe), headers: { ...auth, 'content-type': 'image/png' } })).json();
for (let i = 0; i < 15; i++) {
  const body = pick([
    () => JSON.stringify({ label: pick(['bad', '', 'GOOD', 'good ', null, 1]) }),
    () => JSON.stringify({ label: { nested: [1, 2] } }),
    () => JSON.stringify(['good']),
    () => randomBytes(int(300)).toString('latin1'),
    () => JSON.stringify({ label: 'x'.repeat(70000) }),
    () => JSON.stringify({ labels: 'good' }),
  ])();
  await request(`label body ${i}`, `/inspect/verdicts/${pick([scoredOnce.id, 'nope', '%00', 'x'.repeat(300)])}/label`, { method: 'POST', body, headers: { ...auth, 'content-type': 'application/json' } });
}
for (const [i, header] of ['', 'Bearer', 'Bearer ', `Bearer  ${token}`, `bearer ${token}`, `Bearer ${token.slice(1)}`, `Basic ${token}`, 'Bearer \u00ff', `Bearer ${'x'.repeat(10000)}`, `Bearer ${token}${token}`].entries())
  await request(`auth ${i}`, '/inspect/score?model=m', { method: 'POST', body: samples.png, headers: { 'content-type': 'image/png', authorization: header } });
// Garbage on a raw socket: node's parser answers 400 and closes.
for (let i = 0; i < 5; i++) {
  const got = await new Promise((resolve) => {
    let text = '';
    const socket = net.connect(port, '127.0.0.1', () => socket.end(randomBytes(50 + int(500))));
    socket.on('data', (d) => (text += d.toString('latin1')));
    socket.on('close', () => resolve(text));
    socket.on('error', () => resolve(text));
  });
  cases.push({ kind: 'server', name: `raw garbage ${i}`, outcome: /^HTTP\/1\.1 (\d+)/.exec(got)?.[0] ?? 'closed' });
}
const health = await fetch(`${baseUrl}/inspect/health/live`);
const scored = await fetch(`${baseUrl}/inspect/score?model=m`, { method: 'POST', body: await readFile(probe), headers: { ...auth, 'content-type': 'image/png' } });
const serverScore = scored.status === 200 ? (await scored.json()).score : null;
await app.close();

const after = (await engine.score(probe)).score;
console.log(JSON.stringify({ cases, live: { before, after, health: health.status, serverScore } }));
