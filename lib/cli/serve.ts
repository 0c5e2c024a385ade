/** `reconpatch serve`: the inspection service (lib/serve) over a model store. */
import { realpathSync } from 'node:fs';

import { ReconpatchError } from '../errors.js';
import { DirectoryModelStore } from '../fleet/store.js';
import { isLoopback } from '../serve/http_errors.js';
import { buildServer, drainOnSignals } from '../serve/server.js';
import { numberFlag, parseCommandArgs } from './args.js';
import { help } from './output.js';

const SERVE_HELP = `reconpatch serve --store <dir> --token <t> [--port <p>] [--host <addr>] [options]

Serves the models of a model store by id: POST /score?model=<id> (the image as the body, or
multipart), recent verdicts, labels, updates from images labelled good (published as new
versions, picked up without a restart), /metrics (Prometheus), /health/live, /health/ready and
the review page for operators at /review/ (open it as http://<host>:<port>/review/#token=<t>).
SIGTERM / SIGINT: stop accepting, finish requests in flight, exit 0.
  --store <dir>               the model store (models by id)
  --token <t>                 bearer token, at least 16 characters (or RECONPATCH_TOKEN in the environment)
  --no-token                  no token: allowed only with a loopback --host, serves loopback clients only
  --port <p>                  default 8080
  --host <addr>               default 127.0.0.1 (0.0.0.0 to serve other machines: a token is then required)
  --max-image-bytes <n>       largest image body (default 33554432)
  --max-pixels <n>            largest image in pixels (default 40000000)
  --score-timeout <ms>        a slower score answers 503 ERR_TIMEOUT (default 60000)
  --drain-timeout <ms>        longest wait for requests in flight at shutdown (default 30000)
  --threads <n>               libtorch threads per model
  --log-level <level>         pino level (default info; logs are JSON lines on stdout)`;

export async function serveCommand(rest: string[]): Promise<number> {
  const { values } = parseCommandArgs({
    args: rest, allowPositionals: false,
    options: {
      help: { type: 'boolean', short: 'h' }, store: { type: 'string' }, token: { type: 'string' }, 'no-token': { type: 'boolean' },
      port: { type: 'string' }, host: { type: 'string' }, 'max-image-bytes': { type: 'string' }, 'max-pixels': { type: 'string' },
      'score-timeout': { type: 'string' }, 'drain-timeout': { type: 'string' }, threads: { type: 'string' }, 'log-level': { type: 'string' },
    },
  });
  if (values.help || !values.store) return help(SERVE_HELP, !values.help);
  const host = values.host ?? '127.0.0.1';
  const token = values.token ?? process.env.RECONPATCH_TOKEN ?? null;
  if (!token && !values['no-token'])
    throw new ReconpatchError('ERR_INVALID_OPTION', 'serve needs --token <t> (or RECONPATCH_TOKEN); --no-token is allowed on a loopback --host only');
  if (!token && !(isLoopback(host) || host === 'localhost'))
    throw new ReconpatchError('ERR_INVALID_OPTION', `--no-token is allowed on a loopback --host only, not '${host}'; set --token to serve other machines`);
  const port = numberFlag('port', values.port) ?? 8080;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ReconpatchError('ERR_INVALID_OPTION', `--port must be 0-65535, got '${values.port}'`);
  let storeDir: string;
  try {
    storeDir = realpathSync(values.store);
  } catch {
    throw new ReconpatchError('ERR_INVALID_OPTION', `--store '${values.store}' is not a directory`);
  }
  const limits = Object.fromEntries(
    [['maxImageBytes', 'max-image-bytes'], ['maxPixels', 'max-pixels'], ['scoreTimeoutMs', 'score-timeout']]
      .map(([key, flag]) => [key, numberFlag(flag, values[flag as keyof typeof values])])
      .filter(([, v]) => v !== undefined),
  );
  const app = await buildServer({
    store: new DirectoryModelStore(storeDir), token, allowNoTokenOnLoopback: !token, limits, hidePaths: [storeDir, values.store],
    threads: numberFlag('threads', values.threads), logger: { level: values['log-level'] ?? 'info' },
  });
  drainOnSignals(app, numberFlag('drain-timeout', values['drain-timeout']) ?? 30_000);
  const address = await app.listen({ port, host });
  app.log.info({ address, review: `${address}/review/` }, 'reconpatch serve listening');
  // Runs until a signal: the drain exits the process.
  return new Promise<number>(() => {});
}
