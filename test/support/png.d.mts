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
