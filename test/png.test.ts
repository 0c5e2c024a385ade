// lib/io/png.ts decodes plain 8-bit PNGs without sharp: the pixels must be sharp's, byte for
// byte, on real dataset files and on files with every filter type and colour type; everything
// it doubts must go to sharp, which keeps deciding what is refused.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

import sharp from 'sharp';
import { describe, expect, it } from 'vitest';

import { toRawFrame } from '../lib/io/images.js';
import { decodeSimplePng, simplePngHeader } from '../lib/io/png.js';
import { hasShared, SHARED_ABSENT, sharedDatasets } from './support/data.js';
import { encodePng, zeroPng } from './support/png.mjs';

async function viaSharp(bytes: Uint8Array): Promise<{ data: Buffer; width: number; height: number; channels: number }> {
  const { data, info } = await sharp(bytes).removeAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: info.channels };
}

async function expectSameAsSharp(bytes: Uint8Array): Promise<void> {
  const ours = await decodeSimplePng(bytes);
  expect(ours, 'the fast path declined a file it should take').toBeDefined();
  const theirs = await viaSharp(bytes);
  expect([ours!.width, ours!.height, ours!.channels]).toEqual([theirs.width, theirs.height, theirs.channels]);
  expect(Buffer.from(ours!.data).equals(theirs.data)).toBe(true);
}

/** Pixels with edges and gradients, so that every predictor is exercised with carries. */
function pixels(width: number, height: number, channels: number, seed: number): Uint8Array {
  const out = new Uint8Array(width * height * channels);
  let s = seed >>> 0;
  for (let i = 0; i < out.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const x = Math.floor(i / channels) % width;
    out[i] = (i % 3 === 0 ? s >>> 24 : x * 7 + (s >>> 29)) & 255;
  }
  return out;
}

const CHANNELS = { 0: 1, 2: 3, 4: 2, 6: 4 } as const;

describe('PNG fast path', () => {
  it('gives sharp\'s pixels for every colour type and filter type, one IDAT or many', async () => {
    for (const colorType of [0, 2, 4, 6] as const) {
      for (const filters of [[0], [1], [2], [3], [4], [0, 1, 2, 3, 4]]) {
        const [w, h] = [37, 23];
        const px = pixels(w, h, CHANNELS[colorType], colorType * 10 + filters.length);
        await expectSameAsSharp(encodePng(px, w, h, { colorType, filters, idatParts: filters.length === 5 ? 7 : 1 }));
      }
    }
  });

  it('takes harmless chunks (text, pHYs, sRGB, gAMA: sharp applies no gamma) and leaves colour-managed or unusual PNGs to sharp', async () => {
    const px = pixels(16, 9, 3, 5);
    await expectSameAsSharp(encodePng(px, 16, 9, { extra: [['tEXt', Buffer.from('Software\0camera')], ['pHYs', Buffer.alloc(9)], ['sRGB', Buffer.from([0])]] }));
    for (const gamma of [45455, 100000, 22000]) {
      const g = Buffer.alloc(4);
      g.writeUInt32BE(gamma);
      await expectSameAsSharp(encodePng(px, 16, 9, { extra: [['gAMA', g]] }));
    }
    // A chromaticity, a transparency key, an unknown chunk: sharp may change pixels for them.
    for (const extra of [[['cHRM', Buffer.alloc(32)]], [['tRNS', Buffer.alloc(6)]], [['abCd', Buffer.alloc(2)]]] as [string, Buffer][][]) {
      expect(await decodeSimplePng(encodePng(px, 16, 9, { extra }))).toBeUndefined();
    }
    // Headers the fast path does not decode: 16-bit, palette, interlaced.
    expect(simplePngHeader(zeroPng(8, 8, { bitDepth: 16 }))).toBeUndefined();
    const interlaced = encodePng(px, 16, 9);
    interlaced[28] = 1;
    expect(simplePngHeader(interlaced)).toBeUndefined();
    const palette = encodePng(px, 16, 9);
    palette[25] = 3;
    expect(simplePngHeader(palette)).toBeUndefined();
  });

  it('declines damaged files (bad CRC, short or long stream, bad filter, no IEND), and toRawFrame still refuses them through sharp', async () => {
    const px = pixels(16, 9, 3, 7);
    const good = encodePng(px, 16, 9);
    const badCrc = Buffer.from(good);
    badCrc[good.length - 20] ^= 0x40;  // a byte of the IDAT data: its CRC no longer matches
    const short = zeroPng(16, 9, { rows: 5 });
    const long = zeroPng(16, 9, { dataBytes: 9 * (16 * 3 + 1) + 10 });
    const badFilter = encodePng(px, 16, 9, { filters: [5 as number] });
    const noEnd = good.subarray(0, good.length - 12);
    for (const bytes of [badCrc, short, long, badFilter, noEnd]) expect(await decodeSimplePng(bytes)).toBeUndefined();
    // A walk of thousands of tiny chunks on the event loop is left to sharp, which still decodes it.
    const big = pixels(200, 100, 3, 9);
    const splinters = encodePng(big, 200, 100, { idatParts: 10_000, level: 0 });
    expect(await decodeSimplePng(splinters)).toBeUndefined();
    expect(Buffer.from((await toRawFrame(splinters)).data).equals(Buffer.from(big))).toBe(true);
    for (const bytes of [badCrc, short, badFilter]) {
      const err = await toRawFrame(bytes).catch((e: unknown) => e);
      expect((err as { code?: string }).code).toBe('ERR_INVALID_IMAGE');
    }
    // The header's size is checked before any inflate (the limits error, not a decode).
    const huge = await toRawFrame(zeroPng(70_000, 70_000, { rows: 1 })).catch((e: unknown) => e);
    expect((huge as { code?: string }).code).toBe('ERR_INVALID_IMAGE');
    expect((huge as Error).message).toMatch(/pixels/);
  });

  it.skipIf(!hasShared)('gives sharp\'s pixels on the real dataset PNGs (RGB and grey images, masks)', async () => {
    if (!hasShared) console.log(SHARED_ABSENT);
    let taken = 0;
    for (const category of readdirSync(sharedDatasets).sort()) {
      const masks = path.join(sharedDatasets, category, 'ground_truth');
      let firstMaskFolder: string[] = [];
      try {
        firstMaskFolder = readdirSync(masks).sort().slice(0, 1).map((d) => `ground_truth/${d}`);
      } catch {
        // no masks: the images alone
      }
      for (const folder of ['test/good', ...firstMaskFolder]) {
        let names: string[] = [];
        try {
          names = readdirSync(path.join(sharedDatasets, category, folder)).filter((f) => f.endsWith('.png')).sort().slice(0, 3);
        } catch {
          continue;
        }
        for (const name of names) {
          const bytes = readFileSync(path.join(sharedDatasets, category, folder, name));
          if (!simplePngHeader(bytes)) continue;  // 16-bit or palette: sharp's
          await expectSameAsSharp(bytes);
          taken++;
        }
      }
    }
    expect(taken).toBeGreaterThanOrEqual(12);  // RGB (metal_plate, screw with gAMA) and grey masks
  });
});
