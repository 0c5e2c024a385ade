// Save -> load gives identical results; damaged, truncated or foreign files fail with
// ERR_MODEL_FILE; a failed save never damages an existing model.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine, ReconpatchError } from '../lib/index.js';
import { fixtures, syntheticDataset, tempDir } from './support/data.js';
import { buildModel, parseModel } from './support/model_file.mjs';

async function codeOf(p: Promise<unknown>): Promise<string> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  expect(e).toBeInstanceOf(ReconpatchError);
  return (e as ReconpatchError).code;
}

describe('model file', () => {
  const dir = tempDir('model-file');
  const modelPath = path.join(dir, 'part.rcp');
  let engine: Engine;
  let probes: string[];

  beforeAll(async () => {
    const data = await syntheticDataset();
    probes = [data.test[0].path, data.test[data.test.length - 1].path];
    engine = await Engine.create({ head: false, backbone: 'random_cnn', resize: null, crop: null, coreset: { ratio: 0.2 }, seed: 3 });
    await engine.fit(data.train.slice(0, 8));
    await engine.save(modelPath);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('round-trips to identical scores and maps', async () => {
    const loaded = await Engine.load(modelPath);
    expect(loaded.info).toEqual(engine.info);
    expect(loaded.options).toEqual(engine.options);
    for (const p of probes) {
      const [a, b] = [await engine.score(p), await loaded.score(p)];
      expect(b.score).toBe(a.score);
      expect(Buffer.from(b.map.buffer).equals(Buffer.from(a.map.buffer))).toBe(true);
    }
  });

  it('rejects every truncation with ERR_MODEL_FILE', async () => {
    const bytes = readFileSync(modelPath);
    for (const keep of [0, 7, 8, 16, 100, bytes.length >> 1, bytes.length - 33, bytes.length - 1]) {
      const p = path.join(dir, `trunc-${keep}.rcp`);
      writeFileSync(p, bytes.subarray(0, keep));
      expect(await codeOf(Engine.load(p))).toBe('ERR_MODEL_FILE');
    }
  });

  it('rejects flipped bytes anywhere (checksum)', async () => {
    const bytes = readFileSync(modelPath);
    for (const at of [3, 12, 40, bytes.length >> 1, bytes.length - 5]) {
      const copy = Buffer.from(bytes);
      copy[at] ^= 0x5a;
      const p = path.join(dir, `flip-${at}.rcp`);
      writeFileSync(p, copy);
      const err = await Engine.load(p).catch((e: ReconpatchError) => e);
      expect(err).toBeInstanceOf(ReconpatchError);
      expect((err as ReconpatchError).code).toBe('ERR_MODEL_FILE');
    }
  });

  it('rejects foreign and missing files', async () => {
    const png = path.join(dir, 'image.png');
    copyFileSync(probes[0], png);
    expect(await codeOf(Engine.load(png))).toBe('ERR_MODEL_FILE');
    expect(await codeOf(Engine.load(path.join(dir, 'nope.rcp')))).toBe('ERR_MODEL_FILE');
    const err = (await Engine.load(png).catch((e) => e)) as Error;
    expect(err.message).not.toMatch(/Exception raised from|frame #/); // no C++ backtrace
  });

  it('refuses to save an unfitted engine', async () => {
    const fresh = await Engine.create({ head: false, backbone: 'random_cnn' });
    expect(await codeOf(fresh.save(path.join(dir, 'unfitted.rcp')))).toBe('ERR_NOT_FITTED');
  });

  it('never damages an existing model when a save fails, and leaves no temporary files', async () => {
    const before = readFileSync(modelPath);
    expect(await codeOf(engine.save(path.join(dir, 'missing-dir', 'x.rcp')))).toBe('ERR_IO');
    await engine.save(modelPath); // overwrite in place
    expect(readFileSync(modelPath).equals(before)).toBe(true);
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('embeds a TorchScript backbone so the model works without the .pt file', async () => {
    const pt = path.join(dir, 'tiny.pt');
    copyFileSync(path.join(fixtures, 'golden/tiny_backbone.pt'), pt);
    const e = await Engine.create({ head: false, backbone: pt, resize: 64, crop: 48, features: { pretrainDim: 64, targetDim: 48 } });
    const data = await syntheticDataset();
    await e.fit(data.train.slice(0, 4));
    const p = path.join(dir, 'tiny.rcp');
    await e.save(p);
    rmSync(pt);
    expect(existsSync(pt)).toBe(false);
    const loaded = await Engine.load(p);
    expect(loaded.info.backbone).toBe('tiny_test');
    expect((await loaded.score(probes[0])).score).toBe((await e.score(probes[0])).score);
  });

  it('round-trips through bytes (saveBytes / loadBytes) to the same file and the same scores', async () => {
    const bytes = await engine.saveBytes();
    expect(bytes.equals(readFileSync(modelPath))).toBe(true);
    const loaded = await Engine.loadBytes(new Uint8Array(bytes)); // a plain Uint8Array works too
    expect((await loaded.score(probes[0])).score).toBe((await engine.score(probes[0])).score);
    expect(await codeOf(Engine.loadBytes(bytes.subarray(0, 100)))).toBe('ERR_MODEL_FILE');
    expect(await codeOf(Engine.loadBytes('not bytes' as unknown as Buffer))).toBe('ERR_INVALID_OPTION');
  });

  it('checks a loaded model\'s options like Engine.create: a crafted file with bad options is refused before anything is built', async () => {
    const bytes = readFileSync(modelPath);
    for (const [key, value] of [['batchSize', '0'], ['threads', '100000'], ['patchSize', '0'], ['resize', '3'], ['coresetRatio', 'nan'], ['device', 'tpu']]) {
      const crafted = withOption(bytes, key, value);
      const err = await Engine.loadBytes(crafted).catch((e: ReconpatchError) => e);
      expect(err, `${key}=${value}`).toBeInstanceOf(ReconpatchError);
      expect((err as ReconpatchError).code).toBe('ERR_MODEL_FILE');
      expect((err as ReconpatchError).message).toContain(`${key}=`);
    }
    // The same edit with an allowed value loads: the check is about values, not about editing.
    const fine = await Engine.loadBytes(withOption(bytes, 'batchSize', '2'));
    expect(fine.options.batchSize).toBe(2);
  });

  it('reads a file written before head.sigmaRule and head.plateau existed as the fixed sigma and budget it trained with (issue 19)', async () => {
    // A file whose head options are not the legacy ones (knn, 0.01: study v1's defaults), so the test tells them apart.
    const base = withOption(withOption(readFileSync(modelPath), 'headSigmaRule', 'knn'), 'headPlateau', '0.01');
    const { version, sections } = parseModel(base);
    const drop = (p: Buffer) => Buffer.from(p.toString('utf8').replace(/^headSigmaRule=.*\n/m, '').replace(/^headPlateau=.*\n/m, ''));
    const older = buildModel(sections.map(([t, p]) => [t, t === 'OPTS' ? drop(p) : p]), { version });
    expect(older.toString('latin1')).not.toContain('headSigmaRule=');
    expect(older.toString('latin1')).not.toContain('headPlateau=');
    const loaded = await Engine.loadBytes(older);
    expect([loaded.options.headSigmaRule, loaded.options.headPlateau]).toEqual(['fixed', 0]);
    const stated = await Engine.loadBytes(base);
    expect([stated.options.headSigmaRule, stated.options.headPlateau]).toEqual(['knn', 0.01]);
    expect((await Engine.loadBytes(withOption(readFileSync(modelPath), 'headSigmaRule', 'knn'))).options.headSigmaRule).toBe('knn');
  });

  it('reads regular files only, with a bound: a directory, /dev/zero and a FIFO fail at once', async () => {
    expect(await codeOf(Engine.load(dir))).toBe('ERR_MODEL_FILE');
    const started = Date.now();
    const zero = await Engine.load('/dev/zero').catch((e: ReconpatchError) => e);
    expect((zero as ReconpatchError).code).toBe('ERR_MODEL_FILE');
    expect((zero as ReconpatchError).message).toContain('not a regular file');
    const fifo = path.join(dir, 'pipe.rcp');
    execFileSync('mkfifo', [fifo]);
    const err = await Engine.load(fifo).catch((e: ReconpatchError) => e);
    expect((err as ReconpatchError).code).toBe('ERR_MODEL_FILE');
    expect(Date.now() - started).toBeLessThan(5000); // none of them waited or read without end
  });

  it('removes temporary files that killed processes left beside a model, and only those', async () => {
    const sub = path.join(dir, 'stale');
    mkdirSync(sub);
    const target = path.join(sub, 'part.rcp');
    const dead = `${target}.tmp-${deadPid()}-0`;
    const alive = `${target}.tmp-${process.ppid}-ab12cd34`; // a running process: maybe still writing
    writeFileSync(dead, Buffer.alloc(1024));
    writeFileSync(alive, Buffer.alloc(16));
    await engine.save(target);
    expect(existsSync(dead)).toBe(false);
    expect(existsSync(alive)).toBe(true);
    expect(existsSync(target)).toBe(true);
  });
});

/** A pid that no process has now. */
function deadPid(): number {
  for (let pid = 4_000_000; ; pid--) {
    try {
      process.kill(pid, 0);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ESRCH') return pid;
    }
  }
}

/** A model file's bytes with one option (OPTS section, `key=value` lines) changed and the checksum redone. */
function withOption(bytes: Buffer, key: string, value: string): Buffer {
  const set = (p: Buffer) => Buffer.from(p.toString('utf8').replace(new RegExp(`^${key}=.*$`, 'm'), `${key}=${value}`));
  const { version, sections } = parseModel(bytes);
  return buildModel(sections.map(([t, p]) => [t, t === 'OPTS' ? set(p) : p]), { version });
}

