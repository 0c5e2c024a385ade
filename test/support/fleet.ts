// A `reconpatch worker` process (the built dist/cli/main.js) for the fleet tests.
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';

import { repoRoot } from './data.js';

export interface WorkerProc {
  child: ChildProcess;
  /** Everything the worker wrote to stderr so far. */
  stderr: () => string;
}

/** `reconpatch worker --redis <redis> --store <store> <args>`, resolved once it says it is ready. */
export async function startWorkerProcess(redis: string, store: string, args: string[]): Promise<WorkerProc> {
  const cli = path.join(repoRoot, 'dist/cli/main.js');
  const child = spawn(process.execPath, [cli, 'worker', '--redis', redis, '--store', store, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setInterval(() => {
      if (err.includes(' ready on queue ')) {
        clearInterval(timer);
        resolve();
      } else if (child.exitCode !== null) {
        clearInterval(timer);
        reject(new Error(`worker exited with ${child.exitCode}:\n${err}`));
      }
    }, 50);
  });
  return { child, stderr: () => err };
}
