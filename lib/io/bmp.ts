/**
 * A small BMP decoder: sharp's libvips build has no BMP loader, and industrial cameras often
 * write BMP. Handles uncompressed Windows bitmaps (BITMAPINFOHEADER and later): 8-bit palette
 * (grey palettes come out as 1 channel), 24-bit, and 32-bit (BI_RGB or BI_BITFIELDS with the usual
 * masks), bottom-up or top-down. Anything else throws, with what was found.
 */

export interface DecodedBmp {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 3;
}

export function isBmp(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x42 && bytes[1] === 0x4d; // "BM"
}

/** Width and height from a BMP's header (before decoding), or null when the header is cut short. */
export function bmpSize(bytes: Uint8Array): { width: number; height: number } | null {
  if (bytes.length < 26) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { width: view.getInt32(18, true), height: Math.abs(view.getInt32(22, true)) };
}

export function decodeBmp(bytes: Uint8Array): DecodedBmp {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const need = (n: number, what: string) => {
    if (bytes.length < n) throw new Error(`BMP is truncated (${what})`);
  };
  need(54, 'header');
  const dataOffset = view.getUint32(10, true);
  const headerSize = view.getUint32(14, true);
  if (headerSize < 40) throw new Error(`unsupported BMP header of ${headerSize} bytes (OS/2 bitmaps are not supported)`);
  const width = view.getInt32(18, true);
  const rawHeight = view.getInt32(22, true);
  const bpp = view.getUint16(28, true);
  const compression = view.getUint32(30, true);
  const height = Math.abs(rawHeight);
  const topDown = rawHeight < 0;
  if (width <= 0 || height === 0 || width * height > 268402689) throw new Error(`BMP has an invalid size ${width}x${height}`);
  if (!(compression === 0 || (compression === 3 && bpp === 32)))
    throw new Error(`unsupported BMP compression ${compression} (only uncompressed bitmaps are read)`);
  if (bpp !== 8 && bpp !== 24 && bpp !== 32) throw new Error(`unsupported BMP depth of ${bpp} bits`);
  const stride = Math.ceil((width * bpp) / 32) * 4;
  need(dataOffset + stride * height, 'pixel data');

  let palette: Uint8Array | null = null; // [r, g, b] per entry
  let grey = false;
  if (bpp === 8) {
    const colours = view.getUint32(46, true) || 256;
    const at = 14 + headerSize;
    need(at + colours * 4, 'palette');
    palette = new Uint8Array(256 * 3);
    grey = true;
    for (let i = 0; i < colours && i < 256; i++) {
      const b = bytes[at + i * 4];
      const g = bytes[at + i * 4 + 1];
      const r = bytes[at + i * 4 + 2];
      palette.set([r, g, b], i * 3);
      if (r !== g || g !== b) grey = false;
    }
  }
  const channels: 1 | 3 = grey ? 1 : 3;
  const out = new Uint8Array(width * height * channels);
  for (let y = 0; y < height; y++) {
    const src = dataOffset + (topDown ? y : height - 1 - y) * stride;
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * channels;
      if (palette) {
        const i = bytes[src + x] * 3;
        if (grey) out[o] = palette[i];
        else out.set(palette.subarray(i, i + 3), o);
      } else {
        const p = src + x * (bpp / 8); // stored B, G, R(, A)
        out[o] = bytes[p + 2];
        out[o + 1] = bytes[p + 1];
        out[o + 2] = bytes[p];
      }
    }
  }
  return { data: out, width, height, channels };
}
