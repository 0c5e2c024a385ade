// Torchvision weights and expected taps, generated at test time by
// test/fixtures/make_torchvision_golden.py with Debian's python3-torchvision (never committed:
// the files are ~0.8 GB). Generated once per machine and script version under the OS temp dir.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { fixtures } from './data.js';

const PYTHON = '/usr/bin/python3';
const script = path.join(fixtures, 'make_torchvision_golden.py');

function torchvisionAvailable(): boolean {
  try {
    execFileSync(PYTHON, ['-c', 'import torch, torchvision'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export const hasTorchvision = torchvisionAvailable();
/** Printed by tests that skip because Python's torchvision is missing. */
export const TORCHVISION_ABSENT = `${PYTHON} cannot import torch and torchvision: install python3-torchvision (scripts/setup.sh does) to run the torchvision parity tests`;
if (!hasTorchvision) console.warn(`[reconpatch tests] ${TORCHVISION_ABSENT}`);

export interface TorchvisionGolden {
  dir: string;
  meta: { files: Record<string, number[]>; seconds: Record<string, number> };
  /** Seconds the generator took now (0 when reused). */
  generatedSeconds: number;
  file(name: string): string;
  f32(name: string): { data: Float32Array; shape: number[] };
}

/** The generated files, made now if this machine has none for this version of the script. */
export function torchvisionGolden(): TorchvisionGolden {
  const version = createHash('sha256').update(readFileSync(script)).digest('hex').slice(0, 12);
  const dir = path.join(os.tmpdir(), 'reconpatch-test-data', `torchvision_${version}`);
  let generatedSeconds = 0;
  if (!existsSync(path.join(dir, 'meta.json'))) {
    const tmp = `${dir}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    const started = performance.now();
    execFileSync(PYTHON, [script, tmp], { stdio: ['ignore', 'ignore', 'inherit'] });
    generatedSeconds = (performance.now() - started) / 1000;
    try {
      renameSync(tmp, dir);
    } catch {
      rmSync(tmp, { recursive: true, force: true }); // another process won the race
    }
  }
  const meta = JSON.parse(readFileSync(path.join(dir, 'meta.json'), 'utf8')) as TorchvisionGolden['meta'];
  return {
    dir,
    meta,
    generatedSeconds,
    file: (name) => path.join(dir, name),
    f32: (name) => {
      const b = readFileSync(path.join(dir, name));
      return { data: new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)), shape: meta.files[name] };
    },
  };
}
