// `reconpatch libtorch --wheel` on crafted wheels (made here by test/support/zip.mjs): whatever the
// wheel holds, nothing outside <cache>/libtorch is touched, unpacking stops at its limits, every
// refusal is a typed ERR_LIBTORCH, no temporary directory is left behind, and a libtorch already
// in the cache survives a failed assembly. A minimal fake CPU wheel shows the accepted path.
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { ReconpatchError } from '../lib/errors.js';
import { type AssembleOptions, assembleLibtorch } from '../lib/libtorch/assemble.js';
import { tempDir } from './support/data.js';
import { type ZipEntrySpec, makeZip } from './support/zip.mjs';

const VERSION = '2.13.0+cpu';
const WHEEL_NAME = `torch-${VERSION}-cp312-cp312-manylinux_2_28_x86_64.whl`;

/** The entries of a fake CPU torch wheel: enough for describeLibtorch (lib/libtorch_cpu.so, version.py). */
function torchEntries(version = VERSION, extra: ZipEntrySpec[] = []): ZipEntrySpec[] {
  return [
    { name: 'torch/' },
    { name: 'torch/version.py', data: `__version__ = '${version}'\ndebug = False\ncuda: Optional[str] = None\n` },
    { name: 'torch/lib/libtorch_cpu.so', data: 'not really a library', mode: 0o100755, method: 'deflate' },
    { name: 'torch/lib/libtorch_python.so', data: 'left out' },
    { name: 'torch/include/torch/torch.h', data: '#pragma once\n', method: 'deflate' },
    { name: 'torch/__init__.py', data: '# python, left out\n' },
    { name: `torch-${version.replace(/[^A-Za-z0-9.+]/g, '_')}.dist-info/METADATA`, data: 'Metadata-Version: 2.1\nName: torch\n' },
    ...extra,
  ];
}

describe('reconpatch libtorch --wheel on crafted wheels', () => {
  const base = tempDir('libtorch-wheel');
  afterAll(() => rmSync(base, { recursive: true, force: true }));
  let n = 0;

  /** A fresh case directory with a cache and a wheel file of these entries (or these bytes). */
  function setup(content: ZipEntrySpec[] | Buffer, file = WHEEL_NAME): { dir: string; cacheDir: string; wheel: string } {
    const dir = path.join(base, `case${++n}`);
    const cacheDir = path.join(dir, 'cache');
    mkdirSync(cacheDir, { recursive: true });
    const wheel = path.join(dir, file);
    writeFileSync(wheel, Buffer.isBuffer(content) ? content : makeZip(content));
    return { dir, cacheDir, wheel };
  }

  const assemble = (o: Omit<AssembleOptions, 'variant'>) => assembleLibtorch({ variant: 'cpu', log: () => {}, ...o });

  /** The ERR_LIBTORCH the call ends in (a raw Error or a result fails the test). */
  async function refusal(p: Promise<unknown>): Promise<ReconpatchError> {
    const err = await p.then(() => undefined, (e: unknown) => e);
    expect(err, 'expected a refusal').toBeInstanceOf(ReconpatchError);
    expect((err as ReconpatchError).code).toBe('ERR_LIBTORCH');
    return err as ReconpatchError;
  }

  /** What <cache>/libtorch holds (temporary directories start with a dot). */
  const cacheEntries = (cacheDir: string) => (existsSync(path.join(cacheDir, 'libtorch')) ? readdirSync(path.join(cacheDir, 'libtorch')).sort() : []);

  it('assembles a minimal fake CPU wheel: the C++ parts only, under <cache>/libtorch/<version>', async () => {
    const { cacheDir, wheel } = setup(torchEntries());
    const r = await assemble({ wheel, cacheDir });
    const root = path.join(cacheDir, 'libtorch', '2.13.0-cpu');
    expect(r.root).toBe(root);
    expect(r.assembled).toBe(true);
    expect(r.libtorch).toMatchObject({ source: 'cache', libDir: path.join(root, 'torch/lib'), version: '2.13.0', variant: 'cpu' });
    expect(readFileSync(path.join(root, 'torch/lib/libtorch_cpu.so'), 'utf8')).toBe('not really a library');
    expect(existsSync(path.join(root, 'torch/include/torch/torch.h'))).toBe(true);
    expect(existsSync(path.join(root, 'torch/lib/libtorch_python.so'))).toBe(false);
    expect(existsSync(path.join(root, 'torch/__init__.py'))).toBe(false);
    expect(r.bytes).toBe('not really a library'.length + '#pragma once\n'.length + readFileSync(path.join(root, 'torch/version.py')).length);
    expect(cacheEntries(cacheDir)).toEqual(['2.13.0-cpu']);
  });

  it('replaces an existing libtorch of that version only once the new one is unpacked and valid', async () => {
    const { cacheDir, wheel } = setup(torchEntries());
    const root = path.join(cacheDir, 'libtorch', '2.13.0-cpu');
    mkdirSync(root, { recursive: true });
    writeFileSync(path.join(root, 'old-marker'), 'old');
    await assemble({ wheel, cacheDir });
    expect(existsSync(path.join(root, 'old-marker'))).toBe(false);
    expect(existsSync(path.join(root, 'torch/lib/libtorch_cpu.so'))).toBe(true);
    expect(cacheEntries(cacheDir)).toEqual(['2.13.0-cpu']);
  });

  it('refuses a version that would name a directory outside the cache, and leaves that directory alone', async () => {
    // cacheDir is 5 levels below `dir`: <cache>/libtorch/../../../../../../outside/victim-cpu is <dir>/outside/victim-cpu.
    const evil = '../../../../../../outside/victim';
    const { dir, wheel } = setup(torchEntries(evil));
    const cacheDir = path.join(dir, 'd1/d2/d3/d4/d5');
    mkdirSync(cacheDir, { recursive: true });
    const victim = path.join(dir, 'outside/victim-cpu');
    mkdirSync(victim, { recursive: true });
    writeFileSync(path.join(victim, 'precious'), 'keep me');
    const err = await refusal(assemble({ wheel, cacheDir }));
    expect(err.message).toMatch(/version/);
    expect(readdirSync(victim)).toEqual(['precious']);
    expect(readFileSync(path.join(victim, 'precious'), 'utf8')).toBe('keep me');
    expect(readdirSync(path.join(dir, 'outside'))).toEqual(['victim-cpu']);
    expect(cacheEntries(cacheDir)).toEqual([]);
  });

  it.each([
    ['a parent-directory entry', '../x'],
    ['a nested parent-directory entry', 'torch/lib/../../../escaped.so'],
    ['an absolute entry', '/tmp/reconpatch-wheel-abs.so'],
    ['a backslash entry', 'torch\\lib\\libevil.so'],
    ['a drive-letter entry', 'C:/evil.so'],
    ['an empty segment', 'torch//lib/libevil.so'],
  ])('refuses %s (%s) with a typed error', async (_what, name) => {
    const { dir, cacheDir, wheel } = setup(torchEntries(VERSION, [{ name, data: 'evil' }]));
    const err = await refusal(assemble({ wheel, cacheDir }));
    expect(err.message).toContain(path.basename(wheel));
    expect(existsSync(path.join(dir, 'x'))).toBe(false);
    expect(existsSync(path.join(dir, 'escaped.so'))).toBe(false);
    expect(existsSync('/tmp/reconpatch-wheel-abs.so')).toBe(false);
    expect(cacheEntries(cacheDir)).toEqual([]);
  });

  it.each([
    ['a symlink', 0o120777],
    ['a FIFO', 0o010644],
    ['a block device', 0o060644],
  ])('refuses %s entry instead of writing it as a plain file', async (_what, mode) => {
    const { cacheDir, wheel } = setup(torchEntries(VERSION, [{ name: 'torch/lib/libc10.so', data: '/etc/passwd', mode }]));
    const err = await refusal(assemble({ wheel, cacheDir }));
    expect(err.message).toMatch(/torch\/lib\/libc10\.so/);
    expect(cacheEntries(cacheDir)).toEqual([]);
  });

  it('stops a zip bomb at the unpack limit, counting the bytes written, and leaves nothing behind', async () => {
    const bomb = Buffer.alloc(8 << 20); // deflates to about 8 KiB
    const { cacheDir, wheel } = setup(torchEntries(VERSION, [{ name: 'torch/lib/libbomb.so', data: bomb, method: 'deflate' }]));
    const err = await refusal(assemble({ wheel, cacheDir, limits: { maxBytes: 1 << 20 } }));
    expect(err.message).toMatch(/passes the limit of 1048576 bytes in all/);
    expect(cacheEntries(cacheDir)).toEqual([]);
  });

  it('stops an entry that inflates past its declared size (yauzl checks the sizes)', async () => {
    const bomb = Buffer.alloc(4 << 20);
    const { cacheDir, wheel } = setup(torchEntries(VERSION, [{ name: 'torch/lib/libbomb.so', data: bomb, method: 'deflate', declaredSize: 100 }]));
    await refusal(assemble({ wheel, cacheDir }));
    expect(cacheEntries(cacheDir)).toEqual([]);
  });

  it('refuses an entry whose CRC-32 does not match (yauzl does not check it)', async () => {
    const { cacheDir, wheel } = setup(torchEntries(VERSION, [{ name: 'torch/lib/libc10.so', data: 'payload', crc: 1234 }]));
    expect((await refusal(assemble({ wheel, cacheDir }))).message).toMatch(/CRC-32/);
    expect(cacheEntries(cacheDir)).toEqual([]);
  });

  it('stops at the per-entry and entry-count limits', async () => {
    const big = setup(torchEntries(VERSION, [{ name: 'torch/lib/libbig.so', data: Buffer.alloc(64 << 10), method: 'deflate' }]));
    expect((await refusal(assemble({ wheel: big.wheel, cacheDir: big.cacheDir, limits: { maxEntryBytes: 16 << 10 } }))).message).toMatch(/limit/);
    expect(cacheEntries(big.cacheDir)).toEqual([]);
    const many = setup(torchEntries(VERSION, Array.from({ length: 20 }, (_, i) => ({ name: `torch/include/h${i}.h`, data: 'x' }))));
    expect((await refusal(assemble({ wheel: many.wheel, cacheDir: many.cacheDir, limits: { maxEntries: 10 } }))).message).toMatch(/entries/);
    expect(cacheEntries(many.cacheDir)).toEqual([]);
  });

  it('reads METADATA and version.py up to a cap, refusing a huge one with a typed error', async () => {
    const entries = torchEntries();
    const meta = entries.find((e) => e.name.endsWith('/METADATA'))!;
    meta.data = `Metadata-Version: 2.1\nName: torch\n${'Requires-Dist: x\n'.repeat(1 << 18)}`; // 4 MiB, deflated small
    meta.method = 'deflate';
    const { cacheDir, wheel } = setup(entries);
    const err = await refusal(assemble({ wheel, cacheDir, limits: { maxReadBytes: 64 << 10 } }));
    expect(err.message).toMatch(/METADATA/);
    expect(cacheEntries(cacheDir)).toEqual([]);
  });

  it('refuses a file that is not a zip, and a wheel path that is a directory, with typed errors', async () => {
    const notZip = setup(Buffer.from('this is not a zip file\n'.repeat(100)));
    expect((await refusal(assemble({ wheel: notZip.wheel, cacheDir: notZip.cacheDir }))).message).toMatch(/zip|wheel/);
    const { dir, cacheDir } = setup(Buffer.alloc(0), 'unused.bin');
    const asDir = path.join(dir, 'dir', WHEEL_NAME);
    mkdirSync(asDir, { recursive: true });
    expect((await refusal(assemble({ wheel: asDir, cacheDir }))).message).toMatch(/not a file/);
    expect(cacheEntries(cacheDir)).toEqual([]);
  });

  /** A fake CUDA torch wheel requiring one NVIDIA wheel, and that wheel beside it holding `nvidiaEntries`. */
  function cudaSetup(nvidiaEntries: ZipEntrySpec[]): { cacheDir: string; wheel: string; nvidia: string } {
    const entries = torchEntries('2.14.1+cu130', [{ name: 'torch/lib/libtorch_cuda.so', data: Buffer.alloc(400 << 10, 2), method: 'deflate' }]);
    entries[1].data = "__version__ = '2.14.1+cu130'\ncuda: Optional[str] = '13.0'\n";
    entries.find((e) => e.name.endsWith('/METADATA'))!.data = 'Name: torch\nRequires-Dist: nvidia-cublas==13.1.0; platform_system == "Linux"\n';
    const { dir, cacheDir, wheel } = setup(entries, 'torch-2.14.1+cu130-cp312-cp312-manylinux_2_28_x86_64.whl');
    const nvidia = path.join(dir, 'nvidia_cublas-13.1.0-py3-none-manylinux_2_27_x86_64.whl');
    writeFileSync(nvidia, makeZip([{ name: 'nvidia/cublas/lib/' }, ...nvidiaEntries, { name: 'nvidia_cublas-13.1.0.dist-info/METADATA', data: 'Name: nvidia-cublas\n' }]));
    return { cacheDir, wheel, nvidia };
  }

  it('assembles a fake CUDA wheel with its NVIDIA wheel, and counts the byte limit across both', async () => {
    const lib = { name: 'nvidia/cublas/lib/libcublas.so.13', data: Buffer.alloc(400 << 10, 1), method: 'deflate' } as const;
    const ok = cudaSetup([lib]);
    const r = await assembleLibtorch({ variant: 'cuda', wheel: ok.wheel, cacheDir: ok.cacheDir, log: () => {} });
    expect(r.root).toBe(path.join(ok.cacheDir, 'libtorch', '2.14.1-cu130'));
    expect(r.libtorch).toMatchObject({ variant: 'cuda', cuda: '13.0', version: '2.14.1' });
    expect(readFileSync(path.join(r.root, 'nvidia/cublas/lib/libcublas.so.13')).length).toBe(400 << 10);
    expect(r.bytes).toBeGreaterThan(800 << 10);
    // Each wheel writes about 400 KiB, under a 600 KiB limit alone; together they pass it.
    const over = cudaSetup([lib]);
    const err = await refusal(assembleLibtorch({ variant: 'cuda', wheel: over.wheel, cacheDir: over.cacheDir, log: () => {}, limits: { maxBytes: 600 << 10 } }));
    expect(err.message).toContain(path.basename(over.nvidia));
    expect(cacheEntries(over.cacheDir)).toEqual([]);
  });

  it('refuses a symlink in an NVIDIA wheel', async () => {
    const { cacheDir, wheel, nvidia } = cudaSetup([{ name: 'nvidia/cublas/lib/libcublas.so.13', data: '/etc/shadow', mode: 0o120777 }]);
    const err = await refusal(assembleLibtorch({ variant: 'cuda', wheel, cacheDir, log: () => {} }));
    expect(err.message).toContain(path.basename(nvidia));
    expect(cacheEntries(cacheDir)).toEqual([]);
  });

  it('keeps an existing libtorch when the new wheel of that version fails (unpacked but invalid, or refused)', async () => {
    const noLib = torchEntries().filter((e) => !e.name.endsWith('libtorch_cpu.so'));
    const symlinked = torchEntries(VERSION, [{ name: 'torch/lib/libc10.so', data: '/etc/passwd', mode: 0o120777 }]);
    for (const entries of [noLib, symlinked]) {
      const { cacheDir, wheel } = setup(entries);
      const root = path.join(cacheDir, 'libtorch', '2.13.0-cpu');
      mkdirSync(path.join(root, 'torch/lib'), { recursive: true });
      writeFileSync(path.join(root, 'torch/lib/libtorch_cpu.so'), 'the good one');
      writeFileSync(path.join(root, 'torch/version.py'), "__version__ = '2.13.0+cpu'\n");
      writeFileSync(path.join(root, 'marker'), 'still here');
      await refusal(assemble({ wheel, cacheDir }));
      expect(readFileSync(path.join(root, 'marker'), 'utf8')).toBe('still here');
      expect(readFileSync(path.join(root, 'torch/lib/libtorch_cpu.so'), 'utf8')).toBe('the good one');
      expect(cacheEntries(cacheDir)).toEqual(['2.13.0-cpu']);
    }
  });
});
