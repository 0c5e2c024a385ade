// Hand-made PNG files for tests and benches that need headers sharp would refuse to write or take
// long to encode: any size, any bit depth, rows of zeros, a valid zlib stream and CRCs.
// Plain JavaScript so that child processes (fuzz_child.mjs) and bench/ scripts use it too;
// types in png.d.mts.
import { deflateSync } from 'node:zlib';

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  Buffer.from(data).copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/** A PNG whose header says width x height pixels (any 32-bit values), its data all zero. */
export function zeroPng(width, height, { bitDepth = 8, colorType = 2, rows = height, dataBytes, level = 9 } = {}) {
  const channels = colorType === 2 ? 3 : 1;
  const rowBytes = 1 + Math.ceil((width * channels * bitDepth) / 8);
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width >>> 0, 0);
  ihdr.writeUInt32BE(height >>> 0, 4);
  ihdr[8] = bitDepth;
  ihdr[9] = colorType;
  const raw = Buffer.alloc(dataBytes ?? rowBytes * rows); // filter byte 0 + zero pixels on every row
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([signature, chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw, { level })), chunk('IEND', new Uint8Array(0))]);
}

const CHANNELS = { 0: 1, 2: 3, 4: 2, 6: 4 };

function paeth(a, b, c) {
  const pa = Math.abs(b - c);
  const pb = Math.abs(a - c);
  const pc = Math.abs(a + b - 2 * c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/**
 * An 8-bit PNG of `pixels` (HWC, CHANNELS[colorType] per pixel), row y written with filter type
 * filters[y % filters.length] (0 none, 1 sub, 2 up, 3 average, 4 Paeth); `extra`: [type, bytes]
 * chunks placed before the first IDAT; `idatParts`: the zlib stream split over that many IDATs.
 */
export function encodePng(pixels, width, height, { colorType = 2, filters = [0], extra = [], idatParts = 1, level = 6 } = {}) {
  const bpp = CHANNELS[colorType];
  const stride = width * bpp;
  const raw = Buffer.alloc(height * (stride + 1));
  for (let y = 0; y < height; y++) {
    const type = filters[y % filters.length];
    raw[y * (stride + 1)] = type;
    for (let i = 0; i < stride; i++) {
      const x = pixels[y * stride + i];
      const a = i >= bpp ? pixels[y * stride + i - bpp] : 0;
      const b = y > 0 ? pixels[(y - 1) * stride + i] : 0;
      const c = y > 0 && i >= bpp ? pixels[(y - 1) * stride + i - bpp] : 0;
      const predictor = [0, a, b, (a + b) >> 1, paeth(a, b, c)][type];
      raw[y * (stride + 1) + 1 + i] = (x - predictor) & 255;
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = colorType;
  const stream = deflateSync(raw, { level });
  const step = Math.ceil(stream.length / idatParts);
  const idats = [];
  for (let at = 0; at < stream.length; at += step) idats.push(chunk('IDAT', stream.subarray(at, at + step)));
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([signature, chunk('IHDR', ihdr), ...extra.map(([type, bytes]) => chunk(type, bytes)), ...idats, chunk('IEND', new Uint8Array(0))]);
}
