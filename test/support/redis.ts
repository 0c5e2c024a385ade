// A real redis-server for one test file: a free loopback port, a temporary directory, no
// persistence; stopped by the file's afterAll. Without redis-server the fleet tests skip, except
// under CI, where its absence is a failure (.ci/run installs it).
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

function findRedisServer(): string | null {
  try {
    return execFileSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

export const redisServer = findRedisServer();
export const REDIS_ABSENT = 'redis-server is not on PATH: the fleet tests need it (install it with `bash scripts/setup.sh --test`, or `apt-get install redis-server`)';
if (!redisServer && process.env.CI) throw new Error(`${REDIS_ABSENT}; under CI this is a failure, not a skip`);
if (!redisServer) console.warn(`[reconpatch tests] ${REDIS_ABSENT}: skipped`);

/** A port free on 127.0.0.1 now (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export interface RedisHandle {
  url: string;
  port: number;
  process: ChildProcess;
  /** Kills redis-server, waits `downMs`, starts it again on the same port (empty). */
  restart(downMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** redis-server on `port` with `dir`, resolved once it accepts connections. */
async function spawnRedis(port: number, dir: string): Promise<ChildProcess> {
  const child = spawn(redisServer!, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start in 10 s:\n${log}`)), 10_000);
    child.stdout!.on('data', (d: Buffer) => {
      log += d.toString();
      if (log.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited with ${code}:\n${log}`));
    });
  });
  return child;
}

async function stopProcess(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  await exited;
}

/** Starts redis-server and resolves once it accepts connections. */
export async function startRedis(): Promise<RedisHandle> {
  if (!redisServer) throw new Error(REDIS_ABSENT);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'reconpatch-redis-'));
  const port = await freePort();
  const handle: RedisHandle = {
    url: `redis://127.0.0.1:${port}`, port, process: await spawnRedis(port, dir),
    // Killed without a word and started again, empty (no persistence), on the same port.
    restart: async (downMs = 0) => {
      await stopProcess(handle.process, 'SIGKILL');
      await new Promise((r) => setTimeout(r, downMs));
      handle.process = await spawnRedis(port, dir);
    },
    stop: async () => {
      await stopProcess(handle.process, 'SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return handle;
}
