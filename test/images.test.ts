// Every accepted input kind decodes to the same raw pixels: PNG, TIFF, WebP (lossless), BMP
// (8/24/32-bit, bottom-up and top-down), raw frames with alpha; JPEG to the right shape.
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';

import { toRawFrame } from '../lib/io/images.js';

const W = 5;
const H = 3;
const rgb = Uint8Array.from({ length: W * H * 3 }, (_, i) => (i * 37 + 11) & 255);

/** An independent BMP writer for the test: BITMAPINFOHEADER, uncompressed. */
function bmp(bpp: 8 | 24 | 32, topDown = false, pixels = rgb, channels = 3): Buffer {
  const stride = Math.ceil((W * bpp) / 32) * 4;
  const paletteBytes = bpp === 8 ? 256 * 4 : 0;
  const offset = 54 + paletteBytes;
  const buf = Buffer.alloc(offset + stride * H);
  buf.write('BM', 0);
  buf.writeUInt32LE(buf.length, 2);
  buf.writeUInt32LE(offset, 10);
  buf.writeUInt32LE(40, 14);
  buf.writeInt32LE(W, 18);
  buf.writeInt32LE(topDown ? -H : H, 22);
  buf.writeUInt16LE(1, 26);
  buf.writeUInt16LE(bpp, 28);
  if (bpp === 8) for (let i = 0; i < 256; i++) buf.writeUInt32LE(i * 0x010101, 54 + i * 4); // grey palette
  for (let y = 0; y < H; y++) {
    const row = offset + (topDown ? y : H - 1 - y) * stride;
    for (let x = 0; x < W; x++) {
      const p = (y * W + x) * channels;
      if (bpp === 8) buf[row + x] = pixels[p];
      else {
        buf[row + x * (bpp / 8)] = pixels[p + 2];
        buf[row + x * (bpp / 8) + 1] = pixels[p + 1];
        buf[row + x * (bpp / 8) + 2] = pixels[p];
      }
    }
  }
  return buf;
}

const raw = () => sharp(Buffer.from(rgb), { raw: { width: W, height: H, channels: 3 } });

describe('image inputs', () => {
  it('decodes PNG, TIFF and lossless WebP to the exact pixels', async () => {
    for (const encoded of [await raw().png().toBuffer(), await raw().tiff({ compression: 'lzw' }).toBuffer(), await raw().webp({ lossless: true }).toBuffer()]) {
      const f = await toRawFrame(encoded);
      expect([f.width, f.height, f.channels]).toEqual([W, H, 3]);
      expect(Array.from(f.data)).toEqual(Array.from(rgb));
    }
  });

  it('decodes JPEG to the right shape', async () => {
    const f = await toRawFrame(await raw().jpeg().toBuffer());
    expect([f.width, f.height, f.channels, f.data.length]).toEqual([W, H, 3, W * H * 3]);
  });

  it('decodes 24- and 32-bit BMP, bottom-up and top-down, to the exact pixels', async () => {
    for (const [bpp, topDown] of [[24, false], [24, true], [32, false], [32, true]] as const) {
      const f = await toRawFrame(bmp(bpp, topDown));
      expect([f.width, f.height, f.channels]).toEqual([W, H, 3]);
      expect(Array.from(f.data)).toEqual(Array.from(rgb));
    }
  });

  it('decodes an 8-bit grey-palette BMP to one channel', async () => {
    const grey = Uint8Array.from({ length: W * H }, (_, i) => i * 13);
    const f = await toRawFrame(bmp(8, false, grey, 1));
    expect([f.width, f.height, f.channels]).toEqual([W, H, 1]);
    expect(Array.from(f.data)).toEqual(Array.from(grey));
  });

  it('rejects truncated and unsupported BMPs with ERR_INVALID_IMAGE', async () => {
    await expect(toRawFrame(bmp(24).subarray(0, 60))).rejects.toMatchObject({ code: 'ERR_INVALID_IMAGE', message: /truncated/ });
    const rle = bmp(8);
    rle.writeUInt32LE(1, 30); // BI_RLE8
    await expect(toRawFrame(rle)).rejects.toMatchObject({ code: 'ERR_INVALID_IMAGE', message: /compression/ });
  });

  it('drops alpha from raw RGBA and grey+alpha frames', async () => {
    const rgba = new Uint8Array(W * H * 4);
    for (let p = 0; p < W * H; p++) rgba.set([...rgb.subarray(p * 3, p * 3 + 3), 99], p * 4);
    const f = await toRawFrame({ data: rgba, width: W, height: H, channels: 4 });
    expect(Array.from(f.data)).toEqual(Array.from(rgb));
    const ga = await toRawFrame({ data: Uint8Array.from([1, 255, 2, 255]), width: 2, height: 1, channels: 2 });
    expect([Array.from(ga.data), ga.channels]).toEqual([[1, 2], 1]);
  });
});
