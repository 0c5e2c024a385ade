// Decision thresholds: the nominal rule (Gumbel tail from the quartiles of leave-one-image-out
// scores), the leave-one-image-out scores themselves (exactly a fit without the image, at coreset
// 100%), labelled calibration, thresholds set by hand, and older model files' calibrations.
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { calibrateNominal, gumbelThreshold, holdoutPicker, normalize, quantile, thresholdFromLabels, upgradeCalibration } from '../lib/calibration.js';
import { manualCalibration } from '../lib/engine/decisions.js';
import { nativeOf } from '../lib/engine/engine.js';
import { toRawFrame } from '../lib/io/images.js';
import { Engine, type EngineOptions } from '../lib/index.js';
import { fixtures, syntheticDataset, tempDir } from './support/data.js';

const picked = (total: number | undefined, n: number) => Array.from({ length: n }, (_, i) => i).filter(holdoutPicker(total, 0.1, 3));
const evidence = (scores: number[]) => scores.map((score) => ({ score, mapMin: 0, mapMax: score / 2, mapMean: 1 }));

describe('the nominal rule', () => {
  it('fits a Gumbel to the quartiles and puts the threshold at its 1 - alpha quantile', () => {
    const values = Array.from({ length: 101 }, (_, i) => 10 + i / 10); // 10.0 .. 20.0: quartiles 12.5, 15, 17.5
    expect(quantile(values, 0.25)).toBeCloseTo(12.5, 12);
    const g = gumbelThreshold(values, 0.01);
    const beta = 5 / (Math.log(Math.log(4)) - Math.log(Math.log(4 / 3)));
    expect(g.beta).toBeCloseTo(beta, 12);
    expect(g.mu).toBeCloseTo(15 + beta * Math.log(Math.log(2)), 12);
    expect(g.threshold).toBeCloseTo(g.mu - beta * Math.log(-Math.log(0.99)), 12);
    // median + 2.692 IQR for alpha = 1%; a lower alpha puts it higher.
    expect(g.threshold).toBeCloseTo(15 + 2.6924 * 5, 2);
    expect(gumbelThreshold(values, 0.001).threshold).toBeGreaterThan(g.threshold);
  });

  it('is robust: the top quarter of the evidence can be anything', () => {
    const scores = Array.from({ length: 40 }, (_, i) => 5 + (i % 10) / 10).sort((x, y) => x - y);
    // The 9 largest replaced by wild values (defective images among the good ones, say): the
    // quartiles, and so the threshold, do not move; a mean-based rule would be thrown far off.
    const wild = [...scores.slice(0, 31), 100, 200, 300, 400, 500, 600, 700, 800, 900];
    const a = calibrateNominal(evidence(scores), 0.01, 'leave-one-out');
    const b = calibrateNominal(evidence(wild), 0.01, 'leave-one-out');
    expect(b.threshold).toBeCloseTo(a.threshold, 12);
    expect(b.scoreMean + 3 * b.scoreStd).toBeGreaterThan(100 * a.threshold);
  });

  it('sets image and pixel thresholds, floor and low; warns when the evidence is thin', () => {
    const scores = Array.from({ length: 40 }, (_, i) => 4 + (i % 8) / 8);
    const c = calibrateNominal(evidence(scores), 0.01, 'leave-one-out');
    expect(c).toMatchObject({ method: 'leave-one-out', images: 40, falseAlarmRate: 0.01, warnings: [] });
    expect(c.threshold).toBeCloseTo(gumbelThreshold(scores, 0.01).threshold, 12);
    expect(c.pixelThreshold).toBeCloseTo(gumbelThreshold(scores.map((s) => s / 2), 0.01).threshold, 12);
    expect(c.pixelFloor).toBeCloseTo(quantile([...scores].sort((a, b) => a - b), 0.5) / 2, 12);
    expect(c.low).toBe(1);
    expect(c.nominalAboveThreshold).toBe(0);
    const thin = calibrateNominal(evidence(scores.slice(0, 12)), 0.01, 'holdout');
    expect(thin.warnings.join()).toMatch(/12 nominal images/);
    expect(() => calibrateNominal(evidence([1]), 0.01, 'holdout')).toThrow(RangeError);
  });

  it('a threshold set by hand and then set back restores low and the floor (they do not ratchet down)', () => {
    const c = calibrateNominal(evidence(Array.from({ length: 40 }, (_, i) => 4 + (i % 8) / 8)), 0.01, 'leave-one-out');
    const lowered = manualCalibration(c, c.low / 2, c.pixelFloor / 2);
    expect([lowered.low, lowered.pixelFloor]).toEqual([c.low / 2, c.pixelFloor / 2]);
    const back = manualCalibration(lowered, c.threshold, c.pixelThreshold);
    expect([back.low, back.pixelFloor]).toEqual([c.low, c.pixelFloor]);
    expect(normalize(4.5, back)).toBe(normalize(4.5, c));
  });

  it('normalises to 0.5 at the threshold and keeps rising above it (no clamp at 1)', () => {
    const c = calibrateNominal(evidence(Array.from({ length: 40 }, (_, i) => 4 + (i % 8) / 8)), 0.01, 'leave-one-out');
    expect(normalize(c.threshold, c)).toBeCloseTo(0.5, 12);
    expect(normalize(c.low, c)).toBe(0);
    expect(normalize(c.low - 5, c)).toBe(0);
    const far = normalize(3 * c.threshold, c);
    expect(far).toBeGreaterThan(1);
    expect(normalize(4 * c.threshold, c)).toBeGreaterThan(far);
  });

  it('holds out 10% spread evenly, at least 3, never more than half (calibration.holdout)', () => {
    expect(picked(24, 24)).toHaveLength(3);
    expect(picked(64, 64)).toEqual([10, 21, 31, 42, 53, 63]);
    expect(picked(5, 5)).toHaveLength(2);
    expect(picked(1, 1)).toEqual([]);
    expect(picked(undefined, 30)).toEqual([9, 19, 29]); // stream of unknown length: every 10th
  });
});

describe('thresholds from labelled images', () => {
  const scores = [1, 2, 3, 4, 5, 6, 7, 8];
  const labels = [0, 0, 1, 0, 1, 1, 0, 1];
  it('maximises F1', () => {
    // t = 5: tp 3, fp 1 -> F1 0.75; t = 3: tp 4, fp 2 -> F1 0.8 (the best); t = 8: F1 0.4.
    expect(thresholdFromLabels(scores, labels, 'f1')).toMatchObject({ threshold: 3, recall: 1, precision: 4 / 6, falseAlarmRate: 0.5 });
  });
  it('takes the highest threshold that reaches a recall target', () => {
    expect(thresholdFromLabels(scores, labels, { recall: 0.5 })).toMatchObject({ threshold: 6, recall: 0.5 });
    expect(thresholdFromLabels(scores, labels, { recall: 0.75 })).toMatchObject({ threshold: 5, recall: 0.75 });
    expect(thresholdFromLabels(scores, labels, { recall: 1 })).toMatchObject({ threshold: 3, recall: 1 });
    expect(() => thresholdFromLabels([1, 2], [0, 0], 'f1')).toThrow(RangeError);
  });
});

describe('leave-one-image-out scores', () => {
  // At coreset 100% the bank minus an image's rows is exactly the bank of a fit without the image,
  // so each leave-out score must equal that fit's score of the image (GEMM rounding aside).
  it.each([false, true])('reweight %s: equal a fit without the image, at coreset 100 percent', async (reweight) => {
    const data = await syntheticDataset();
    const images = data.train.slice(0, 6);
    const options: EngineOptions = { head: false, backbone: 'random_cnn', resize: null, coreset: { ratio: 1 }, scoring: { reweight }, calibration: false };
    const e = await Engine.create(options);
    const n = nativeOf(e);
    n.fitBegin();
    await n.fitAdd(await Promise.all(images.map((p) => toRawFrame(p))));
    await n.fitEnd(undefined, 100);
    const loo = n.leaveOut();
    n.fitAbort();
    expect(loo.map((r) => r.input)).toEqual([0, 1, 2, 3, 4, 5]);
    for (const [i, p] of images.entries()) {
      const without = await Engine.create(options);
      await without.fit(images.filter((_, j) => j !== i));
      const r = await without.score(p);
      // The same up to float32 rounding (|q|^2 - 2 q.b + |b|^2 over bank rows in another order).
      const close = (a: number, b: number) => expect(Math.abs(a - b)).toBeLessThan(1e-3 * Math.abs(b) + 1e-5);
      close(loo[i].score, r.score);
      close(loo[i].mapMax, Math.max(...r.map));
      close(loo[i].mapMean, r.map.reduce((s, v) => s + v, 0) / r.map.length);
    }
    // Up to maxImages, spread evenly over the input.
    n.fitBegin();
    await n.fitAdd(await Promise.all(images.map((p) => toRawFrame(p))));
    await n.fitEnd(undefined, 3);
    expect(n.leaveOut().map((r) => r.input)).toEqual([1, 3, 5]);
    n.fitAbort();
    expect(n.leaveOut()).toEqual([]);
  }, 120_000);

  // An update scores its new images against the grown bank without their own rows (they sit after
  // the live bank's rows). At coreset 100% the fit keeps every patch and the update adds every new
  // patch farther than 0 from the bank, so the grown bank minus an image's rows is the bank of a
  // fit on all the other images.
  it('in an update: equal a fit on all the other images, at coreset 100 percent', async () => {
    const data = await syntheticDataset();
    const images = data.train.slice(0, 6);
    const options: EngineOptions = { head: false, backbone: 'random_cnn', resize: null, coreset: { ratio: 1 }, calibration: false };
    const e = await Engine.create(options);
    await e.fit(images.slice(0, 3));
    const n = nativeOf(e);
    n.fitBegin('update');
    await n.fitAdd(await Promise.all(images.slice(3).map((p) => toRawFrame(p))));
    await n.fitEnd(undefined, 100);
    const loo = n.leaveOut();
    n.fitAbort();
    expect(loo.map((r) => r.input)).toEqual([0, 1, 2]);
    for (const [k, r] of loo.entries()) {
      const i = 3 + k;
      const without = await Engine.create(options);
      await without.fit(images.filter((_, j) => j !== i));
      const s = await without.score(images[i]);
      expect(Math.abs(r.score - s.score)).toBeLessThan(1e-3 * Math.abs(s.score) + 1e-5);
      expect(Math.abs(r.mapMax - Math.max(...s.map))).toBeLessThan(1e-3 * Math.abs(Math.max(...s.map)) + 1e-5);
    }
  }, 120_000);
});

describe('calibrated engine', () => {
  const dir = tempDir('calibration');
  let engine: Engine;
  let data: Awaited<ReturnType<typeof syntheticDataset>>;
  beforeAll(async () => {
    data = await syntheticDataset();
    engine = await Engine.create({ head: false, backbone: 'random_cnn', resize: null, coreset: { ratio: 0.25 } });
    await engine.fit(data.train);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('flags defects and passes good parts using nominal data only', async () => {
    const c = engine.info.calibration;
    expect(c).toMatchObject({ method: 'leave-one-out', images: 24, falseAlarmRate: 0.01 });
    expect(c?.warnings.join()).toMatch(/24 nominal images/); // fewer than 30: thin
    const results = await engine.scoreMany(data.test.map((t) => t.path));
    const good = results.filter((_, i) => data.test[i].label === 0);
    const bad = results.filter((_, i) => data.test[i].label === 1);
    for (const r of results) expect(r.isAnomaly).toBe((r.normalizedScore as number) >= 0.5);
    // Monotone: a higher score never gets a lower normalised score.
    const sorted = [...results].sort((a, b) => a.score - b.score);
    for (let i = 1; i < sorted.length; i++) expect(sorted[i].normalizedScore as number).toBeGreaterThanOrEqual(sorted[i - 1].normalizedScore as number);
    expect(good.filter((r) => !r.isAnomaly).length / good.length).toBeGreaterThanOrEqual(0.75);
    expect(bad.filter((r) => r.isAnomaly).length / bad.length).toBeGreaterThanOrEqual(0.75);
  });

  it('keeps the calibration in the model file', async () => {
    const file = path.join(dir, 'cal.rcp');
    await engine.save(file);
    const loaded = await Engine.load(file);
    expect(loaded.info.calibration).toEqual(engine.info.calibration);
    const probe = data.test[0].path;
    expect((await loaded.score(probe)).normalizedScore).toBe((await engine.score(probe)).normalizedScore);
  });

  it('calibrates on labelled images (F1, or a recall target) and on good images alone', async () => {
    const copy = await Engine.loadBytes(await engine.saveBytes());
    const paths = data.test.map((t) => t.path);
    const labels = data.test.map((t) => t.label);
    const c = await copy.calibrate(paths, { labels, objective: { recall: 1 } });
    expect(c).toMatchObject({ method: 'labels', images: 20, falseAlarmRate: null });
    expect(c.validation).toMatchObject({ images: 20, defects: 12, recall: 1, objective: 'recall >= 1' });
    expect(c.pixelThreshold).toBe(engine.info.calibration?.pixelThreshold); // pixels keep the fit's nominal thresholds
    const results = await copy.scoreMany(paths);
    expect(results.filter((r, i) => r.isAnomaly && labels[i] === 1)).toHaveLength(12);
    expect((await Engine.loadBytes(await copy.saveBytes())).info.calibration).toEqual(copy.info.calibration);
    const f1 = await copy.calibrate(paths, { labels });
    expect(f1.validation?.objective).toBe('f1');
    const good = paths.filter((_, i) => labels[i] === 0);
    expect(await copy.calibrate(good)).toMatchObject({ method: 'holdout', images: 8 });
    await expect(copy.calibrate(paths, { labels: [1, 0] })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    await expect(copy.calibrate(paths, { labels, objective: { recall: 2 } })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
  });

  it('takes a threshold set by hand, kept with the model', async () => {
    const copy = await Engine.loadBytes(await engine.saveBytes());
    const probe = data.test.find((t) => t.label === 0)?.path as string;
    const before = await copy.score(probe);
    expect(before.isAnomaly).toBe(false);
    await copy.setThreshold(before.score * 0.9);
    const after = await copy.score(probe);
    expect(after.isAnomaly).toBe(true);
    expect(copy.info.calibration).toMatchObject({ method: 'manual', threshold: before.score * 0.9, falseAlarmRate: null });
    expect((await Engine.loadBytes(await copy.saveBytes())).info.calibration?.threshold).toBe(before.score * 0.9);
    await expect(copy.setThreshold(Number.NaN)).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    await expect(copy.setThreshold(1, { pixel: 2 } as never)).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    const unfitted = await Engine.create({ head: false, backbone: 'random_cnn' });
    await expect(unfitted.setThreshold(1)).rejects.toMatchObject({ code: 'ERR_NOT_FITTED' });
  });

  it('gives back the calibrated normalizedScore when the calibrated threshold is set back (issue 26)', async () => {
    const copy = await Engine.loadBytes(await engine.saveBytes());
    const original = copy.info.calibration as NonNullable<typeof copy.info.calibration>;
    const probe = data.test[0].path;
    const before = await copy.score(probe);
    await copy.setThreshold(original.low / 2, { pixelThreshold: original.pixelFloor / 2 }); // below low and the floor: both must move
    expect((await copy.score(probe)).normalizedScore).not.toBe(before.normalizedScore);
    await copy.setThreshold(original.threshold, { pixelThreshold: original.pixelThreshold });
    const after = await copy.score(probe);
    expect(after.normalizedScore).toBe(before.normalizedScore);
    expect(copy.info.calibration).toMatchObject({ low: original.low, pixelFloor: original.pixelFloor, threshold: original.threshold });
  });

  it('reads the calibration older model files carry (mean + 3 std), and refits with today\'s rule', async () => {
    const old = { calibration: { images: 3, scoreMean: 5, scoreStd: 0.5, threshold: 6.5, low: 3 }, calibrationOptions: { holdout: 0.1, minImages: 3 } };
    const copy = await Engine.loadBytes(await engine.saveBytes());
    nativeOf(copy).setMetadata(JSON.stringify(old));
    const loaded = await Engine.loadBytes(await copy.saveBytes());
    expect(loaded.info.calibration).toMatchObject({ method: 'legacy', threshold: 6.5, pixelThreshold: 6.5, low: 3 });
    expect(normalize(6.5, loaded.info.calibration as never)).toBe(0.5);
    expect(upgradeCalibration(null)).toBeNull();
    expect(upgradeCalibration({ threshold: 'x' })).toBeNull();
    const summary = await loaded.fit(data.train.slice(0, 8));
    expect(summary.calibration?.method).toBe('leave-one-out');
    // An old model fitted with calibration off stays off.
    nativeOf(copy).setMetadata(JSON.stringify({ calibration: null, calibrationOptions: { holdout: 0, minImages: 0 } }));
    const off = await Engine.loadBytes(await copy.saveBytes());
    expect((await off.fit(data.train.slice(0, 4))).calibration).toBeNull();
  });

  // test/fixtures/make_legacy_model.mjs wrote these with reconpatch at commit 6477f9d (model format
  // 2) and with main at 2be1fe4 (format 3, update counts and coverage radius kept), both before issue 16.
  it.each(['legacy_model', 'v3_model'])('loads a model file an earlier reconpatch wrote (%s): same threshold, same score, the crop now marked not inspected', async (name) => {
    const golden = JSON.parse(readFileSync(path.join(fixtures, `golden/${name}.json`), 'utf8'));
    const legacy = await Engine.load(path.join(fixtures, `golden/${name}.rcp`));
    expect(legacy.options).toMatchObject({ resizeMode: 'shorter', resize: 64, crop: 48 }); // its own options, not today's defaults
    expect(legacy.info.calibration).toMatchObject({ method: 'legacy', threshold: golden.calibration.threshold, low: golden.calibration.low });
    const r = await legacy.score(path.join(data.root, golden.probe), { heatmap: 'png' });
    expect(r.score).toBeCloseTo(golden.score, 5);
    expect(r.normalizedScore).toBeGreaterThan(1); // was clamped to 1
    // 96 px -> 64 px (shorter side) -> centre 48: the middle 72 x 72 of the image was inspected.
    const at = (x: number, y: number) => r.map[y * 96 + x];
    expect(Number.isNaN(at(5, 48)) && Number.isNaN(at(48, 90))).toBe(true);
    expect(Number.isFinite(at(48, 48)) && Number.isFinite(at(13, 13)) && Number.isFinite(at(82, 82))).toBe(true);
    expect(r.map.filter((v) => Number.isNaN(v)).length).toBe(96 * 96 - 72 * 72);
    // An update of such a model: too few new images (< 30) to replace a threshold that kept no
    // evidence, so it stays as it was; the bank grows.
    const rows = legacy.info.bankRows;
    const u = await legacy.update(data.train.slice(0, 6));
    expect(u.calibrationImages).toBe(6);
    expect(legacy.info.calibration).toMatchObject({ method: 'legacy', threshold: golden.calibration.threshold });
    expect(legacy.info.updates).toBe(1);
    expect(legacy.info.bankRows).toBe(rows + u.addedRows);
  });

  it('inspects every pixel by default, whatever the image\'s shape', async () => {
    const e = await Engine.create({ head: false, backbone: 'random_cnn', coreset: { ratio: 0.25 }, calibration: false });
    const frame = (width: number, height: number) => ({ data: new Uint8Array(width * height).map((_, i) => (i * 7) % 251), width, height, channels: 1 as const });
    await e.fit([frame(121, 289), frame(120, 290), frame(300, 101)]);
    for (const [w, h] of [[121, 289], [301, 99], [97, 97]]) {
      const r = await e.score(frame(w, h));
      expect([r.width, r.height]).toEqual([w, h]);
      expect(r.map.every((v) => Number.isFinite(v))).toBe(true);
    }
    // The feature grid follows the image: a 121 x 289 part is scaled to about 256^2 pixels, aspect kept.
    const { rows } = await e.embed(frame(121, 289));
    expect(rows).toBeGreaterThan(900);
    expect(rows).toBeLessThan(1150);
  });

  it('has no calibration when disabled, and says why when there is too little to calibrate on', async () => {
    const e = await Engine.create({ head: false, backbone: 'random_cnn', resize: null, calibration: false });
    const fit = await e.fit(data.train.slice(0, 4));
    expect(fit.warnings).toEqual([]);
    const r = await e.score(data.test[0].path);
    expect([r.normalizedScore, r.isAnomaly, e.info.calibration]).toEqual([null, null, null]);
    const one = await Engine.create({ head: false, backbone: 'random_cnn', resize: null });
    const lone = await one.fit(data.train.slice(0, 1));
    expect(lone.calibration).toBeNull();
    expect(lone.warnings.join()).toMatch(/needs at least 2 nominal images/);
  });

  it('rejects a bad held-out image before anything changes (calibration.holdout)', async () => {
    const held = await Engine.create({ head: false, backbone: 'random_cnn', resize: null, coreset: { ratio: 0.25 }, calibration: { holdout: 0.1 } });
    const fit = await held.fit(data.train);
    expect(fit).toMatchObject({ images: 21, calibrationImages: 3 });
    expect(held.info.calibration?.method).toBe('holdout');
    const before = held.info;
    const tiny = { data: new Uint8Array(4 * 4 * 3), width: 4, height: 4, channels: 3 as const };
    const images = [...data.train.slice(0, 3), tiny, ...data.train.slice(4, 10)]; // index 3 is held out
    expect(picked(10, 10)).toContain(3);
    await expect(held.fit(images)).rejects.toMatchObject({ code: 'ERR_INVALID_IMAGE' });
    expect(held.info).toEqual(before);
  });
});
