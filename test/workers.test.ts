// The addon is context-aware: engines run in several worker threads at once (built dist/ code).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';

import { describe, expect, it } from 'vitest';

import { repoRoot, syntheticDataset } from './support/data.js';

const dist = path.join(repoRoot, 'dist/index.js');

// Each worker fits its own engine and scores one image; the main thread compares.
const workerSource = `
const { parentPort, workerData } = require('node:worker_threads');
import(workerData.dist).then(async ({ Engine }) => {
  const engine = await Engine.create({ head: false, backbone: 'random_cnn', resize: null, crop: null, coreset: { ratio: 0.25 }, calibration: false, threads: 1 });
  await engine.fit(workerData.train);
  const r = await engine.score(workerData.probe);
  parentPort.postMessage({ score: r.score, size: r.map.length });
}).catch((e) => parentPort.postMessage({ error: String(e && e.stack || e) }));
`;

describe.skipIf(!existsSync(dist))('worker threads', () => {
  it('runs two engines in two workers at once, with the same result as the main thread', async () => {
    const data = await syntheticDataset();
    const train = data.train.slice(0, 6);
    const probe = data.test[data.test.length - 1].path;
    const run = () =>
      new Promise<{ score: number; size: number; error?: string }>((resolve, reject) => {
        const w = new Worker(workerSource, { eval: true, workerData: { dist, train, probe } });
        w.once('message', (m) => {
          resolve(m);
          void w.terminate();
        });
        w.once('error', reject);
      });
    const [a, b] = await Promise.all([run(), run()]);
    expect(a.error).toBeUndefined();
    expect(b.error).toBeUndefined();
    expect(a.score).toBe(b.score);
    expect(a.size).toBe(96 * 96);
    const { Engine } = await import('../lib/index.js');
    const main = await Engine.create({ head: false, backbone: 'random_cnn', resize: null, crop: null, coreset: { ratio: 0.25 }, calibration: false, threads: 1 });
    await main.fit(train);
    expect((await main.score(probe)).score).toBe(a.score);
  });
});
