/**
 * Errors as HTTP answers: `{ error: { code, message } }` with a stable code, a status that says
 * whose fault it was, and a message that never names a server path.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

import { ReconpatchError } from '../errors.js';

/** An error the service answers with: an HTTP status and a stable code. */
export class ServeError extends Error {
  readonly status: number;
  readonly code: string;
  readonly headers: Record<string, string>;
  constructor(status: number, code: string, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

// Engine and store errors a request caused are 4xx; the rest are 500.
const CLIENT_ERRORS: Record<string, number> = {
  ERR_INVALID_IMAGE: 400, ERR_INVALID_OPTION: 400, ERR_EMPTY_TRAINING_SET: 400, ERR_NOT_FITTED: 409, ERR_ABORTED: 499,
  ERR_MODEL_NOT_FOUND: 404, ERR_VERSION_NOT_FOUND: 404,
};

// fastify's own errors (body limits, parsing, validation) by their code.
const FASTIFY_ERRORS: Record<string, [number, string]> = {
  FST_ERR_CTP_BODY_TOO_LARGE: [413, 'ERR_BODY_TOO_LARGE'],
  FST_REQ_FILE_TOO_LARGE: [413, 'ERR_BODY_TOO_LARGE'],
  FST_FILES_LIMIT: [413, 'ERR_BODY_TOO_LARGE'],
  FST_PARTS_LIMIT: [413, 'ERR_BODY_TOO_LARGE'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, 'ERR_CONTENT_TYPE'],
  FST_INVALID_MULTIPART_CONTENT_TYPE: [415, 'ERR_CONTENT_TYPE'],
  FST_ERR_CTP_EMPTY_JSON_BODY: [400, 'ERR_BAD_REQUEST'],
  FST_ERR_CTP_INVALID_JSON_BODY: [400, 'ERR_BAD_REQUEST'],
  FST_ERR_CTP_EMPTY_TYPE: [415, 'ERR_CONTENT_TYPE'],
};

/** Any error -> status, code, a path-free message and extra headers. `hide` are server paths to cut out. */
export function toHttpError(err: unknown, hide: string[]): { status: number; code: string; message: string; headers: Record<string, string> } {
  const clean = (m: string) => hide.reduce((s, p) => (p ? s.split(p).join('<store>') : s), m);
  if (err instanceof ServeError) return { status: err.status, code: err.code, message: clean(err.message), headers: err.headers };
  const e = err as { code?: unknown; statusCode?: unknown; validation?: unknown; message?: unknown };
  const message = typeof e?.message === 'string' ? e.message : String(err);
  if (e?.validation) return { status: 400, code: 'ERR_BAD_REQUEST', message: clean(message), headers: {} };
  if (typeof e?.code === 'string' && FASTIFY_ERRORS[e.code]) {
    const [status, code] = FASTIFY_ERRORS[e.code];
    return { status, code, message: status === 413 ? 'request body over the limit' : clean(message), headers: status === 413 ? { connection: 'close' } : {} };
  }
  if (typeof e?.code === 'string' && CLIENT_ERRORS[e.code] && (err instanceof ReconpatchError || e.code.startsWith('ERR_')))
    return { status: CLIENT_ERRORS[e.code], code: e.code, message: clean(message), headers: {} };
  if (typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500)
    return { status: e.statusCode, code: 'ERR_BAD_REQUEST', message: clean(message), headers: {} };
  return { status: 500, code: 'ERR_INTERNAL', message: 'internal error (logged on the server with the request id)', headers: {} };
}

/** Constant-time comparison of an Authorization header with the configured token (hashes: equal lengths). */
export function tokenMatches(header: string | undefined, token: string): boolean {
  const presented = /^Bearer (.+)$/.exec(header ?? '')?.[1] ?? '';
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(token).digest();
  return timingSafeEqual(a, b) && presented.length > 0;
}

export const isLoopback = (address: string | undefined): boolean => /^(127\.|::1$|::ffff:127\.)/.test(address ?? '');
