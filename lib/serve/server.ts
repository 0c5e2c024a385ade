/**
 * `reconpatch serve`'s app: fastify with pino request logs (request ids), the plugin, and a drain
 * on SIGTERM / SIGINT: stop accepting, let requests in flight finish, close the models, exit 0
 * (exit 1 if that takes longer than `drainTimeoutMs`).
 */
import Fastify, { type FastifyInstance } from 'fastify';

import { type ReconpatchPluginOptions, SERVE_LIMITS, reconpatchPlugin } from './plugin.js';

export interface ServerOptions extends ReconpatchPluginOptions {
  /** pino logger options, or false for none (default: info level, JSON on stdout). */
  logger?: boolean | { level?: string };
  /** Whole-request deadline (head and body), ms: slow uploads are cut (408). */
  requestTimeoutMs?: number;
  /** The request head must arrive within this, ms (408). */
  headersTimeoutMs?: number;
}

/** Builds the app (not listening yet). */
export async function buildServer(options: ServerOptions): Promise<FastifyInstance> {
  const { logger = { level: 'info' }, requestTimeoutMs = 60_000, headersTimeoutMs = Math.min(10_000, requestTimeoutMs), ...plugin } = options;
  const app = Fastify({
    logger,
    requestTimeout: requestTimeoutMs,
    // node checks both deadlines every connectionsCheckingInterval (default 30 s: too coarse for them).
    http: { headersTimeout: headersTimeoutMs, connectionsCheckingInterval: Math.min(1_000, headersTimeoutMs) },
    connectionTimeout: requestTimeoutMs + 5_000,
    // The plugin's routes set their own (larger) limits for image bodies; JSON bodies are small.
    bodyLimit: 64 * 1024,
    // While draining: new requests on kept-alive connections get 503, idle connections close.
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    requestIdHeader: 'x-request-id',
  });
  // A request still in flight when the drain starts is answered with `connection: close`, so its
  // kept-alive connection does not hold the close open after the answer.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onSend', async (_req, reply) => {
    if (closing) reply.header('connection', 'close');
  });
  await app.register(reconpatchPlugin, { limits: { ...SERVE_LIMITS, ...plugin.limits }, ...plugin });
  return app;
}

/** Closes the app on the first SIGTERM / SIGINT (in-flight requests finish), then exits. */
export function drainOnSignals(app: FastifyInstance, drainTimeoutMs = 30_000): void {
  let draining = false;
  const drain = (signal: string) => {
    if (draining) return;
    draining = true;
    app.log.info({ signal }, 'draining: no new requests; waiting for those in flight');
    const timer = setTimeout(() => {
      app.log.error({ drainTimeoutMs }, 'drain timed out; exiting with requests still in flight');
      process.exit(1);
    }, drainTimeoutMs);
    timer.unref();
    app.close().then(
      () => {
        app.log.info('drained; exiting');
        process.exit(0);
      },
      (err: unknown) => {
        app.log.error({ err }, 'close failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => drain('SIGTERM'));
  process.on('SIGINT', () => drain('SIGINT'));
}
