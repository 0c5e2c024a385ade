/**
 * Typed errors. Every error reconpatch throws is a {@link ReconpatchError} with a stable `code`.
 */

/**
 * Stable error codes. Match on these, not on messages.
 * @example
 * const retryable = (code: ErrorCode) => code === 'ERR_IO' || code === 'ERR_ABORTED';
 */
export type ErrorCode =
  | 'ERR_INVALID_OPTION'
  | 'ERR_INVALID_IMAGE'
  | 'ERR_NOT_FITTED'
  | 'ERR_ABORTED'
  | 'ERR_MODEL_FILE'
  | 'ERR_BACKBONE'
  | 'ERR_EMPTY_TRAINING_SET'
  | 'ERR_DEVICE_UNAVAILABLE'
  | 'ERR_IO'
  | 'ERR_NATIVE_LOAD'
  | 'ERR_LIBTORCH'
  | 'ERR_INPUT'
  | 'ERR_CALLBACK'
  | 'ERR_WEIGHTS_MISSING'
  | 'ERR_WEIGHTS_CHECKSUM'
  | 'ERR_DOWNLOAD'
  | 'ERR_DISPOSED'
  | 'ERR_MODEL_NOT_FOUND'
  | 'ERR_INTERNAL';

const KNOWN = new Set<string>([
  'ERR_INVALID_OPTION', 'ERR_INVALID_IMAGE', 'ERR_NOT_FITTED', 'ERR_ABORTED', 'ERR_MODEL_FILE',
  'ERR_BACKBONE', 'ERR_EMPTY_TRAINING_SET', 'ERR_DEVICE_UNAVAILABLE', 'ERR_IO',
  'ERR_NATIVE_LOAD', 'ERR_LIBTORCH', 'ERR_INPUT', 'ERR_CALLBACK', 'ERR_INTERNAL', 'ERR_WEIGHTS_MISSING', 'ERR_WEIGHTS_CHECKSUM', 'ERR_DOWNLOAD', 'ERR_DISPOSED', 'ERR_MODEL_NOT_FOUND',
]);

/**
 * An error from reconpatch.
 * @example
 * try { await Engine.load('part.rcp'); }
 * catch (e) { if (e instanceof ReconpatchError && e.code === 'ERR_MODEL_FILE') console.error('refit:', e.message); }
 */
export class ReconpatchError extends Error {
  /**
   * Stable, machine-readable: what went wrong.
   * @example
   * const code = await Engine.create({ backbone: 'missing.pt' }).then(() => null, (e: ReconpatchError) => e.code); // 'ERR_INVALID_OPTION': no such file
   */
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ReconpatchError';
    this.code = code;
  }
}

/**
 * Re-throws an error from the native addon (or anywhere below the public API) as a
 * ReconpatchError whose stack is the caller's (captured before the async call, as sharp does).
 */
export function rethrow(err: unknown, callerStack: Error, context?: string): never {
  if (err instanceof ReconpatchError && !context) {
    err.stack = `${err.name} [${err.code}]: ${err.message}\n${stackFrames(callerStack)}`;
    throw err;
  }
  const raw = err as { code?: unknown; message?: unknown };
  const code = typeof raw?.code === 'string' && KNOWN.has(raw.code) ? (raw.code as ErrorCode) : 'ERR_INTERNAL';
  const message = typeof raw?.message === 'string' ? raw.message : String(err);
  const e = new ReconpatchError(code, context ? `${context}: ${message}` : message, { cause: err });
  e.stack = `${e.name} [${e.code}]: ${e.message}\n${stackFrames(callerStack)}`;
  throw e;
}

function stackFrames(e: Error): string {
  return (e.stack ?? '').split('\n').slice(1).join('\n');
}
