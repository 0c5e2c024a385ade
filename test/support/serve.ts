// Shared by the service tests: a small real model of metal_plate (random_cnn at 128 px: a fit in a
// few seconds; it is real model bytes on real images, not a stand-in), a model store holding it,
// and the service's HTTP helpers.
import { readdirSync } from 'node:fs';
import path from 'node:path';

import { Engine } from '../../lib/engine/engine.js';
import { DirectoryModelStore } from '../../lib/fleet/store.js';
import { sharedDatasets, tempDir } from './data.js';

export const TOKEN = 'serve-test-token-0123456789';
export const auth = { authorization: `Bearer ${TOKEN}` };
export const plate = path.join(sharedDatasets, 'metal_plate');
export const plateImages = (sub: string, n: number, from = 0): string[] =>
  readdirSync(path.join(plate, sub)).filter((f) => f.endsWith('.png')).sort().slice(from, from + n).map((f) => path.join(plate, sub, f));

/** A model of metal_plate fitted on `n` good images, as saved bytes. */
export async function plateModel(n = 16, options: { backbone?: string; resize?: number } = {}): Promise<Buffer> {
  const engine = await Engine.create({ head: false, backbone: options.backbone ?? 'random_cnn', resize: options.resize ?? 128, coreset: { ratio: 0.25 } });
  try {
    await engine.fit(plateImages('train/good', n), { modelId: 'plate' });
    return await engine.saveBytes();
  } finally {
    await engine.dispose();
  }
}

/** A fresh store directory holding `models` (id -> bytes). */
export async function storeWith(name: string, models: Record<string, Buffer>): Promise<{ dir: string; store: DirectoryModelStore }> {
  const dir = tempDir(name);
  const store = new DirectoryModelStore(dir);
  for (const [id, bytes] of Object.entries(models)) await store.publish(bytes, { id });
  return { dir, store };
}

export const errorOf = async (r: Response): Promise<[number, string]> => [r.status, ((await r.json()) as { error: { code: string } }).error.code];
