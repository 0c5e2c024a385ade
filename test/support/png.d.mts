export interface PngOptions {
  /** 1, 2, 4, 8 or 16 (greyscale), 8 or 16 (RGB). Default 8. */
  bitDepth?: number;
  /** 0 greyscale, 2 RGB. Default 2. */
  colorType?: 0 | 2;
  /** Deflate only the first rows (a file whose header promises more than it holds). */
  rows?: number;
  /** Deflate exactly this many zero bytes instead of `rows` rows. */
  dataBytes?: number;
  /** zlib level (default 9; 1 is faster for very large images). */
  level?: number;
}

/** A PNG whose header says width x height pixels (any 32-bit values), its data all zero. */
export function zeroPng(width: number, height: number, options?: PngOptions): Buffer;

export interface EncodeOptions {
  /** 0 grey, 2 RGB, 4 grey+alpha, 6 RGBA. Default 2. */
  colorType?: 0 | 2 | 4 | 6;
  /** Filter type per row, cycled (0 none, 1 sub, 2 up, 3 average, 4 Paeth). Default [0]. */
  filters?: number[];
  /** [type, bytes] chunks before the first IDAT. */
  extra?: [string, Uint8Array][];
  /** The zlib stream split over this many IDAT chunks. Default 1. */
  idatParts?: number;
  /** zlib level. Default 6. */
  level?: number;
}

/** An 8-bit PNG of `pixels` (HWC), each row filtered as `filters` says. */
export function encodePng(pixels: Uint8Array, width: number, height: number, options?: EncodeOptions): Buffer;
