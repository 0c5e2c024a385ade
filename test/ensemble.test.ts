// Ensembles: fused scores equal the hand-computed average of the members' min-max normalised
// scores; the one-file container round-trips and rejects damage without touching an existing
// file; test-set min-max fusion on known numbers; and real data (../shared) where present.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readMask, readMvtecDataset } from '../lib/eval/dataset.js';
import { Engine, Ensemble, ReconpatchError, fuseTestMinMax, minMax } from '../lib/index.js';
import type { EngineOptions, MemberRange } from '../lib/index.js';
import { auroc, pixelAuroc } from '../lib/eval/metrics.js';
import { SHARED_ABSENT, hasShared, repoRoot, sharedBackbones, sharedDatasets, syntheticDataset, tempDir } from './support/data.js';

async function errorOf(p: Promise<unknown>): Promise<ReconpatchError> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  expect(e).toBeInstanceOf(ReconpatchError);
  return e as ReconpatchError;
}

describe('fuseTestMinMax', () => {
  it('normalises each member by its own test min / max, then averages', () => {
    const fused = fuseTestMinMax([
      { scores: [1, 2, 5], maps: [Float32Array.of(0, 4), Float32Array.of(2, 2), Float32Array.of(1, 3)] },
      { scores: [10, 30, 20], maps: [Float32Array.of(100, 200), Float32Array.of(300, 500), Float32Array.of(100, 100)] },
    ]);
    // Member 0 scores -> [0, 0.25, 1]; member 1 -> [0, 1, 0.5].
    expect(fused.scores).toEqual([0, 0.625, 0.75]);
    // Member 0 maps over [0, 4], member 1 over [100, 500].
    expect(Array.from(fused.maps[0])).toEqual([0, (1 + 0.25) / 2]);
    expect(Array.from(fused.maps[1])).toEqual([(0.5 + 0.5) / 2, (0.5 + 1) / 2]);
    expect(Array.from(fused.maps[2])).toEqual([(0.25 + 0) / 2, (0.75 + 0) / 2]);
  });

  it('uses given map ranges (maps subsampled from larger ones) and gives a constant member 0', () => {
    const fused = fuseTestMinMax(
      [{ scores: [3, 3], maps: [Float32Array.of(1), Float32Array.of(2)] }, { scores: [0, 4], maps: [Float32Array.of(1), Float32Array.of(2)] }],
      [{ min: 0, max: 4 }, { min: 1, max: 3 }],
    );
    expect(fused.scores).toEqual([0, 0.5]);
    expect([fused.maps[0][0], fused.maps[1][0]]).toEqual([(0.25 + 0) / 2, (0.5 + 0.5) / 2]);
    expect(minMax(5, 5, 5)).toBe(0);
  });

  it('rejects members of different lengths', () => {
    expect(() => fuseTestMinMax([{ scores: [1, 2] }, { scores: [1] }])).toThrow(/every member needs a score/);
    expect(() => fuseTestMinMax([])).toThrow(ReconpatchError);
  });
});

describe('Ensemble on generated data', () => {
  const dir = tempDir('ensemble');
  const modelPath = path.join(dir, 'part.rcpe');
  const common: EngineOptions = { head: false, backbone: 'random_cnn', resize: null, crop: null, coreset: { ratio: 0.2 } };
  const memberOptions = [{ ...common, seed: 1 }, { ...common, seed: 2, scoring: { blurSigma: 2 } }];
  let ensemble: Ensemble;
  let train: string[];
  let probes: string[];

  beforeAll(async () => {
    const data = await syntheticDataset();
    train = data.train; // 24 images
    probes = [data.test[0].path, data.test[data.test.length - 1].path, data.test[10].path];
    ensemble = await Ensemble.create({ members: memberOptions });
    const fit = await ensemble.fit(train);
    expect(fit).toMatchObject({ images: 24, calibrationImages: 24 }); // every image in the banks, and scored leave-one-out
    expect(fit.members.map((m) => m.images)).toEqual([24, 24]);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('fuses the average of each member normalised by its nominal min / max (computed by hand)', async () => {
    // Each member's bank is what an engine fitted alone on the same images holds; the ranges come
    // from the images scored leave-one-image-out, so every training image lies inside them and
    // each range is narrower than the members' scores of the images against their full banks
    // would suggest (an image scored against a bank holding its own patches scores lower).
    const members: Engine[] = [];
    for (const o of memberOptions) {
      const e = await Engine.create({ ...o, calibration: false });
      await e.fit(train);
      members.push(e);
    }
    const ranges = ensemble.info.ranges as MemberRange[];
    expect(ranges).toHaveLength(2);
    for (const [m, e] of members.entries()) {
      const own = await e.scoreMany(train);
      // Against the full bank (its own patches included) no image scores above its leave-out score.
      expect(Math.max(...own.map((r) => r.score))).toBeLessThanOrEqual(ranges[m].scoreMax + 1e-6);
      expect(ranges[m].scoreMin).toBeLessThan(ranges[m].scoreMax);
    }
    for (const p of probes) {
      const raw = [await members[0].score(p), await members[1].score(p)];
      const r = await ensemble.score(p);
      expect(r.memberScores).toEqual(raw.map((x) => x.score));
      const expected = raw.reduce((s, x, m) => s + (x.score - ranges[m].scoreMin) / (ranges[m].scoreMax - ranges[m].scoreMin), 0) / 2;
      expect(r.score).toBeCloseTo(expected, 12);
      expect([r.width, r.height]).toEqual([96, 96]);
      let worst = 0;
      for (let q = 0; q < r.map.length; q++) {
        const want = raw.reduce((s, x, m) => s + (x.map[q] - ranges[m].mapMin) / (ranges[m].mapMax - ranges[m].mapMin), 0) / 2;
        worst = Math.max(worst, Math.abs(r.map[q] - want));
      }
      expect(worst).toBeLessThan(1e-5);
    }
    // The threshold comes from the fused nominal scores, all in [0, 1] by construction.
    const c = ensemble.info.calibration;
    expect(c?.images).toBe(24);
    expect(c?.method).toBe('leave-one-out');
    expect(c?.threshold).toBeGreaterThan(c?.scoreMedian as number);
    expect(c?.scoreMean).toBeGreaterThan(0);
    expect(c?.scoreMean).toBeLessThan(1);
  });

  it('separates defects from good parts (fused image AUROC)', async () => {
    const data = await syntheticDataset();
    const results = await ensemble.scoreMany(data.test.map((t) => t.path));
    const a = auroc(results.map((r) => r.score), data.test.map((t) => t.label));
    expect(a).toBeGreaterThanOrEqual(0.9);
    expect(results.every((r) => r.isAnomaly === (r.normalizedScore as number) >= 0.5)).toBe(true);
    expect(results.filter((r, i) => r.isAnomaly && data.test[i].label === 1).length).toBeGreaterThan(0);
  });

  it('streams fused results in input order, errors yielded in place', async () => {
    const inputs = [probes[0], path.join(dir, 'missing.png'), probes[1], probes[2]];
    const items = [];
    for await (const r of ensemble.scoreStream(inputs, { concurrency: 2, onError: 'yield' })) items.push(r);
    expect(items.map((r) => r.index)).toEqual([0, 1, 2, 3]);
    expect(items[1].error?.code).toBe('ERR_INVALID_IMAGE');
    for (const [j, i] of [0, 2, 3].entries()) {
      const item = items[i];
      expect(item.error).toBeUndefined();
      if (!item.error) expect(item.score).toBe((await ensemble.score(probes[j])).score);
    }
  });

  it('saves one file and loads it to identical scores, maps and info', async () => {
    await ensemble.save(modelPath);
    expect(readFileSync(modelPath).subarray(0, 8).toString('latin1')).toBe('RCPENSEM');
    expect(await Ensemble.isEnsembleFile(modelPath)).toBe(true);
    const loaded = await Ensemble.load(modelPath);
    expect(loaded.info).toEqual(ensemble.info);
    for (const p of probes) {
      const [a, b] = [await ensemble.score(p, { heatmap: 'png' }), await loaded.score(p, { heatmap: 'png' })];
      expect(b.score).toBe(a.score);
      expect(b.memberScores).toEqual(a.memberScores);
      expect(Buffer.from(b.map.buffer).equals(Buffer.from(a.map.buffer))).toBe(true);
      expect(b.heatmap?.equals(a.heatmap as Buffer)).toBe(true);
    }
    expect(readdirSync(dir)).toEqual(['part.rcpe']); // no temporary files left
  });

  it('rejects a flipped byte or a truncation with ERR_MODEL_FILE', async () => {
    const bytes = readFileSync(modelPath);
    // Header, META, inside a member's bank, near the end, the checksum itself.
    for (const at of [2, 9, 40, bytes.length >> 1, bytes.length - 40, bytes.length - 1]) {
      const copy = Buffer.from(bytes);
      copy[at] ^= 0x5a;
      const p = path.join(dir, `flip-${at}.rcpe`);
      writeFileSync(p, copy);
      const e = await errorOf(Ensemble.load(p));
      expect(e.code).toBe('ERR_MODEL_FILE');
      expect(e.message).toMatch(/not a valid reconpatch ensemble model/);
      expect(readFileSync(p).equals(copy)).toBe(true); // loading never rewrites the file
      rmSync(p);
    }
    for (const keep of [0, 8, 20, bytes.length - 32]) {
      const p = path.join(dir, `trunc-${keep}.rcpe`);
      writeFileSync(p, bytes.subarray(0, keep));
      expect((await errorOf(Ensemble.load(p))).code).toBe('ERR_MODEL_FILE');
      rmSync(p);
    }
    expect((await errorOf(Ensemble.load(path.join(dir, 'missing.rcpe')))).code).toBe('ERR_MODEL_FILE');
  });

  it('never damages an existing file: a failed save leaves it byte-identical', async () => {
    const before = readFileSync(modelPath);
    // Saving over a directory path fails at the rename, after the temporary file was written.
    const target = path.join(dir, 'is-a-dir');
    await import('node:fs').then((fs) => fs.mkdirSync(path.join(target, 'x'), { recursive: true }));
    expect((await errorOf(ensemble.save(target))).code).toBe('ERR_IO');
    expect(readdirSync(dir).sort()).toEqual(['is-a-dir', 'part.rcpe']);
    rmSync(target, { recursive: true });
    // An unfitted ensemble refuses to save and leaves the file alone.
    const fresh = await Ensemble.create({ members: memberOptions });
    expect((await errorOf(fresh.save(modelPath))).code).toBe('ERR_NOT_FITTED');
    expect(readFileSync(modelPath).equals(before)).toBe(true);
  });

  it('keeps its state when a refit fails, and refits a loaded ensemble', async () => {
    const p = probes[0];
    const before = await ensemble.score(p);
    const e = await errorOf(ensemble.fit([train[0], train[1], path.join(dir, 'missing.png'), train[3]]));
    expect(e.code).toBe('ERR_INVALID_IMAGE');
    const controller = new AbortController();
    const aborting = ensemble.fit(train, { signal: controller.signal, onProgress: (p) => { if (p.member === 1) controller.abort(); } });
    expect((await errorOf(aborting)).code).toBe('ERR_ABORTED');
    expect((await ensemble.score(p)).score).toBe(before.score);
    const saved = path.join(dir, 'refit.rcpe');
    await ensemble.save(saved);
    const loaded = await Ensemble.load(saved);
    rmSync(saved);
    await loaded.fit(train.slice(0, 12));
    expect(loaded.info.members.map((m) => m.trainImages)).toEqual([12, 12]);
    // The same as a new ensemble fitted on those images; not the old normalisers.
    const fresh = await Ensemble.create({ members: memberOptions });
    await fresh.fit(train.slice(0, 12));
    expect(loaded.info.ranges).toEqual(fresh.info.ranges);
    expect(loaded.info.ranges).not.toEqual(ensemble.info.ranges);
    expect((await loaded.score(p)).score).toBe((await fresh.score(p)).score);
  });

  it('validates options and calls', async () => {
    expect((await errorOf(Ensemble.create({ members: [] }))).code).toBe('ERR_INVALID_OPTION');
    const e = await errorOf(Ensemble.create({ members: [{ head: false, backbone: 'random_cnn', calibration: false } as EngineOptions] }));
    expect(e.message).toMatch(/set calibration on the ensemble/);
    const bad = await errorOf(Ensemble.create({ members: [{ head: false, backbone: 'random_cnn' }, { head: false, backbone: 'nope.pt' }] }));
    expect([bad.code, bad.message.startsWith('members[1]')]).toEqual(['ERR_INVALID_OPTION', true]);
    const unfitted = await Ensemble.create({ members: [{ head: false, backbone: 'random_cnn' }] });
    expect((await errorOf(unfitted.score(probes[0]))).code).toBe('ERR_NOT_FITTED');
    expect((await errorOf(unfitted.fit([]))).code).toBe('ERR_EMPTY_TRAINING_SET');
  });

  it('without calibration: raw member outputs only, fused by fuseTestMinMax', async () => {
    const raw = await Ensemble.create({ members: memberOptions, calibration: false });
    const fit = await raw.fit(train.slice(0, 8));
    expect(fit).toMatchObject({ images: 8, calibrationImages: 0 });
    expect((await errorOf(raw.score(probes[0]))).code).toBe('ERR_NOT_FITTED');
    const outputs = await raw.scoreMembers(probes);
    expect(outputs).toHaveLength(3);
    expect(outputs[0].scores).toHaveLength(2);
    const fused = fuseTestMinMax([0, 1].map((m) => ({ scores: outputs.map((o) => o.scores[m]) })));
    expect(Math.min(...fused.scores)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...fused.scores)).toBeLessThanOrEqual(1);
  });
});

describe('reconpatch CLI with several backbones', () => {
  const run = promisify(execFile);
  const cli = path.join(repoRoot, 'dist/cli/main.js');
  const dir = tempDir('ensemble-cli');
  const reconpatch = async (...args: string[]) => (await run(process.execPath, [cli, ...args], { maxBuffer: 1 << 24 })).stdout;
  beforeAll(async () => {
    if (!existsSync(cli)) await run('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: repoRoot });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('evaluates an ensemble: fused metrics (test-set min-max) and each member alone', async () => {
    const data = await syntheticDataset();
    const out = JSON.parse(await reconpatch('eval', '--data', data.root, '--category', data.category, '--backbone', 'random_cnn,random_cnn', '--no-head',
      '--protocol', 'patchcore', '--resize', 'none', '--crop', 'none', '--coreset', '0.25', '--json'));
    expect(out).toMatchObject({ backbone: 'random_cnn+random_cnn', ensemble: true, fusion: 'test-minmax', n_train: 24, n_fit: 24, n_test: 20 });
    expect(out.members).toHaveLength(2);
    // Identical members (same seed): the fused ranking is each member's ranking.
    expect(out.image_auroc).toBeCloseTo(out.members[0].image_auroc, 10);
    expect(out.members[0].image_auroc).toBe(out.members[1].image_auroc);
    expect(out.image_auroc).toBeGreaterThanOrEqual(0.9);
    expect(out.pixel_auroc).toBeGreaterThanOrEqual(0.85);
    expect(out.decision).toBeNull(); // test-set normalisation has no deployed threshold
    // Without --protocol patchcore: the deployment path, normalisers and threshold from the 24
    // training images scored leave-one-image-out; the decision at that threshold is reported.
    const deployed = JSON.parse(await reconpatch('eval', '--data', data.root, '--category', data.category, '--backbone', 'random_cnn', '--no-head',
      '--backbone', 'random_cnn', '--no-head', '--resize', 'none', '--crop', 'none', '--coreset', '0.25', '--json'));
    expect(deployed).toMatchObject({ fusion: 'nominal-minmax', n_train: 24, n_fit: 24 });
    expect(deployed.image_auroc).toBeGreaterThanOrEqual(0.9);
    expect(deployed.decision).toMatchObject({ method: 'leave-one-out', calibration_images: 24, defects: 12, good: 8 });
  });

  it('fits one ensemble file, scores with it and shows its members', async () => {
    const data = await syntheticDataset();
    const model = path.join(dir, 'e.rcpe');
    const fit = JSON.parse(await reconpatch('fit', path.join(data.root, data.category, 'train/good'), '-o', model,
      '--backbone', 'random_cnn', '--no-head', '--backbone', 'random_cnn', '--no-head', '--resize', 'none', '--crop', 'none', '--json'));
    expect(fit).toMatchObject({ model, images: 24, calibrationImages: 24, thresholdMethod: 'leave-one-out' });
    const lines = (await reconpatch('score', model, data.test[0].path, '--json')).trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(1);
    expect(lines[0].memberScores).toHaveLength(2);
    expect(typeof lines[0].isAnomaly).toBe('boolean');
    const info = JSON.parse(await reconpatch('info', model, '--json'));
    expect(info.ensemble).toBe(true);
    expect(info.members.map((m: { backbone: string }) => m.backbone)).toEqual(['random_cnn', 'random_cnn']);
    expect(info.ranges).toHaveLength(2);
  });
});

describe.skipIf(!hasShared)(`real data: metal_plate, ensemble of mobilenet_v1 and darknet_tiny (${hasShared ? 'present' : SHARED_ABSENT})`, () => {
  it('reaches at least the weaker member and image AUROC >= 0.95 with nominal (leave-one-out) normalisers', async () => {
    const data = await readMvtecDataset(sharedDatasets, 'metal_plate');
    const protocol = { resizeMode: 'squash', resize: 256, crop: 224, coreset: { ratio: 0.1 } } as const;
    const ensemble = await Ensemble.create({
      members: ['mobilenet_v1_imagenet', 'darknet_tiny_imagenet'].map((b) => ({ head: false, backbone: path.join(sharedBackbones, `${b}.pt`), ...protocol })),
    });
    expect(existsSync(path.join(sharedBackbones, 'darknet_tiny_imagenet.pt'))).toBe(true);
    const fit = await ensemble.fit(data.train); // all 64 images in the banks, and scored leave-one-out to set the normalisers
    expect(fit).toMatchObject({ images: 64, calibrationImages: 64 });
    const results = await ensemble.scoreMany(data.test.map((t) => t.path));
    const labels = data.test.map((t) => t.label);
    const fused = auroc(results.map((r) => r.score), labels);
    const members = [0, 1].map((m) => auroc(results.map((r) => r.memberScores[m]), labels));
    const testMinMax = auroc(fuseTestMinMax([0, 1].map((m) => ({ scores: results.map((r) => r.memberScores[m]) }))).scores, labels);
    const maps: Float32Array[] = [];
    const masks: Uint8Array[] = [];
    for (const [i, t] of data.test.entries()) {
      if (i % 4) continue; // every 4th image keeps the pixel metric cheap
      maps.push(results[i].map);
      masks.push(t.maskPath ? await readMask(t.maskPath, results[i].width, results[i].height) : new Uint8Array(results[i].map.length));
    }
    const pixel = pixelAuroc(maps, masks);
    console.log(`metal_plate ensemble: image AUROC ${fused.toFixed(4)} (test min-max ${testMinMax.toFixed(4)}; members ${members.map((a) => a.toFixed(4)).join(', ')}), pixel AUROC (every 4th) ${pixel.toFixed(4)}`);
    expect(fused).toBeGreaterThanOrEqual(Math.min(...members));
    expect(fused).toBeGreaterThanOrEqual(0.95);
    expect(testMinMax).toBeGreaterThanOrEqual(0.95);
    expect(pixel).toBeGreaterThanOrEqual(0.95);
  }, 1_500_000); // two full fits and 2 x 97 scorings: about 3 minutes on 2 idle cores
});
