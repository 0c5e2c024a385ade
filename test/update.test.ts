// Models that grow: update() takes new good images into a fitted (or loaded, also older-format)
// model, adding only patches outside the bank's coverage; fits over inputs of any length stay
// within a staged-patch budget (merge and reduce). Abort or failure leaves the model as it was.
import { execFile } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine, type EngineOptions, Ensemble, ReconpatchError } from '../lib/index.js';
import { MIN_STAGED_PATCHES, checkMaxStagedPatches, stagedBudgetWarning } from '../lib/engine/staged_fit.js';
import { auroc } from '../lib/eval/metrics.js';
import { repoRoot, syntheticDataset, tempDir } from './support/data.js';
import { buildModel, parseModel } from './support/model_file.mjs';

const execFileAsync = promisify(execFile);
const base: EngineOptions = { head: false, backbone: 'random_cnn', resize: null, crop: null, coreset: { ratio: 0.1 }, seed: 4 };

describe('the staged-patch budget rule', () => {
  it('takes 0 or at least MIN_STAGED_PATCHES; warns when the budget is under two images\' patches', () => {
    expect([0, 512, 100_000].map(checkMaxStagedPatches)).toEqual([0, 512, 100_000]);
    for (const bad of [-1, 1, 2, 511, 1024.5, '4096', null]) expect(() => checkMaxStagedPatches(bad)).toThrow(/at least 512/);
    expect(stagedBudgetWarning(0, 1_000_000, 10)).toEqual([]);
    expect(stagedBudgetWarning(4096, 20_480, 20)).toEqual([]); // 1024 per image: room for 4
    expect(stagedBudgetWarning(1024, 40_960, 10)[0]).toMatch(/less than two images' patches \(4096 per image here\).*at least 8192/);
  });
});

describe('update and bounded fits', () => {
  const dir = tempDir('update');
  let first: string[];
  let second: string[];
  let test: { path: string; label: number }[];

  beforeAll(async () => {
    const data = await syntheticDataset();
    const half = Math.floor(data.train.length / 2);
    first = data.train.slice(0, half);
    second = data.train.slice(half);
    test = data.test;
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function aurocOf(engine: Engine | Ensemble): Promise<number> {
    const results = await engine.scoreMany(test.map((t) => t.path));
    return auroc(results.map((r) => r.score), test.map((t) => t.label));
  }

  it('grows with new images, reports the growth, and separates defects as well as one fit on all', async () => {
    const engine = await Engine.create(base);
    await engine.fit(first);
    const before = engine.info;
    const summary = await engine.update(second);
    const after = engine.info;
    expect(summary.addedRows).toBeGreaterThan(0);
    expect(after.bankRows).toBe(before.bankRows + summary.addedRows);
    expect(summary.bankRows).toBe(after.bankRows);
    expect(after.updates).toBe(1);
    expect(after.updateRows).toBe(summary.addedRows);
    expect(after.trainImages).toBe(before.trainImages + summary.images);
    // Issue 16: every new image stays in the update and is scored against the grown bank without
    // its own patches; that evidence pools with the fit's (stored in the calibration).
    expect(summary.images).toBe(second.length);
    expect(summary.calibrationImages).toBe(Math.min(second.length, 100));
    expect(before.calibration).toMatchObject({ method: 'leave-one-out' });
    expect(after.calibration).toMatchObject({ method: 'leave-one-out', images: before.calibration!.images + summary.calibrationImages });
    expect(after.calibration!.evidence).toHaveLength(after.calibration!.images);
    expect(summary.calibration).toEqual(after.calibration);

    const all = await Engine.create(base);
    await all.fit([...first, ...second]);
    const [grown, whole] = [await aurocOf(engine), await aurocOf(all)];
    console.info(`[update] image AUROC fit+update ${grown.toFixed(4)} vs one fit ${whole.toFixed(4)}; bank ${after.bankRows} vs ${all.info.bankRows} rows`);
    expect(grown).toBeGreaterThanOrEqual(whole - 0.02);
  });

  it('images already seen add (almost) nothing; an abort or a throwing callback changes nothing', async () => {
    const engine = await Engine.create({ ...base, calibration: false });
    await engine.fit(first);
    const rows = engine.info.bankRows;
    const again = await engine.update(first);
    console.info(`[update] the fit's own images again: +${again.addedRows} rows on ${rows}`);
    expect(again.addedRows).toBeLessThanOrEqual(Math.ceil(0.01 * rows));

    const state = engine.info;
    const probe = (await engine.score(test[0].path)).score;
    const controller = new AbortController();
    const aborted = await engine.update(second, { signal: controller.signal, onProgress: (p) => { if (p.stage === 'coreset') controller.abort(); } }).catch((e: unknown) => e);
    expect((aborted as ReconpatchError).code).toBe('ERR_ABORTED');
    expect((aborted as ReconpatchError).message).toContain('update was aborted');
    const thrown = await engine.update(second, { onProgress: () => { throw new Error('no'); } }).catch((e: unknown) => e);
    expect((thrown as ReconpatchError).code).toBe('ERR_CALLBACK');
    expect(engine.info.bankRows).toBe(state.bankRows);
    expect(engine.info.updates).toBe(state.updates);
    expect((await engine.score(test[0].path)).score).toBe(probe);

    const fresh = await Engine.create(base);
    expect(((await fresh.update(second).catch((e: unknown) => e)) as ReconpatchError).code).toBe('ERR_NOT_FITTED');
  });

  it('updates a loaded model, also one saved before the radius was kept (format 2), and saves the growth', async () => {
    const engine = await Engine.create(base);
    await engine.fit(first);
    const file = path.join(dir, 'part.rcp');
    await engine.save(file);
    const old = path.join(dir, 'old.rcp');
    writeFileSync(old, asFormat2(readFileSync(file)));
    for (const f of [file, old]) {
      const loaded = await Engine.load(f);
      const s = await loaded.update(second);
      expect(s.addedRows, f).toBeGreaterThan(0);
      const out = path.join(dir, `updated-${path.basename(f)}`);
      await loaded.save(out);
      const back = await Engine.load(out);
      expect(back.info.bankRows).toBe(loaded.info.bankRows);
      expect(back.info.updates).toBe(1);
      expect((await back.score(test[0].path)).score).toBe((await loaded.score(test[0].path)).score);
    }
  });

  it('keeps a fit within a staged-patch budget (merge and reduce) at the quality of an unbounded fit', async () => {
    const unbounded = await Engine.create({ ...base, calibration: false });
    const u = await unbounded.fit([...first, ...second]);
    const budget = Math.floor(u.patches / 4);
    const bounded = await Engine.create({ ...base, calibration: false });
    const b = await bounded.fit([...first, ...second], { maxStagedPatches: budget });
    expect(b.patches).toBe(u.patches); // every patch was seen
    expect(b.bankRows).toBeLessThanOrEqual(budget);
    const [qb, qu] = [await aurocOf(bounded), await aurocOf(unbounded)];
    console.info(`[update] budget ${budget} of ${u.patches} patches: image AUROC ${qb.toFixed(4)} vs unbounded ${qu.toFixed(4)}; bank ${b.bankRows} vs ${u.bankRows}`);
    expect(qb).toBeGreaterThanOrEqual(qu - 0.02);
    expect(((await bounded.fit(first, { maxStagedPatches: -1 }).catch((e: unknown) => e)) as ReconpatchError).code).toBe('ERR_INVALID_OPTION');
    // Too small to mean anything (2 built a 1-row bank, issue 26): refused, saying the minimum and why.
    for (const tiny of [1, 2, MIN_STAGED_PATCHES - 1]) {
      const e = (await bounded.fit(first, { maxStagedPatches: tiny }).catch((err: unknown) => err)) as ReconpatchError;
      expect([e.code, e.message]).toEqual(['ERR_INVALID_OPTION', expect.stringMatching(/at least 512.*each reduce keeps half/)]);
    }
    const ensemble = await Ensemble.create({ members: [{ ...base, seed: 1 }, { ...base, seed: 2 }] });
    expect(((await ensemble.fit(first, { maxStagedPatches: 2 }).catch((e: unknown) => e)) as ReconpatchError).code).toBe('ERR_INVALID_OPTION');
    // With calibration, a bounded fit holds 10% out (its reduced images cannot be scored leave-one-out).
    const calibrated = await Engine.create(base);
    const c = await calibrated.fit([...first, ...second], { maxStagedPatches: budget });
    expect(c.calibration).toMatchObject({ method: 'holdout', images: c.calibrationImages });
    expect(c.images + c.calibrationImages).toBe(first.length + second.length);
  });

  it('updates every member of an ensemble, keeping its normalisers', async () => {
    const ensemble = await Ensemble.create({ members: [{ ...base, seed: 1 }, { ...base, seed: 2 }] });
    await ensemble.fit(first);
    const ranges = ensemble.info.ranges;
    const before = ensemble.info.calibration!;
    const s = await ensemble.update(second);
    expect(s.addedRows).toBeGreaterThan(0);
    expect(ensemble.info.ranges).toEqual(ranges);
    // The new images' fused leave-one-out evidence (with the fit's normalisers) pooled with the fit's.
    expect(s.calibrationImages).toBe(second.length);
    expect(ensemble.info.calibration).toMatchObject({ method: 'leave-one-out', images: before.images + second.length });
    expect(ensemble.info.members.every((m) => m.updates === 1)).toBe(true);
    expect(await aurocOf(ensemble)).toBeGreaterThan(0.9);
  });

  it('reconpatch update --in-place takes a folder into the model file', async () => {
    const engine = await Engine.create(base);
    await engine.fit(first);
    const file = path.join(dir, 'cli.rcp');
    await engine.save(file);
    const folder = path.dirname(second[0]);
    const { stdout } = await execFileAsync(process.execPath, [path.join(repoRoot, 'dist/cli/main.js'), 'update', file, folder, '--in-place', '--json']);
    const row = JSON.parse(stdout.trim()) as { model: string; addedRows: number; bankRows: number };
    expect(row.model).toBe(file);
    expect(row.addedRows).toBeGreaterThanOrEqual(0);
    expect((await Engine.load(file)).info.updates).toBe(1);
  });
});

/** A model file as format 2 wrote it: no coreset radius, no update counts in STAT, version 2. */
function asFormat2(bytes: Buffer): Buffer {
  const trainLinesOnly = (p: Buffer) => Buffer.from(p.toString('utf8').split('\n').filter((l) => /^train/.test(l)).join('\n') + '\n');
  return buildModel(parseModel(bytes).sections.map(([t, p]) => [t, t === 'STAT' ? trainLinesOnly(p) : p]), { version: 2 });
}
