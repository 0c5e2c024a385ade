// Evaluation on a folder of good images only (lib/eval/good_only.ts, `reconpatch eval --good`):
// held-out images and synthetic defects painted on them, measured at the deployed threshold.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';

import { describe, expect, it } from 'vitest';

import { GOOD_ONLY_MIN_IMAGES, evaluateGoodOnly } from '../lib/eval/index.js';
import { ReconpatchError } from '../lib/index.js';
import { repoRoot, syntheticDataset } from './support/data.js';

const run = promisify(execFile);
const cli = path.join(repoRoot, 'dist/cli/main.js');

describe('evaluation on good images only', () => {
  it('holds out a share, fits and calibrates on the rest, and measures synthetic recall at the threshold', async () => {
    const data = await syntheticDataset();
    const dir = path.dirname(data.train[0]);
    const row = await evaluateGoodOnly(dir, { head: false, backbone: 'random_cnn', seed: 0 });
    expect(row.n_fit + row.n_held_out).toBe(data.train.length);
    expect(row.n_held_out).toBe(Math.max(4, Math.round(0.2 * data.train.length)));
    expect(row.n_synthetic).toBe(18 * row.n_held_out); // 6 kinds x 3 sizes
    expect(row.threshold_method).toBe('leave-one-out');
    expect(row.synthetic_flagged / row.n_synthetic).toBe(row.synthetic_recall);
    // The synthetic defects are visible to even a random CNN; larger ones more so.
    expect(row.synthetic_auroc).toBeGreaterThan(0.8);
    expect(row.recall_by_size['0.18']).toBeGreaterThan(row.recall_by_size['0.05']);
    expect(Object.keys(row.recall_by_kind)).toEqual(['scratch', 'stain', 'noise', 'blur', 'paste', 'hole']);
    expect(row.good_flagged).toBeLessThanOrEqual(1);
    // Seeded: the same folder and seed give the same numbers.
    const again = await evaluateGoodOnly(dir, { head: false, backbone: 'random_cnn', seed: 0 });
    expect([again.synthetic_recall, again.synthetic_auroc]).toEqual([row.synthetic_recall, row.synthetic_auroc]);
  });

  it('refuses too few images, and flags that do not apply (CLI)', async () => {
    const data = await syntheticDataset();
    const few = path.join(path.dirname(data.train[0]), path.basename(data.train[0]));
    const e = await evaluateGoodOnly(few, { head: false, backbone: 'random_cnn' }).then(() => null, (err: unknown) => err);
    expect(e).toBeInstanceOf(ReconpatchError);
    expect([(e as ReconpatchError).code, (e as ReconpatchError).message]).toEqual(['ERR_EMPTY_TRAINING_SET', expect.stringContaining(`at least ${GOOD_ONLY_MIN_IMAGES} images`)]);
    const cliError = await run(process.execPath, [cli, 'eval', '--good', path.dirname(data.train[0]), '--data', 'x', '--backbone', 'random_cnn', '--no-head', '--json'])
      .then(() => null, (err: { code: number; stdout: string }) => err);
    expect(cliError?.code).toBe(2);
    expect(JSON.parse(cliError!.stdout.trim()).error.code).toBe('ERR_INVALID_OPTION');
  });
});
