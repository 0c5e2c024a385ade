// worker.terminate() during a fit (issue 17, item 1): it used to abort the whole process (SIGABRT,
// "terminate called after throwing an instance of 'Napi::Error'") when the native work finished
// after the worker's environment was gone, and terminate() waited for the whole fit. Each case
// runs in a child process (test/support/terminate_child.mjs) so that a crash fails the test
// instead of the test runner; the child terminates its worker as soon as the fit reports the stage.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { repoRoot, syntheticDataset } from './support/data.js';

const dist = path.join(repoRoot, 'dist/index.js');
const child = path.join(repoRoot, 'test/support/terminate_child.mjs');

async function terminations(stage: 'head' | 'coreset' | 'score', options: object, tries: number) {
  const data = await syntheticDataset();
  const images = data.train.slice(0, 12);
  const r = spawnSync(process.execPath, [child, JSON.stringify({ dist, images, options, stage, tries })], { encoding: 'utf8', timeout: 170_000 });
  return { status: r.status, signal: r.signal, stderr: r.stderr, result: r.status === 0 ? JSON.parse(r.stdout.trim().split('\n').pop()!) : null };
}

describe.skipIf(!existsSync(dist))('worker.terminate() during a fit', () => {
  // 1,000,000 head iterations: terminate() returns only because the fit is cancelled when its
  // environment goes away (before, it waited for the whole head; here that would be hours).
  it('survives terminations in the head stage, and the fit stops', async () => {
    const r = await terminations('head', { backbone: 'random_cnn', head: { iterations: 1_000_000, plateau: 0 }, threads: 2 }, 5);
    expect(r.stderr).not.toContain('terminate called');
    expect([r.status, r.signal]).toEqual([0, null]);
    expect(r.result).toMatchObject({ hits: 5, misses: [] });
  });

  it('survives terminations while scores are in flight', async () => {
    const r = await terminations('score', { head: false, backbone: 'random_cnn', resize: null, crop: null, coreset: { ratio: 0.25 }, calibration: false, threads: 2 }, 5);
    expect(r.stderr).not.toContain('terminate called');
    expect([r.status, r.signal]).toEqual([0, null]);
    expect(r.result).toMatchObject({ hits: 5, misses: [] });
  });

  it('survives terminations in the coreset stage', async () => {
    const r = await terminations('coreset', { head: false, backbone: 'random_cnn', coreset: { ratio: 0.5 }, threads: 2 }, 6);
    expect(r.stderr).not.toContain('terminate called');
    expect([r.status, r.signal]).toEqual([0, null]);
    expect(r.result).toMatchObject({ hits: 6, misses: [] });
  });
});
