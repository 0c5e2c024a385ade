// head: 'auto' (issue 27): the fit checks, on held-out good images and synthetic defects painted
// on them, whether the ReConPatch head helps, and keeps the better model. Both outcomes are
// exercised: the default head on metal_plate with mobilenet_v1 (real data: whichever the check
// chooses, checked against the rule) and a head trained with a learning rate that wrecks it (the
// drop, constructed). The decision and its evidence survive save/load;
// an abort during the check leaves the engine as it was.
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { Engine, type EngineOptions, Ensemble, ReconpatchError } from '../lib/index.js';
import { DEFECT_KINDS, synthesizeDefects } from '../lib/head_check/defects.js';
import { HEAD_CHECK_MARGIN, aurocOf, decideHead, headCheckPicker } from '../lib/head_check/check.js';
import type { RawFrame } from '../lib/native.js';
import { SHARED_ABSENT, hasShared, sharedBackbones, sharedDatasets, syntheticDataset, tempDir } from './support/data.js';
import { readMvtecDataset } from '../lib/eval/dataset.js';

// threads: 1 makes the head's rounding, and so the decision, the same on every machine with this libtorch.
const base: EngineOptions = { head: false, backbone: 'random_cnn', seed: 0, threads: 1, calibration: false };
const WRECKED = { lr: 10, iterations: 30, plateau: 0, auto: true };

async function failure(p: Promise<unknown>): Promise<ReconpatchError> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(ReconpatchError);
  return err as ReconpatchError;
}

describe('synthetic defects and the rule', () => {
  const frame = (seed: number): RawFrame => {
    const data = new Uint8Array(64 * 48 * 3);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + seed * 13 + ((i / 3) % 64) * 2) % 200;
    return { data, width: 64, height: 48, channels: 3 };
  };

  it('paints 18 defects per good image (6 kinds x 3 sizes), each a local change, reproducibly', () => {
    const good = [frame(1), frame(2)];
    const a = synthesizeDefects(good, 3);
    expect(a).toHaveLength(36);
    expect(new Set(a.map((d) => d.kind))).toEqual(new Set(DEFECT_KINDS));
    for (const [i, d] of a.entries()) {
      const src = good[Math.floor(i / 18)].data;
      let changed = 0;
      for (let p = 0; p < src.length; p += 3) if (src[p] !== d.frame.data[p] || src[p + 1] !== d.frame.data[p + 1] || src[p + 2] !== d.frame.data[p + 2]) changed++;
      expect(changed, `${d.kind} ${d.size}`).toBeGreaterThan(0);
      // Local: a scratch is 3 region sides long; everything else stays inside its region.
      expect(changed, `${d.kind} ${d.size}`).toBeLessThan(0.5 * 64 * 48);
    }
    expect(good[0].data).toEqual(frame(1).data); // the sources are not touched
    const b = synthesizeDefects(good, 3);
    expect(b.map((d) => Buffer.from(d.frame.data).toString('base64'))).toEqual(a.map((d) => Buffer.from(d.frame.data).toString('base64')));
    const c = synthesizeDefects(good, 4);
    expect(c.some((d, i) => Buffer.compare(d.frame.data, a[i].frame.data) !== 0)).toBe(true);
  });

  it('holds out 10% of the images, 2 to 8, spread evenly; none below 10 images', () => {
    const count = (total: number) => Array.from({ length: total }, (_, i) => i).filter(headCheckPicker(total)).length;
    expect(count(9)).toBe(0);
    expect(count(10)).toBe(2);
    expect(count(64)).toBe(6);
    expect(count(1000)).toBe(8);
    const picked = Array.from({ length: 64 }, (_, i) => i).filter(headCheckPicker(64));
    expect(Math.max(...picked) - Math.min(...picked)).toBeGreaterThan(40);
    const stream = headCheckPicker(undefined);
    expect(Array.from({ length: 500 }, (_, i) => i).filter(stream)).toHaveLength(8);
  });

  it('keeps the head only when it gains more than the margin on the synthetic set', () => {
    expect(aurocOf([0, 1], [2, 3])).toBe(1);
    expect(aurocOf([0, 2], [1, 2])).toBe(0.625);
    expect(decideHead(0.95, 0.94).decision).toBe('head');
    expect(decideHead(0.75, 0.75).decision).toBe('patchcore'); // a tie goes to PatchCore
    expect(decideHead(0.75 + HEAD_CHECK_MARGIN / 2, 0.75).decision).toBe('patchcore');
    expect(decideHead(0.9, 0.94).decision).toBe('patchcore');
  });
});

describe("head: 'auto' on a fit", () => {
  let train: string[];
  let probe: string;
  let dir: string;

  beforeAll(async () => {
    const ds = await syntheticDataset({ nTrain: 40 });
    train = ds.train;
    probe = ds.test.find((t) => t.label === 1)!.path;
    dir = tempDir('head-auto');
  });

  it('drops the head where it hurts, and the kept model is exactly PatchCore on the images it was fitted on', async () => {
    const engine = await Engine.create({ ...base, head: WRECKED });
    await engine.fit(train);
    const check = engine.info.headCheck!;
    expect(check.decision).toBe('patchcore');
    // It hurts by more than the rule's margin (how much a diverged head hurts is not the point).
    expect(check.aurocHead!).toBeLessThan(check.aurocPatchcore! - HEAD_CHECK_MARGIN);
    expect(engine.options.head).toBe(false);
    expect(engine.options.headLr).toBe(10); // kept, for the next fit's check
    // The same images minus the held-out ones, fitted as plain PatchCore, give the same scores.
    const pick = headCheckPicker(train.length);
    const plain = await Engine.create(base);
    await plain.fit(train.filter((_, i) => !pick(i)));
    expect((await engine.score(probe)).score).toBe((await plain.score(probe)).score);
    expect(engine.info.bankRows).toBe(plain.info.bankRows);

    // The decision and its evidence travel in the model file; a refit of the loaded model checks again.
    const file = path.join(dir, 'auto.rcp');
    await engine.save(file);
    const loaded = await Engine.load(file);
    expect(loaded.info.headCheck).toEqual(check);
    expect((await loaded.score(probe)).score).toBe((await engine.score(probe)).score);
    expect(readFileSync(file).includes(Buffer.from('"headCheck"'))).toBe(true);

    // An abort during the check leaves the loaded engine as it was.
    const before = { info: loaded.info, score: (await loaded.score(probe)).score };
    const controller = new AbortController();
    const err = await failure(loaded.fit(train.slice(0, 20), { signal: controller.signal, onProgress: (p) => { if (p.stage === 'check') controller.abort(); } }));
    expect(err.code).toBe('ERR_ABORTED');
    const { batching: _a, ...now } = loaded.info;
    const { batching: _b, ...then } = before.info;
    expect(now).toEqual(then);
    expect((await loaded.score(probe)).score).toBe(before.score);

    // Without an abort the refit checks again (20 images: 2 held out).
    const stages = new Set<string>();
    await loaded.fit(train.slice(0, 20), { onProgress: (p) => stages.add(p.stage) });
    expect(stages.has('check')).toBe(true);
    expect(loaded.info.headCheck!.heldOutImages).toBe(2);
    expect(loaded.info.headCheck!.decision).toBe('patchcore');
  }, 240_000);

  it('keeps PatchCore without a check below 10 images, and says why', async () => {
    const engine = await Engine.create({ ...base, head: WRECKED });
    await engine.fit(train.slice(0, 6));
    const check = engine.info.headCheck!;
    expect(check.decision).toBe('patchcore');
    expect(check.reason).toMatch(/too few images/);
    expect(check.aurocHead).toBeNull();
    expect(engine.info.trainImages).toBe(6);
  }, 120_000);

  it("validates 'auto' and refuses it in ensemble members", async () => {
    await expect(Engine.create({ ...base, head: 'automatic' as never })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    await expect(Engine.create({ ...base, head: { auto: 'yes' as never } })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    await expect(Ensemble.create({ members: [{ ...base, head: 'auto' }, base] })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION', message: /members\[0\]/ });
  });
});

describe("head: 'auto' on real data", () => {
  // Which model this split keeps is not asserted: the check's AUROCs on 6 held-out images move with
  // float rounding, because the head's training amplifies it. When the backbone's graph passes
  // changed the features by ~3e-6 relative (issue 28), this split went from 0.9128 (head) vs 0.9020
  // (PatchCore), keep, to 0.9020 vs 0.9035, drop: within the check's noise (docs/results.md, "head:
  // 'auto'": 13 of 24 runs agree with the real labels). What is asserted is the rule and the model
  // it keeps: the decision follows the AUROCs, and a dropped head leaves exactly PatchCore.
  it.skipIf(!hasShared)(`follows its rule on ${hasShared ? 'metal_plate with mobilenet_v1 and keeps the model it chose' : SHARED_ABSENT}`, async () => {
    const { train, test } = await readMvtecDataset(sharedDatasets, 'metal_plate');
    const backbone = path.join(sharedBackbones, 'mobilenet_v1_imagenet.pt');
    const options: EngineOptions = { backbone, head: 'auto', seed: 0, threads: 2, calibration: false };
    const engine = await Engine.create(options);
    const stages = new Set<string>();
    const summary = await engine.fit(train, { onProgress: (p) => stages.add(p.stage) });
    const check = engine.info.headCheck!;
    console.log(`[head_auto] metal_plate: ${check.reason}`);
    expect(check.decision).toBe(decideHead(check.aurocHead!, check.aurocPatchcore!).decision);
    // Both arms are real detectors on this split, not a diverged head or a broken bank.
    expect(Math.min(check.aurocHead!, check.aurocPatchcore!)).toBeGreaterThan(0.85);
    expect(check.heldOutImages).toBe(6);
    expect(check.defectImages).toBe(6 * 18);
    expect(summary.images).toBe(58);
    expect([...stages]).toEqual(expect.arrayContaining(['embed', 'head', 'coreset', 'check']));
    const kept = check.decision === 'head';
    expect(engine.options.head).toBe(kept);
    // The kept model is the one chosen: the same images minus the held-out ones, fitted with the head
    // on (kept) or off (dropped), score a real defect the same.
    const pick = headCheckPicker(train.length);
    const same = await Engine.create({ ...options, head: kept });
    await same.fit(train.filter((_, i) => !pick(i)));
    const defect = test.find((t) => t.label === 1)!.path;
    expect((await engine.score(defect)).score).toBeCloseTo((await same.score(defect)).score, 4);
  }, 400_000);
});
