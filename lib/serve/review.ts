/**
 * The review page's files (lib/serve/review/, copied to dist/serve/review/ by the build): read
 * once at start into memory and served by name from that fixed set, so no request path ever
 * reaches the file system. They hold no data (the page asks the API with the token), so they
 * need no token.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import type { FastifyInstance } from 'fastify';

const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };

export async function registerReview(app: FastifyInstance, open: { config: { open: boolean } }): Promise<void> {
  const dir = fileURLToPath(new URL('./review/', import.meta.url));
  const files = new Map<string, { type: string; body: Buffer }>();
  for (const name of readdirSync(dir)) {
    const ext = name.slice(name.lastIndexOf('.'));
    if (TYPES[ext]) files.set(name, { type: TYPES[ext], body: readFileSync(dir + name) });
  }
  // A strict policy: the page's own scripts and styles only; images from the API arrive as blobs.
  const csp = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";
  const send = (name: string) => {
    const f = files.get(name);
    return f && { type: f.type, body: f.body };
  };
  const base = app.prefix.endsWith('/') ? app.prefix : `${app.prefix}/`;
  app.get('/', open, async (_req, reply) => reply.redirect(`${base}review/`));
  app.get('/review', open, async (_req, reply) => reply.redirect(`${base}review/`));
  app.get('/review/', open, async (_req, reply) => reply.type(TYPES['.html']).header('content-security-policy', csp).send(send('index.html')!.body));
  app.get('/review/:file', { ...open, schema: { params: { type: 'object', properties: { file: { type: 'string', pattern: '^[a-z0-9_-]+\\.(js|css|html)$' } } } } },
    async (req, reply) => {
      const f = send((req.params as { file: string }).file);
      if (!f) return reply.code(404).send({ error: { code: 'ERR_NOT_FOUND', message: 'no such file of the review page' } });
      return reply.type(f.type).header('content-security-policy', csp).header('cache-control', 'no-cache').send(f.body);
    });
}
