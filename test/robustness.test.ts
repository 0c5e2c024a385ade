// Smaller items of issue 17: an error from the caller's own iterable in scoreStream is ERR_INPUT
// with the caller's error as its cause (item 7), and `reconpatch fit -o <unwritable>` fails
// before fitting (item 9).
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine, Ensemble, type ReconpatchError } from '../lib/index.js';
import { repoRoot, syntheticDataset, tempDir } from './support/data.js';
import { type Section, buildModel, parseModel } from './support/model_file.mjs';

const base = { head: false, backbone: 'random_cnn', resize: null, crop: null, coreset: { ratio: 0.25 } } as const;

describe('errors from the caller’s iterable in scoreStream', () => {
  let engine: Engine;
  let ensemble: Ensemble;
  let images: string[];
  beforeAll(async () => {
    const data = await syntheticDataset();
    images = data.test.slice(0, 3).map((t) => t.path);
    engine = await Engine.create(base);
    await engine.fit(data.train.slice(0, 6));
    ensemble = await Ensemble.create({ members: [{ ...base, seed: 1 }, { ...base, seed: 2 }] });
    await ensemble.fit(data.train.slice(0, 8));
  });

  const broken = new Error('camera disconnected');
  async function* source() {
    yield images[0];
    yield images[1];
    throw broken;
  }
  const throwingIterable = { [Symbol.iterator]: () => { throw broken; } };

  it('is ERR_INPUT with the caller’s error as cause, after the items before it (both onError modes)', async () => {
    for (const onError of ['throw', 'yield'] as const) {
      const seen: number[] = [];
      let err: ReconpatchError | undefined;
      try {
        for await (const r of engine.scoreStream(source(), { onError })) seen.push(r.index);
      } catch (e) {
        err = e as ReconpatchError;
      }
      expect(err?.code).toBe('ERR_INPUT');
      expect(err?.cause).toBe(broken);
      expect(err?.message).toContain('camera disconnected');
      expect(seen).toEqual([0, 1]);
    }
    const direct = await (async () => {
      for await (const _ of engine.scoreStream(throwingIterable as Iterable<string>)) void _;
    })().catch((e: ReconpatchError) => e);
    expect([direct?.code, direct?.cause]).toEqual(['ERR_INPUT', broken]);
    // The ensemble's stream says the same; the engine goes on serving.
    const fromEnsemble = await (async () => {
      for await (const _ of ensemble.scoreStream(source())) void _;
    })().catch((e: ReconpatchError) => e);
    expect([fromEnsemble?.code, fromEnsemble?.cause]).toEqual(['ERR_INPUT', broken]);
    expect((await engine.score(images[2])).score).toBeGreaterThan(0);
  });
});

describe('reconpatch fit -o', () => {
  const run = promisify(execFile);
  const cli = path.join(repoRoot, 'dist/cli/main.js');
  const dir = tempDir('cli-output');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function reconpatch(...args: string[]): Promise<{ code: number; stderr: string }> {
    try {
      const { stderr } = await run(process.execPath, [cli, ...args]);
      return { code: 0, stderr };
    } catch (e) {
      const err = e as { code: number; stderr: string };
      return { code: err.code, stderr: err.stderr };
    }
  }

  // The training folder holds one undecodable "image": a fit that starts fails on it with
  // ERR_INVALID_IMAGE, so ERR_IO about the output shows that the check came first.
  it.skipIf(!existsSync(cli))('checks the output path before fitting', async () => {
    const train = path.join(dir, 'train');
    mkdirSync(train);
    writeFileSync(path.join(train, 'broken.png'), 'not a png');
    const missing = await reconpatch('fit', train, '-o', path.join(dir, 'nonexistent/dir/m.rcp'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/\[ERR_IO\].*does not exist/);
    const intoFolder = await reconpatch('fit', train, '-o', train);
    expect(intoFolder.stderr).toMatch(/\[ERR_IO\].*is a directory/);
    const readOnly = await reconpatch('fit', train, '-o', '/proc/m.rcp');
    expect(readOnly.stderr).toMatch(/\[ERR_IO\].*does not take new files/);
    // A writable output: the fit starts (and fails on the broken image), leaving no probe behind.
    // (fit needs a backbone named since issue 16)
    const ok = await reconpatch('fit', train, '-o', path.join(dir, 'm.rcp'), '--backbone', 'random_cnn', '--no-head');
    expect(ok.stderr).toContain('[ERR_INVALID_IMAGE]');
    expect(existsSync(path.join(dir, 'm.rcp'))).toBe(false);
    expect(readdirSync(dir).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });
});

describe('crafted model files with a valid checksum', () => {
  let bytes: Buffer;
  let probe: string;
  beforeAll(async () => {
    const data = await syntheticDataset();
    probe = data.test[0].path;
    const engine = await Engine.create(base);
    await engine.fit(data.train.slice(0, 6));
    bytes = await engine.saveBytes();
  });

  /** The model's sections with `edit` applied, re-assembled with a fresh checksum. */
  function crafted(edit: (sections: Section[]) => Section[]): Buffer {
    const { version, sections } = parseModel(bytes);
    return buildModel(edit(sections), { version });
  }
  const option = (key: string, value: string) =>
    crafted((s) => s.map(([t, p]) => [t, t === 'OPTS' ? Buffer.from(p.toString().replace(new RegExp(`^${key}=.*$`, 'm'), `${key}=${value}`)) : p]));
  const section = (tag: string, payload: Buffer) => crafted((s) => [...s.filter(([t]) => t !== tag), [tag, payload]]);
  const refused = async (b: Buffer) => (await Engine.loadBytes(b).then(() => null, (e: ReconpatchError) => e))?.code;

  it('are refused with ERR_MODEL_FILE, and the untouched file still loads', async () => {
    expect(await refused(option('resize', '0x10'))).toBe('ERR_MODEL_FILE'); // was read as 0: no resize
    expect(await refused(option('batchSize', '4294967297'))).toBe('ERR_MODEL_FILE'); // was read as 1
    expect(await refused(option('seed', ' 1'))).toBe('ERR_MODEL_FILE');
    expect(await refused(option('reweight', '2'))).toBe('ERR_MODEL_FILE');
    const nanBank = crafted((s) => s.map(([t, p]) => {
      if (t !== 'BANK') return [t, p];
      const copy = Buffer.from(p);
      copy.writeFloatLE(Number.NaN, copy.length - 4);
      return [t, copy];
    }));
    expect(await refused(nanBank)).toBe('ERR_MODEL_FILE');
    expect(await refused(section('META', Buffer.from('{not json')))).toBe('ERR_MODEL_FILE'); // was ERR_INTERNAL
    expect(await refused(section('META', Buffer.from('{"calibration":{"threshold":"high","low":0}}')))).toBe('ERR_MODEL_FILE');
    expect(await refused(section('BKTS', Buffer.from('not a TorchScript archive')))).toBe('ERR_MODEL_FILE'); // was ERR_BACKBONE
    const same = await Engine.loadBytes(crafted((s) => s));
    expect((await same.score(probe)).score).toBeGreaterThan(0);
  });
});
