export interface ZipEntrySpec {
  /** The entry name, written as given (`../x`, `/abs`, `a\\b` included). */
  name: string;
  /** Its content (a string is UTF-8). Default empty. */
  data?: Buffer | string;
  /** 'store' (default) or 'deflate' (raw deflate, method 8). */
  method?: 'store' | 'deflate';
  /** The uncompressed size the headers declare (default: the real one). */
  declaredSize?: number;
  /** The CRC-32 the headers declare (default: the real one). */
  crc?: number;
  /** Unix mode with type bits for the external attributes (default 0o100644, or 0o040755 for `name/`); 0o120777 is a symlink. */
  mode?: number;
}

/** CRC-32 of the bytes. */
export function crc32(bytes: Uint8Array): number;

/** A zip archive of the entries, in order, made by "Unix" so that modes count. */
export function makeZip(entries: ZipEntrySpec[]): Buffer;
