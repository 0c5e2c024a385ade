// A model file and an image are input (issue 26, findings 2, 3 and 6): options the table allows
// must still not let a file take the process down, and no image entry point skips the limits.
// Before the fixes: threads=1024 in a file started ~2,000 threads and slowed every engine in the
// process; dims of 65536 made update() ask for 17 GB; resize=8192 made a 96-px image cost 134 s
// and 4.5 GB; head weights of 3e38 scored Infinity; calibrate() decoded a 200000x8 strip past the
// resized-size limit (3.3 GB asked); a 16384x16 PNG under resizeMode 'shorter' asked for 2 GB;
// a 67108864x1 PNG was decoded (1.3 GB) before the 8-pixel minimum refused it.
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine, type ReconpatchError } from '../lib/index.js';
import { syntheticDataset, tempDir } from './support/data.js';
import { buildModel, parseModel } from './support/model_file.mjs';
import { zeroPng } from './support/png.mjs';

const fail = <T>(p: Promise<T>) => p.then(() => null, (e: ReconpatchError) => e);

/** A model file's bytes with options (OPTS `key=value` lines) and sections replaced, checksum redone. */
function craft(bytes: Buffer, options: Record<string, string | number>, replace: Record<string, Buffer> = {}): Buffer {
  const { version, sections } = parseModel(bytes);
  const setOptions = (p: Buffer) => {
    let text = p.toString('utf8');
    for (const [key, value] of Object.entries(options)) text = text.replace(new RegExp(`^${key}=.*$`, 'm'), `${key}=${value}`);
    return Buffer.from(text);
  };
  return buildModel(sections.map(([t, p]) => [t, t === 'OPTS' ? setOptions(p) : (replace[t] ?? p)]), { version });
}

/** A tensor section (core/io/model_file.cc): type 0 (float32), rank, u64 dims, values. */
function tensor(shape: number[], fill: number): Buffer {
  const count = shape.reduce((a, b) => a * b, 1);
  const b = Buffer.alloc(2 + 8 * shape.length + 4 * count);
  b[1] = shape.length;
  shape.forEach((d, i) => b.writeBigUInt64LE(BigInt(d), 2 + 8 * i));
  for (let i = 0; i < count; i++) b.writeFloatLE(fill, 2 + 8 * shape.length + 4 * i);
  return b;
}

const threadsNow = () => Number(/^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]);

describe('model files and images within bounds', () => {
  const dir = tempDir('model-limits');
  let data: Awaited<ReturnType<typeof syntheticDataset>>;
  let plain: Buffer;
  let shorter: Engine;

  beforeAll(async () => {
    data = await syntheticDataset();
    const engine = await Engine.create({ head: false, backbone: 'random_cnn', resize: 64, coreset: { ratio: 0.25 }, calibration: false });
    await engine.fit(data.train.slice(0, 3));
    plain = await engine.saveBytes();
    shorter = await Engine.create({ head: false, backbone: 'random_cnn', resizeMode: 'shorter', resize: 256, crop: 224, coreset: { ratio: 0.25 }, calibration: false });
    await shorter.fit(data.train.slice(0, 3));
  });
  afterAll(() => import('node:fs').then((fs) => fs.rmSync(dir, { recursive: true, force: true })));

  it('clamps a file\'s threads to the machine\'s cores: no thread explosion, same scores', async () => {
    const reference = (await (await Engine.loadBytes(plain)).score(data.test[0].path)).score;
    const before = threadsNow();
    const many = await Engine.loadBytes(craft(plain, { threads: 1024 }));
    expect(many.options.threads).toBe(1024); // the file's value is kept (and saved as it was)
    expect((await many.score(data.test[0].path)).score).toBeCloseTo(reference, 5);
    expect(threadsNow() - before).toBeLessThan(availableParallelism() + 16);
    // A caller's threads override the file's on every call.
    const two = await Engine.loadBytes(craft(plain, { threads: 1024 }), { threads: 1 });
    expect((await two.score(data.test[0].path)).score).toBeCloseTo(reference, 5);
  });

  it('refuses dimensions whose work no fit could ask for', async () => {
    const huge = craft(plain, { targetDim: 65536, pretrainDim: 65536, coresetProjection: 65536 }, { BANK: tensor([2, 65536], 0.5) });
    const e = await fail(Engine.loadBytes(huge));
    expect([e?.code, e?.message]).toEqual(['ERR_MODEL_FILE', expect.stringMatching(/targetDim=65536 must be an integer in \[1, 8192\]/)]);
    const starts = await fail(Engine.loadBytes(craft(plain, { coresetStarts: 100000 })));
    expect(starts?.code).toBe('ERR_MODEL_FILE');
  });

  it('bounds the working size: a model\'s huge resize is refused per image at once, a huge batch at load', async () => {
    const batch = await fail(Engine.loadBytes(craft(plain, { resize: 8192, resizeMode: 'squash', batchSize: 1024 })));
    expect([batch?.code, batch?.message]).toEqual(['ERR_MODEL_FILE', expect.stringContaining('pixels per batch')]);
    const big = await Engine.loadBytes(craft(plain, { resize: 8192, batchSize: 1 }));
    const started = Date.now();
    const e = await fail(big.score(data.test[0].path));
    expect([e?.code, e?.message]).toEqual(['ERR_INVALID_IMAGE', expect.stringContaining('input.maxResizedPixels')]);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('refuses head weights that overflow on the model\'s own bank', async () => {
    const engine = await Engine.create({ backbone: 'random_cnn', resize: 64, coreset: { ratio: 0.25 }, calibration: false, head: { iterations: 2, batch: 64 } });
    await engine.fit(data.train.slice(0, 3));
    const bytes = await engine.saveBytes();
    const dim = engine.options.targetDim;
    const e = await fail(Engine.loadBytes(craft(bytes, {}, { HDFW: tensor([dim, dim], 3e38) })));
    expect([e?.code, e?.message]).toEqual(['ERR_MODEL_FILE', expect.stringContaining('overflow')]);
    expect(Number.isFinite((await (await Engine.loadBytes(bytes)).score(data.test[0].path)).score)).toBe(true);
  });

  it('applies the input limits to calibrate() and refuses extreme shapes from the header', async () => {
    const strip = path.join(dir, 'strip.png');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(strip, zeroPng(200000, 8)); // 4.8 KB; 'shorter' resizes it to 6,400,000 x 256
    const started = Date.now();
    const c = await fail(shorter.calibrate([data.test[0].path, strip], { labels: [0, 1] }));
    expect([c?.code, c?.message]).toEqual(['ERR_INVALID_IMAGE', expect.stringContaining('would be resized to 6400000x256')]);
    // 16384 x 16 under 'shorter' 256: 262144 x 256 = 67 M pixels, within maxPixels but not maxResizedPixels.
    const tall = await fail(shorter.score(zeroPng(16384, 16)));
    expect([tall?.code, tall?.message]).toEqual(['ERR_INVALID_IMAGE', expect.stringContaining('input.maxResizedPixels')]);
    // A line of 67108864 x 1 is within maxPixels; its height fails the minimum before any decoding.
    const line = await fail(shorter.score(zeroPng(67108864, 1, { bitDepth: 1, colorType: 0 })));
    expect([line?.code, line?.message]).toEqual(['ERR_INVALID_IMAGE', expect.stringContaining('needs at least 8 pixels on each side')]);
    expect(Date.now() - started).toBeLessThan(5000);
    // The engine still works.
    expect((await shorter.calibrate([data.test[0].path, data.test[data.test.length - 1].path], { labels: [0, 1] })).threshold).toBeGreaterThan(0);
  });
});
