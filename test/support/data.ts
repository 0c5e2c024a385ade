// Shared test data: synthetic MVTec-layout datasets generated once per machine (deterministic,
// cached under the OS temp dir), and paths to ../shared material with clear skip reasons.
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { type Dataset, readMvtecDataset } from '../../lib/eval/dataset.js';
import { makeSyntheticDataset } from '../../lib/eval/synthetic.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const sharedRoot = path.resolve(repoRoot, '../shared');
export const sharedDatasets = path.join(sharedRoot, 'datasets');
export const sharedBackbones = path.join(sharedRoot, 'backbones');
export const hasShared = existsSync(sharedDatasets) && existsSync(sharedBackbones);
/** Printed by tests that skip because ../shared is absent. */
export const SHARED_ABSENT = `../shared is absent (looked in ${sharedRoot}): real-data tests skipped`;
if (!hasShared) console.warn(`[reconpatch tests] ${SHARED_ABSENT}`);

export const fixtures = path.join(repoRoot, 'test/fixtures');

type SynthOptions = Parameters<typeof makeSyntheticDataset>[1];

/** A synthetic dataset for these options, generated once (atomic rename) and then reused. */
export async function syntheticDataset(opts: SynthOptions = {}): Promise<Dataset> {
  const key = Object.entries(opts ?? {}).sort().map(([k, v]) => `${k}-${v}`).join('_') || 'default';
  const base = path.join(os.tmpdir(), 'reconpatch-test-data', `v2_${key}`);
  const category = opts?.category ?? 'synthetic';
  if (!existsSync(base)) {
    const tmp = `${base}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    await makeSyntheticDataset(tmp, { ...opts, category });
    try {
      renameSync(tmp, base);
    } catch {
      rmSync(tmp, { recursive: true, force: true }); // another process won the race
    }
  }
  return readMvtecDataset(base, category);
}

/** A fresh temporary directory for one test file. */
export function tempDir(name: string): string {
  const dir = path.join(os.tmpdir(), `reconpatch-${name}-${process.pid}-${Date.now()}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}
