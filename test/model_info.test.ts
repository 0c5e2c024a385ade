// Models as versioned artefacts: every fit records an id, a content hash, when and with what it
// was fitted and on which image sizes; the hash survives re-saves and loads; the version changes
// with the model or its thresholds; every score result names the model id and version; older
// files (no record) still load, with what can be derived; a damaged record is ERR_MODEL_FILE.
import { describe, expect, it } from 'vitest';

import { nativeOf } from '../lib/engine/engine.js';
import { Engine, Ensemble, ReconpatchError } from '../lib/index.js';
import { syntheticDataset } from './support/data.js';

async function errorOf(p: Promise<unknown>): Promise<ReconpatchError> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  expect(e).toBeInstanceOf(ReconpatchError);
  return e as ReconpatchError;
}

describe('model identity', () => {
  it('a fit records id, hash, version, provenance and training set; they survive save and load; results name them', async () => {
    const data = await syntheticDataset();
    const engine = await Engine.create({ head: false, backbone: 'random_cnn', seed: 3 });
    expect(engine.info.model).toBeNull();
    await engine.fit(data.train.slice(0, 8), { modelId: 'line3-cam2' });
    const m = engine.info.model!;
    expect(m.id).toBe('line3-cam2');
    expect(m.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(m.version).toMatch(/^[0-9a-f]{16}$/);
    expect(Date.now() - Date.parse(m.created!)).toBeLessThan(120_000);
    expect(m.packageVersion).toMatch(/^\d+\.\d+\.\d+/);
    expect(m.libtorch).toMatch(/^\d+\.\d+.* (cpu|cuda)/);
    expect(m.backbone).toBe('random_cnn');
    expect(m.trainingSet.images).toBe(engine.info.trainImages);
    expect(m.trainingSet.sizes).toEqual({ minWidth: 96, maxWidth: 96, minHeight: 96, maxHeight: 96 }); // the synthetic images are 96 x 96
    expect(m.calibration?.threshold).toBe(engine.info.calibration?.threshold);
    const r = await engine.score(data.test[0].path);
    expect([r.modelId, r.modelVersion]).toEqual([m.id, m.version]);
    expect((await engine.scoreMany([data.test[0].path]))[0].modelVersion).toBe(m.version);

    // Saved twice, loaded: the same model, the same identity.
    const bytes = await engine.saveBytes();
    const copy = await Engine.loadBytes(bytes);
    expect(copy.info.model).toEqual(m);
    const again = await Engine.loadBytes(await copy.saveBytes());
    expect(again.info.model).toEqual(m);
    expect((await again.score(data.test[0].path)).modelVersion).toBe(m.version);
    // The hash is the model's own, not the stored claim: a loaded copy recomputes the same one.
    expect(await nativeOf(again).contentHash()).toBe(m.hash);

    // A new threshold: same model (hash), new version; results follow.
    await copy.setThreshold(copy.info.calibration!.threshold * 2);
    expect(copy.info.model!.hash).toBe(m.hash);
    expect(copy.info.model!.version).not.toBe(m.version);
    expect((await copy.score(data.test[0].path)).modelVersion).toBe(copy.info.model!.version);

    // An update: same id, new hash and version.
    await copy.update(data.train.slice(8, 12));
    expect(copy.info.model!.id).toBe('line3-cam2');
    expect(copy.info.model!.hash).not.toBe(m.hash);

    // A refit without modelId keeps the id; a fresh engine gets a UUID.
    await again.fit(data.train.slice(0, 4));
    expect(again.info.model!.id).toBe('line3-cam2');
    const fresh = await Engine.create({ head: false, backbone: 'random_cnn' });
    await fresh.fit(data.train.slice(0, 4));
    expect(fresh.info.model!.id).toMatch(/^[0-9a-f-]{36}$/);
    expect((await errorOf(fresh.fit(data.train.slice(0, 4), { modelId: '../etc' }))).code).toBe('ERR_INVALID_OPTION');
  });

  it('older files without a record still load (id null, hash derived), and a damaged record is ERR_MODEL_FILE', async () => {
    const data = await syntheticDataset();
    const engine = await Engine.create({ head: false, backbone: 'random_cnn', seed: 4 });
    await engine.fit(data.train.slice(0, 6));
    const m = engine.info.model!;
    const meta = JSON.parse(nativeOf(engine).metadata()) as Record<string, unknown>;
    expect(meta.model).toMatchObject({ id: m.id, hash: m.hash });
    // As a file written before model records: the META without `model`.
    const { model: _model, ...older } = meta;
    nativeOf(engine).setMetadata(JSON.stringify(older));
    const old = await Engine.loadBytes(await nativeOf(engine).encode());
    const o = old.info.model!;
    expect([o.id, o.created, o.packageVersion, o.libtorch, o.trainingSet.sizes]).toEqual([null, null, null, null, null]);
    expect(o.hash).toBe(m.hash);
    expect(o.version).toBe(m.version);
    expect(o.trainingSet.images).toBe(6);
    const r = await old.score(data.test[0].path);
    expect([r.modelId, r.modelVersion]).toEqual([null, m.version]);

    for (const bad of [{ ...meta, model: { ...(meta.model as object), hash: 'x' } }, { ...meta, model: 'v1' }, { ...meta, model: { ...(meta.model as object), id: '' } }]) {
      nativeOf(engine).setMetadata(JSON.stringify(bad));
      expect((await errorOf(Engine.loadBytes(await nativeOf(engine).encode()))).code).toBe('ERR_MODEL_FILE');
    }
  });

  it('an ensemble has its own identity, kept in its file and named by its results', async () => {
    const data = await syntheticDataset();
    const ensemble = await Ensemble.create({ members: [{ head: false, backbone: 'random_cnn', seed: 1 }, { head: false, backbone: 'random_cnn', seed: 2 }] });
    await ensemble.fit(data.train.slice(0, 8), { modelId: 'pair' });
    const m = ensemble.info.model!;
    expect(m.id).toBe('pair');
    expect(m.backbone).toBe('random_cnn+random_cnn');
    const r = await ensemble.score(data.test[0].path);
    expect([r.modelId, r.modelVersion]).toEqual(['pair', m.version]);
    const copy = await Ensemble.loadBytes(await ensemble.saveBytes());
    expect(copy.info.model).toEqual(m);
  });
});
