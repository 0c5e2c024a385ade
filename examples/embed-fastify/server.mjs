// reconpatch's service inside an existing fastify app: the app keeps its own routes, logger and
// listen; the plugin adds scoring, verdicts, labels, updates, metrics, health and the review page
// under a prefix. Its parsers, auth hook and error handler stay inside the plugin.
//
//   TOKEN=$(openssl rand -hex 24) STORE=/srv/models node examples/embed-fastify/server.mjs
//   curl -XPOST 'localhost:8080/inspect/score?model=plate' -H "authorization: Bearer $TOKEN" \
//        -H 'content-type: image/png' --data-binary @frame.png
//   open http://localhost:8080/inspect/review/#token=$TOKEN
import { fileURLToPath } from 'node:url';

import Fastify from 'fastify';
// Only the package's public exports (a copy of this file elsewhere imports the installed package).
import { DirectoryModelStore, drainOnSignals, reconpatchPlugin } from 'reconpatch/serve';

/** The line's app: its own route, and the inspection service under /inspect. */
export async function createApp({ storeDir, token, logger = true, limits, requestTimeoutMs = 60_000 } = {}) {
  // Deadlines for slow clients (408): the whole request, and its head; node checks them every second.
  const app = Fastify({ logger, requestTimeout: requestTimeoutMs, http: { headersTimeout: Math.min(10_000, requestTimeoutMs), connectionsCheckingInterval: 1_000 } });
  app.get('/line/status', async () => ({ line: 'press-3', running: true }));
  await app.register(reconpatchPlugin, { prefix: '/inspect', store: new DirectoryModelStore(storeDir), token, hidePaths: [storeDir], limits });
  return app;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (!process.env.TOKEN || !process.env.STORE) {
    console.error('set TOKEN (at least 16 characters) and STORE (a model store directory: reconpatch models publish ... --store <dir>)');
    process.exit(2);
  }
  const app = await createApp({ storeDir: process.env.STORE, token: process.env.TOKEN });
  drainOnSignals(app); // SIGTERM: finish requests in flight, then exit 0
  await app.listen({ port: Number(process.env.PORT ?? 8080), host: process.env.HOST ?? '127.0.0.1' });
}
