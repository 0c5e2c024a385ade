/**
 * reconpatch's inspection service (`import { reconpatchPlugin } from 'reconpatch/serve'`): the
 * fastify plugin to register in your own app, or the whole app as `reconpatch serve` builds it.
 * @example
 * import Fastify from 'fastify';
 * import { reconpatchPlugin, RcpDirectoryStore } from 'reconpatch/serve';
 * const app = Fastify({ logger: true });
 * await app.register(reconpatchPlugin, { prefix: '/inspect', store: new RcpDirectoryStore('/srv/models'), token: process.env.TOKEN! });
 */
export { type ReconpatchPluginOptions, SERVE_LIMITS, type ServeLimits, reconpatchPlugin } from './plugin.js';
export { type ServerOptions, buildServer, drainOnSignals } from './server.js';
export type { ServeStore, ServeStoredVersion } from './store.js';
export { RcpDirectoryStore } from './rcp_dir_store.js';
export type { Verdict, Label } from './verdicts.js';
export type { UpdateJob } from './updates.js';
