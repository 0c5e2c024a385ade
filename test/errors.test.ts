// Bad input gets a typed error and leaves the engine usable; aborted and failed fits keep the
// previous state; concurrent calls are safe.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine, ReconpatchError } from '../lib/index.js';
import { fixtures, syntheticDataset, tempDir } from './support/data.js';

// A copy of a TorchScript file (a zip of stored entries, as torch.jit.save writes it: sizes and CRC
// in the central directory and a data descriptor) with one tensor's bytes replaced by NaN.
function withNanTensor(file: string, entry: string): Buffer {
  const buf = Buffer.from(readFileSync(file));
  const name = Buffer.from(entry);
  const local = buf.indexOf(name) - 30;
  const central = buf.indexOf(name, local + 31) - 46;
  expect(buf.readUInt32LE(local)).toBe(0x04034b50);
  expect(buf.readUInt32LE(central)).toBe(0x02014b50);
  expect(buf.readUInt16LE(central + 10)).toBe(0); // stored, not deflated
  const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
  const size = buf.readUInt32LE(central + 20);
  for (let at = start; at < start + size; at += 4) buf.writeFloatLE(Number.NaN, at);
  const crc = zlib.crc32(buf.subarray(start, start + size));
  buf.writeUInt32LE(crc, central + 16);
  if (buf.readUInt16LE(local + 6) & 8) {
    buf.writeUInt32LE(crc, start + size + (buf.readUInt32LE(start + size) === 0x08074b50 ? 4 : 0)); // data descriptor
  } else {
    buf.writeUInt32LE(crc, local + 14);
  }
  return buf;
}

async function errorOf(p: Promise<unknown>): Promise<ReconpatchError> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  expect(e).toBeInstanceOf(ReconpatchError);
  return e as ReconpatchError;
}

describe('errors and recovery', () => {
  const dir = tempDir('errors');
  let engine: Engine;
  let train: string[];
  let probe: string;
  let probeScore: number;
  let corrupt: string;
  let truncated: string;

  beforeAll(async () => {
    const data = await syntheticDataset();
    train = data.train.slice(0, 8);
    probe = data.test[data.test.length - 1].path;
    engine = await Engine.create({ head: false, backbone: 'random_cnn', resize: null, crop: null, coreset: { ratio: 0.2 }, batchSize: 2, calibration: false });
    await engine.fit(train);
    probeScore = (await engine.score(probe)).score;
    corrupt = path.join(dir, 'corrupt.png');
    writeFileSync(corrupt, Buffer.from('this is not an image at all'));
    truncated = path.join(dir, 'truncated.png');
    const png = readFileSync(train[0]);
    writeFileSync(truncated, png.subarray(0, png.length >> 1));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const stillWorks = async () => expect((await engine.score(probe)).score).toBe(probeScore);

  it('rejects corrupt, truncated, missing and empty inputs with ERR_INVALID_IMAGE', async () => {
    for (const bad of [corrupt, truncated, path.join(dir, 'missing.png'), Buffer.alloc(0), Buffer.from([0x89, 0x50, 0x4e, 0x47])]) {
      const e = await errorOf(engine.score(bad));
      expect(e.code).toBe('ERR_INVALID_IMAGE');
    }
    expect((await errorOf(engine.score(corrupt))).message).toContain('corrupt.png');
    await stillWorks();
  });

  it('rejects malformed raw frames', async () => {
    const cases = [
      { data: new Uint8Array(10), width: 4, height: 4, channels: 3 }, // wrong length
      { data: new Uint8Array(4 * 4 * 5), width: 4, height: 4, channels: 5 }, // channels
      { data: new Uint8Array(4 * 4 * 3), width: 4, height: 4, channels: 3 }, // too small to embed
      { data: [1, 2, 3], width: 1, height: 1, channels: 3 }, // not a Uint8Array
      42,
    ];
    for (const c of cases) expect((await errorOf(engine.score(c as never))).code).toBe('ERR_INVALID_IMAGE');
    await stillWorks();
  });

  it('fails a fit on a bad image naming the file, and keeps the previous model', async () => {
    const e = await errorOf(engine.fit([train[0], train[1], train[2], corrupt, train[4]]));
    expect(e.code).toBe('ERR_INVALID_IMAGE');
    expect(e.message).toContain('corrupt.png');
    await stillWorks();
    expect(engine.info.trainImages).toBe(train.length);
  });

  it('a backbone that outputs NaN fails fit with ERR_BACKBONE naming it (before the coreset could see NaN)', async () => {
    // tiny_backbone.pt with its last convolution's bias (data/7, 32 floats) set to NaN.
    const file = path.join(dir, 'nan_backbone.pt');
    writeFileSync(file, withNanTensor(path.join(fixtures, 'golden/tiny_backbone.pt'), 'tiny_backbone/data/7'));
    const nan = await Engine.create({ head: false, backbone: file, resize: null, crop: null, coreset: { ratio: 0.2 }, calibration: false });
    const e = await errorOf(nan.fit(train.slice(0, 4)));
    expect(e.code).toBe('ERR_BACKBONE');
    expect(e.message).toMatch(/backbone 'tiny_test' produced NaN or Inf values/);
    expect(nan.info.fitted).toBe(false);
    // The same file unpatched fits.
    const good = await Engine.create({ head: false, backbone: path.join(fixtures, 'golden/tiny_backbone.pt'), resize: null, crop: null, coreset: { ratio: 0.2 }, calibration: false });
    await good.fit(train.slice(0, 4));
    expect(Number.isFinite((await good.score(probe)).score)).toBe(true);
  });

  it('rejects an empty training set', async () => {
    expect((await errorOf(engine.fit([]))).code).toBe('ERR_EMPTY_TRAINING_SET');
    expect((await errorOf(engine.fit((async function* () {})()))).code).toBe('ERR_EMPTY_TRAINING_SET');
    expect((await errorOf(engine.fit(42 as never))).code).toBe('ERR_INVALID_OPTION');
    await stillWorks();
  });

  it('scores nothing before fit', async () => {
    const fresh = await Engine.create({ head: false, backbone: 'random_cnn' });
    const e = await errorOf(fresh.score(probe));
    expect(e.code).toBe('ERR_NOT_FITTED');
    expect(e.message).toMatch(/fit\(\)/);
  });

  it('aborts before, during embedding and during coreset selection; the engine stays usable', async () => {
    const before = new AbortController();
    before.abort();
    expect((await errorOf(engine.fit(train, { signal: before.signal }))).code).toBe('ERR_ABORTED');

    const duringEmbed = new AbortController();
    const e1 = await errorOf(engine.fit(train, { signal: duringEmbed.signal, onProgress: (p) => p.stage === 'embed' && duringEmbed.abort() }));
    expect(e1.code).toBe('ERR_ABORTED');

    const duringCoreset = new AbortController();
    const big = await Engine.create({ head: false, backbone: 'random_cnn', resize: null, crop: null, coreset: { ratio: 0.9 } });
    const e2 = await errorOf(big.fit(train, { signal: duringCoreset.signal, onProgress: (p) => p.stage === 'coreset' && duringCoreset.abort() }));
    expect(e2.code).toBe('ERR_ABORTED');
    expect(big.info.fitted).toBe(false);
    await big.fit(train.slice(0, 2));
    expect(big.info.fitted).toBe(true);

    await stillWorks();
    expect(engine.info.trainImages).toBe(train.length);
  });

  it('serves concurrent calls with the same results as sequential ones', async () => {
    const data = await syntheticDataset();
    const paths = data.test.map((t) => t.path);
    const sequential: number[] = [];
    for (const p of paths) sequential.push((await engine.score(p)).score);
    const concurrent = await Promise.all(paths.map((p) => engine.score(p)));
    expect(concurrent.map((r) => r.score)).toEqual(sequential);
  });

  it('queues a score behind a running fit instead of racing it', async () => {
    const other = await Engine.create({ head: false, backbone: 'random_cnn', resize: null, crop: null, coreset: { ratio: 0.2 } });
    const fit = other.fit(train);
    const score = other.score(probe); // queued: runs after the fit, so the engine is fitted
    await fit;
    expect(Number.isFinite((await score).score)).toBe(true);
  });
});
