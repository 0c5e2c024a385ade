// The model store (lib/fleet/store.ts): publish makes a version current, list and current resolve
// it, read gives the same bytes, rollback goes back one version at a time; a file that does not
// load is refused and leaves the store as it was; concurrent publishers lose no version; and the
// `reconpatch models` commands do the same from the command line.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import { beforeAll, describe, expect, it } from 'vitest';

import { DirectoryModelStore, loadStoredModel } from '../lib/fleet/index.js';
import { Engine, Ensemble, ReconpatchError } from '../lib/index.js';
import type { Dataset } from '../lib/eval/index.js';
import { repoRoot, syntheticDataset, tempDir } from './support/data.js';

const run = promisify(execFile);
const cli = path.join(repoRoot, 'dist/cli/main.js');

async function errorOf(p: Promise<unknown>): Promise<ReconpatchError> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  expect(e).toBeInstanceOf(ReconpatchError);
  return e as ReconpatchError;
}

describe('model store', () => {
  let data: Dataset;
  let v1: Buffer;
  let v2: Buffer;
  let version1: string;
  let version2: string;

  beforeAll(async () => {
    data = await syntheticDataset();
    const engine = await Engine.create({ head: false, backbone: 'random_cnn', seed: 3 });
    await engine.fit(data.train.slice(0, 6), { modelId: 'line3-cam2' });
    v1 = await engine.saveBytes();
    version1 = engine.info.model!.version;
    await engine.update(data.train.slice(6, 10));
    v2 = await engine.saveBytes();
    version2 = engine.info.model!.version;
    await engine.dispose();
    expect(version2).not.toBe(version1);
  });

  it('publish, current, read, list and rollback', async () => {
    const store = new DirectoryModelStore(tempDir('store'));
    expect(await store.list()).toEqual([]);
    expect((await errorOf(store.current('line3-cam2'))).code).toBe('ERR_MODEL_NOT_FOUND');

    const p1 = await store.publish(v1);
    expect([p1.id, p1.version, p1.kind, p1.bytes]).toEqual(['line3-cam2', version1, 'engine', v1.length]);
    expect((await store.current('line3-cam2')).version).toBe(version1);
    const p2 = await store.publish(v2);
    expect(p2.version).toBe(version2);
    expect((await store.current('line3-cam2')).version).toBe(version2);
    expect((await store.publish(v2)).published).toBe(p2.published); // the current version again: nothing changes

    const { entry, bytes } = await store.read('line3-cam2');
    expect(entry.version).toBe(version2);
    expect(bytes.equals(v2)).toBe(true);
    expect((await store.read('line3-cam2', version1)).bytes.equals(v1)).toBe(true);
    const loaded = await loadStoredModel(bytes);
    expect(loaded.info.model?.version).toBe(version2); // what the store says is what the file holds
    await loaded.dispose();

    const [listed] = await store.list();
    expect([listed.id, listed.current.version, listed.versions.map((v) => v.version)]).toEqual(['line3-cam2', version2, [version2, version1]]);

    expect((await store.rollback('line3-cam2')).version).toBe(version1);
    expect((await store.current('line3-cam2')).version).toBe(version1);
    const none = await errorOf(store.rollback('line3-cam2'));
    expect([none.code, none.message]).toEqual(['ERR_INVALID_OPTION', expect.stringContaining('no version before')]);
    expect((await store.rollback('line3-cam2', version2)).version).toBe(version2); // forward again, by version
    expect((await errorOf(store.rollback('line3-cam2', 'ffffffffffffffff'))).code).toBe('ERR_MODEL_NOT_FOUND');
    expect((await errorOf(store.read('line3-cam2', '../../etc'))).code).toBe('ERR_INVALID_OPTION');
    expect((await errorOf(store.current('../etc'))).code).toBe('ERR_INVALID_OPTION');
  });

  it('publishes under another id, and ensembles', async () => {
    const store = new DirectoryModelStore(tempDir('store'));
    const renamed = await store.publish(v1, { id: 'press-7' });
    expect([renamed.id, renamed.version]).toEqual(['press-7', version1]);
    const ensemble = await Ensemble.create({ members: [{ head: false, backbone: 'random_cnn', seed: 1 }, { head: false, backbone: 'random_cnn', seed: 2 }] });
    await ensemble.fit(data.train.slice(0, 6), { modelId: 'pair' });
    const bytes = await ensemble.saveBytes();
    const version = ensemble.info.model!.version;
    await ensemble.dispose();
    const e = await store.publish(bytes);
    expect([e.id, e.kind, e.version, path.extname(e.file)]).toEqual(['pair', 'ensemble', version, '.rcpe']);
    const loaded = await loadStoredModel((await store.read('pair')).bytes);
    expect(loaded).toBeInstanceOf(Ensemble);
    await loaded.dispose();
    expect((await store.list()).map((m) => m.id)).toEqual(['pair', 'press-7']);
  });

  it('refuses a file that does not load, and keeps what it had', async () => {
    const dir = tempDir('store');
    const store = new DirectoryModelStore(dir);
    await store.publish(v1);
    const damaged = Buffer.from(v2);
    damaged.fill(7, 64, 256);
    const bad = await errorOf(store.publish(damaged));
    expect(bad.code).toBe('ERR_MODEL_FILE');
    const junk = await errorOf(store.publish(Buffer.from('not a model')));
    expect(junk.code).toBe('ERR_MODEL_FILE');
    expect((await store.current('line3-cam2')).version).toBe(version1);
    expect(readdirSync(path.join(dir, 'line3-cam2', 'versions')).sort()).toEqual([`${version1}.json`, `${version1}.rcp`]);
    expect((await errorOf(store.publish(v1, { id: '../x' }))).code).toBe('ERR_INVALID_OPTION');
  });

  it('concurrent publishers (two processes) lose no version', async () => {
    const dir = tempDir('store');
    const files = [path.join(dir, 'v1.rcp'), path.join(dir, 'v2.rcp')];
    writeFileSync(files[0], v1);
    writeFileSync(files[1], v2);
    const storeDir = path.join(dir, 'store');
    await Promise.all(files.map((f) => run(process.execPath, [cli, 'models', 'publish', f, '--store', storeDir, '--json'])));
    const [m] = await new DirectoryModelStore(storeDir).list();
    expect(m.versions.map((v) => v.version).sort()).toEqual([version1, version2].sort());
    expect(existsSync(path.join(storeDir, 'line3-cam2', '.lock'))).toBe(false);
  });

  it('reconpatch models publish | list | rollback', async () => {
    const dir = tempDir('store');
    const file = path.join(dir, 'part.rcp');
    writeFileSync(file, v1);
    const storeDir = path.join(dir, 'store');
    const published = JSON.parse((await run(process.execPath, [cli, 'models', 'publish', file, '--store', storeDir, '--id', 'cam1', '--json'])).stdout);
    expect([published.id, published.version]).toEqual(['cam1', version1]);
    writeFileSync(file, v2);
    await run(process.execPath, [cli, 'models', 'publish', file, '--store', storeDir, '--id', 'cam1']);
    const listed = (await run(process.execPath, [cli, 'models', 'list', '--store', storeDir])).stdout.trim().split('\n');
    expect(listed).toEqual([expect.stringMatching(new RegExp(`^cam1\\t${version2}\\t.*\\t2 versions$`))]);
    const back = JSON.parse((await run(process.execPath, [cli, 'models', 'rollback', 'cam1', '--store', storeDir, '--json'])).stdout);
    expect(back.version).toBe(version1);
    const missing = await run(process.execPath, [cli, 'models', 'rollback', 'nope', '--store', storeDir, '--json']).then(() => null, (e: { code: number; stdout: string }) => e);
    expect(missing?.code).toBe(1);
    expect(JSON.parse(missing!.stdout.trim()).error.code).toBe('ERR_MODEL_NOT_FOUND'); // --json: the error on stdout
  });
});
