/**
 * reconpatch's inspection service (`import { reconpatchPlugin } from 'reconpatch/serve'`): the
 * fastify plugin to register in your own app, or the whole app as `reconpatch serve` builds it.
 * @example
 * import Fastify from 'fastify';
 * import { DirectoryModelStore, reconpatchPlugin } from 'reconpatch/serve';
 * const app = Fastify({ logger: true });
 * await app.register(reconpatchPlugin, { prefix: '/inspect', store: new DirectoryModelStore('/srv/models'), token: process.env.TOKEN! });
 */
export { type ReconpatchPluginOptions, SERVE_LIMITS, type ServeLimits, reconpatchPlugin } from './plugin.js';
export { type ServerOptions, buildServer, drainOnSignals } from './server.js';
export { DirectoryModelStore, type ModelStore } from '../fleet/store.js';
export type { Verdict, Label } from './verdicts.js';
export type { UpdateJob } from './updates.js';
