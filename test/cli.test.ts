// The real `reconpatch` binary (built dist/cli/main.js) on a generated dataset: exit codes, JSON,
// a saved model scored from the command line.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { SHARED_ABSENT, hasShared, repoRoot, sharedBackbones, sharedDatasets, syntheticDataset, tempDir } from './support/data.js';

const run = promisify(execFile);
const cli = path.join(repoRoot, 'dist/cli/main.js');

async function reconpatch(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [cli, ...args], { maxBuffer: 1 << 24 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe('reconpatch CLI', () => {
  const dir = tempDir('cli');
  let data: Awaited<ReturnType<typeof syntheticDataset>>;
  beforeAll(async () => {
    if (!existsSync(cli)) await run('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: repoRoot });
    data = await syntheticDataset();
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('evaluates a dataset and prints one JSON line', async () => {
    const r = await reconpatch('eval', '--data', data.root, '--category', data.category, '--resize', 'none', '--crop', 'none', '--coreset', '0.25', '--json');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout.trim());
    expect(out).toMatchObject({ category: 'synthetic', backbone: 'random_cnn', head: false, coreset: 0.25, n_train: 24, n_test: 20 });
    expect(out.image_auroc).toBeGreaterThanOrEqual(0.9);
    expect(out.pixel_auroc).toBeGreaterThanOrEqual(0.85);
    for (const k of ['fit_seconds', 'score_ms_per_image', 'peak_rss_mb']) expect(out[k]).toBeGreaterThan(0);
  });

  it('runs the README demo: generate, fit, evaluate', async () => {
    const r = await reconpatch('demo', '--dir', path.join(dir, 'demo'), '--json');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout.trim());
    expect(out).toMatchObject({ category: 'synthetic', n_train: 24, n_test: 20 });
    expect(out.image_auroc).toBeGreaterThanOrEqual(0.9);
  });

  it('fits to a model file and scores images with it', async () => {
    const model = path.join(dir, 'm.rcp');
    const fit = await reconpatch('fit', path.join(data.root, data.category, 'train/good'), '-o', model, '--resize', 'none', '--crop', 'none', '--json');
    expect(fit.code).toBe(0);
    expect(existsSync(model)).toBe(true);
    const good = data.test.filter((t) => t.label === 0).map((t) => t.path);
    const bad = data.test.filter((t) => t.label === 1).map((t) => t.path);
    const score = await reconpatch('score', model, ...good, ...bad, '--json');
    expect(score.code).toBe(0);
    const lines = score.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.path)).toEqual([...good, ...bad]);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const scores = lines.map((l) => l.score as number);
    expect(mean(scores.slice(good.length))).toBeGreaterThan(mean(scores.slice(0, good.length))); // defects score higher
  });

  it('writes heatmaps, a scores CSV, and shows model info', async () => {
    const model = path.join(dir, 'cal.rcp');
    const glob = path.join(data.root, data.category, 'train/good', '0*.png');
    const fit = await reconpatch('fit', glob, '-o', model, '--resize', 'none', '--crop', 'none', '--json');
    expect(fit.code).toBe(0);
    expect(JSON.parse(fit.stdout)).toMatchObject({ images: 21, calibrationImages: 3 }); // the glob matched all 24
    const heatmaps = path.join(dir, 'heatmaps');
    const defect = data.test.find((t) => t.label === 1) as { path: string };
    const r = await reconpatch('score', model, defect.path, '--heatmaps', heatmaps, '--json');
    expect(r.code).toBe(0);
    const row = JSON.parse(r.stdout);
    expect(row.normalizedScore).toBeGreaterThanOrEqual(0);
    expect(typeof row.isAnomaly).toBe('boolean');
    const meta = await sharp(row.heatmap).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 96, 96]);
    const stats = await sharp(row.heatmap).stats();
    expect(stats.channels[0].stdev).toBeGreaterThan(5); // not blank

    const info = JSON.parse((await reconpatch('info', model)).stdout);
    expect(info.calibration.images).toBe(3);
    expect(info.options.backbone).toBe('random_cnn');

    const csv = path.join(dir, 'scores.csv');
    const e = await reconpatch('eval', '--data', data.root, '--category', data.category, '--protocol', 'patchcore', '--scores-out', csv, '--json');
    expect(e.code).toBe(0);
    const lines = readFileSync(csv, 'utf8').trim().split('\n');
    expect(lines[0]).toBe('path,label,score');
    expect(lines).toHaveLength(1 + data.test.length);
    const [p, label, score] = lines[1].split(',');
    expect(JSON.parse(p)).toBe(data.test[0].path);
    expect(Number(label)).toBe(data.test[0].label);
    expect(Number(score)).toBeGreaterThan(0);
  });

  it.skipIf(!hasShared)(`evaluates real data with a pretrained backbone (${hasShared ? 'metal_plate' : SHARED_ABSENT})`, async () => {
    const r = await reconpatch('eval', '--data', sharedDatasets, '--category', 'metal_plate', '--protocol', 'patchcore',
      '--backbone', path.join(sharedBackbones, 'mobilenet_v1_imagenet.pt'), '--train-limit', '16', '--coreset', '0.02', '--json');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ category: 'metal_plate', backbone: 'mobilenet_v1_imagenet', n_train: 16, n_test: 97, missing_masks: 0 });
    expect(out.image_auroc).toBeGreaterThan(0.85);
    expect(out.pixel_auroc).toBeGreaterThan(0.95);
    expect(out.pro).toBeGreaterThan(0.8);
  });

  it('fails with a non-zero exit and a coded message on bad input', async () => {
    const r = await reconpatch('score', path.join(dir, 'missing.rcp'), data.test[0].path);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ERR_MODEL_FILE/);
    expect((await reconpatch('frobnicate')).code).toBe(2);
    const help = await reconpatch('eval', '--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/--category/);
  });
});
