// What an image may cost (issue 17, items 2, 5 and 7): a pixel budget checked from the header
// before decoding, a bound on the resized image whatever the aspect ratio, regular files only for
// image paths, and sharp's failOn policy as an option. The inputs that used to exhaust memory or
// hang (a 4.8 KB PNG of 200000x8 asked the resize for 19.7 GB; score('/dev/zero') read without
// end; a FIFO never settled) run in a child process (test/support/score_child.mjs).
import './support/test_addon.js'; // internals: the test addon (first, before any native() call)
import { spawnSync } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine, INPUT_DEFAULTS, type ReconpatchError, toRawFrame } from '../lib/index.js';
import { resizedSize } from '../lib/io/images.js';
import { nativeInternals } from '../lib/native.js';
import { zeroPng } from './support/png.mjs';
import { repoRoot, syntheticDataset, tempDir } from './support/data.js';

const dist = path.join(repoRoot, 'dist/index.js');
const child = path.join(repoRoot, 'test/support/score_child.mjs');
const fail = <T>(p: Promise<T>) => p.then(() => null, (e: ReconpatchError) => e);

/** A deterministic JPEG with 500 pseudo-random bytes written over its middle (issue 17's case). */
async function damagedJpeg(source: string): Promise<Buffer> {
  const jpeg = Buffer.from(await sharp(source).jpeg({ quality: 90 }).toBuffer());
  let x = 12345;
  const mid = jpeg.length >> 1;
  for (let i = 0; i < 500; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    jpeg[mid + i] = x >> 16;
  }
  return jpeg;
}

describe('input limits', () => {
  const dir = tempDir('limits');
  const model = path.join(dir, 'model.rcp');
  let data: Awaited<ReturnType<typeof syntheticDataset>>;

  beforeAll(async () => {
    data = await syntheticDataset();
    // Shorter side to 256, crop 224 (the default before issue 16): long strips resize to billions of
    // pixels, which the resized-size limit must refuse. The default 'area' mode resizes any shape
    // to about 256^2 pixels (tested below).
    const engine = await Engine.create({ head: false, backbone: 'random_cnn', resizeMode: 'shorter', resize: 256, crop: 224, coreset: { ratio: 0.25 }, calibration: false });
    await engine.fit(data.train.slice(0, 4));
    await engine.save(model);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.skipIf(!existsSync(dist))('refuses huge and endless inputs at once, in bounded memory, and keeps scoring', () => {
    const files = {
      wide: path.join(dir, 'wide.png'), // 4.8 KB; resized to 6,400,000 x 256
      lessWide: path.join(dir, 'less_wide.png'), // resized to 1,280,000 x 256
      huge: path.join(dir, 'huge.png'), // 16000 x 16000 zeros (1-bit grey, a few KB)
      fifo: path.join(dir, 'pipe.png'),
      folder: path.join(dir, 'folder.png'),
    };
    writeFileSync(files.wide, zeroPng(200000, 8));
    writeFileSync(files.lessWide, zeroPng(40000, 8));
    writeFileSync(files.huge, zeroPng(16000, 16000, { bitDepth: 1, colorType: 0 }));
    execFileSync('mkfifo', [files.fifo]);
    mkdirSync(files.folder);
    expect(readFileSync(files.wide).length).toBeLessThan(8000);
    const inputs = [files.wide, files.lessWide, files.huge, '/dev/zero', files.fifo, files.folder, data.test[0].path];
    const r = spawnSync(process.execPath, [child, JSON.stringify({ dist, model, inputs })], { encoding: 'utf8', timeout: 120_000 });
    expect([r.status, r.signal, r.stderr]).toEqual([0, null, '']);
    const { outcomes, maxRssMB } = JSON.parse(r.stdout.trim());
    expect(outcomes.slice(0, 6).map((o: { code: string }) => o.code)).toEqual(Array(6).fill('ERR_INVALID_IMAGE'));
    const [wide, lessWide, huge, zero, fifo, folder, normal] = outcomes as { message: string; score?: number }[];
    expect(wide.message).toMatch(/would be resized to 6400000x256 = 1638400000 pixels .*over the limit of 4194304 pixels for the resized image \(option input\.maxResizedPixels\)/);
    expect(lessWide.message).toContain('resized to 1280000x256');
    expect(huge.message).toContain('is 16000x16000 = 256000000 pixels, over the input limit of 67108864 pixels (option input.maxPixels)');
    expect(zero.message).toContain('not a regular file (a device, FIFO or socket)');
    expect(fifo.message).toContain('not a regular file');
    expect(folder.message).toContain('not a regular file (a directory)');
    expect(normal.score).toBeGreaterThan(0);
    // Before, these inputs made the process allocate 4 to 20 GB.
    expect(maxRssMB).toBeLessThan(1024);
  });

  it('applies maxPixels to every kind of input, raw frames and their resized size included', async () => {
    const strict = await Engine.load(model, { input: { maxPixels: 5000 } });
    const e = await fail(strict.score(data.test[0].path)); // 96 x 96 = 9216 pixels
    expect([e?.code, e?.message]).toEqual(['ERR_INVALID_IMAGE', expect.stringContaining('is 96x96 = 9216 pixels, over the input limit of 5000 pixels')]);
    const raw = { data: new Uint8Array(96 * 96 * 3), width: 96, height: 96, channels: 3 as const };
    expect((await fail(strict.score(raw)))?.code).toBe('ERR_INVALID_IMAGE');
    // The default engine takes them; a thin raw strip is refused for its resized size only.
    const engine = await Engine.load(model);
    expect((await engine.score(raw)).width).toBe(96);
    const strip = { data: new Uint8Array(20000 * 8), width: 20000, height: 8, channels: 1 as const };
    const s = await fail(engine.score(strip));
    expect([s?.code, s?.message]).toEqual(['ERR_INVALID_IMAGE', expect.stringContaining('would be resized to 640000x256')]);
    // The default 'area' mode resizes it to about 256^2 pixels (aspect kept) and scores every pixel.
    const area = await Engine.create({ head: false, backbone: 'random_cnn', coreset: { ratio: 0.25 }, calibration: false });
    await area.fit(data.train.slice(0, 2));
    const whole = await area.score(strip);
    expect([whole.width, whole.height, whole.map.every((v) => Number.isFinite(v))]).toEqual([20000, 8, true]);
    // fit and scoreMany decode within the same limits.
    expect((await fail(strict.scoreMany([raw])))?.code).toBe('ERR_INVALID_IMAGE');
    const fresh = await Engine.create({ head: false, backbone: 'random_cnn', calibration: false, input: { maxPixels: 5000 } });
    expect((await fail(fresh.fit(data.train.slice(0, 2))))?.code).toBe('ERR_INVALID_IMAGE');
    // toRawFrame on its own: the defaults.
    expect(INPUT_DEFAULTS).toEqual({ maxPixels: 8192 * 8192, maxResizedPixels: 2048 * 2048, failOn: 'warning' });
    expect((await toRawFrame(data.test[0].path)).width).toBe(96);
  });

  it('computes the resized size exactly as the native preprocessing does', () => {
    const { preprocess } = nativeInternals();
    for (const [w, h] of [[37, 10], [10, 37], [100, 33], [33, 100], [64, 64], [1001, 17]]) {
      for (const resizeMode of ['area', 'shorter', 'squash'] as const) {
        const frame = { data: new Uint8Array(w * h * 3), width: w, height: h, channels: 3 as const };
        const [rw, rh] = resizedSize(w, h, { resize: 40, resizeMode });
        // Without a crop the native side keeps the resized image, floored to even sides.
        expect(preprocess(frame, 40, 0, resizeMode).shape).toEqual([3, rh - (rh % 2), rw - (rw % 2)]);
      }
    }
  });

  it('refuses a damaged JPEG by default (failOn: warning), and takes it with failOn: error', async () => {
    const jpeg = await damagedJpeg(data.test[0].path);
    const e = await fail((await Engine.load(model)).score(jpeg));
    expect([e?.code, e?.message]).toEqual(['ERR_INVALID_IMAGE', expect.stringContaining('Corrupt JPEG data')]);
    const lenient = await Engine.load(model, { input: { failOn: 'error' } });
    expect((await lenient.score(jpeg)).width).toBe(96);
    for (const input of [{ failOn: 'sometimes' }, { maxPixels: 10 }, { maxPixels: 1.5 }, { limit: 1 }, 'x']) {
      expect((await fail(Engine.load(model, { input: input as never })))?.code).toBe('ERR_INVALID_OPTION');
      expect((await fail(Engine.create({ head: false, backbone: 'random_cnn', input: input as never })))?.code).toBe('ERR_INVALID_OPTION');
    }
  });

  it('decodes raster formats only: an SVG is refused', async () => {
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64"/></svg>');
    const e = await fail((await Engine.load(model)).score(svg));
    expect([e?.code, e?.message]).toEqual(['ERR_INVALID_IMAGE', expect.stringContaining("is a 'svg' image")]);
  });
});
