// A few hundred generated bad inputs (issue 17), from a fixed seed: random bytes, truncations,
// flipped bytes, extreme dimensions, crafted headers, raw frames and arguments of the wrong kind,
// special files; model files random, truncated, flipped and crafted with a valid checksum (bad
// options, bank shapes, metadata, sections, versions); torch wheels for `reconpatch libtorch`
// (random, truncated, flipped, and crafted: traversal, links, bombs; nothing may land outside the
// cache); requests to the service (examples/embed-fastify). Run in a
// child process (test/support/fuzz_child.mjs) so that a crash fails this test instead of killing
// the runner: every outcome must be a typed error (or, for damaged-but-decodable inputs, a
// result), and afterwards the engine and the server still give the same score as before.
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/index.js';
import { repoRoot, syntheticDataset, tempDir } from './support/data.js';

const dist = path.join(repoRoot, 'dist/index.js');
const child = path.join(repoRoot, 'test/support/fuzz_child.mjs');
const serverModule = path.join(repoRoot, 'examples/embed-fastify/server.mjs');

interface Case { kind: string; name: string; outcome: string; stack?: string }

// What each kind of case may end in. Images and models: a typed error of their kind, or a result
// where the child allows one (a damaged image that still decodes; a crafted model that is valid).
const ALLOWED: Record<string, RegExp> = {
  image: /^(ok|ERR_INVALID_IMAGE)$/,
  model: /^(ok|ERR_MODEL_FILE)$/,
  ensemble: /^ERR_MODEL_FILE$/,
  'model-arg': /^ERR_INVALID_OPTION$/,
  // Wheels: assembled or refused; the crafted unsafe ones always refused; nothing written outside the cache.
  wheel: /^(ok|ERR_LIBTORCH)$/,
  'wheel-valid': /^ok$/,
  'wheel-unsafe': /^ERR_LIBTORCH$/,
  'wheel-confined': /^ok$/,
  // 414: a path parameter over fastify's maxParamLength.
  server: /^(HTTP (400|401|403|404|405|409|413|414|415)|HTTP\/1\.1 400|closed)$/,
};

describe.skipIf(!existsSync(dist))('fuzz: bad inputs through score, load and the server', () => {
  const dir = tempDir('fuzz');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('gives a typed error for every bad input and leaves the process and its engines working', async () => {
    const data = await syntheticDataset();
    // resizeMode 'shorter': the raw strips (30000 x 8) must meet the resized-size limit. Under the
    // default 'area' mode (issue 16) a strip resizes to about 256^2 pixels and is scored, as it should.
    const engine = await Engine.create({ head: false, backbone: 'random_cnn', resizeMode: 'shorter', resize: 256, crop: 224, coreset: { ratio: 0.25 }, calibration: { holdout: 0.3 } });
    await engine.fit(data.train.slice(0, 6));
    const model = path.join(dir, 'model.rcp');
    await engine.save(model);
    const args = { dist, serverModule, model, probe: data.test[0].path, trainRoot: data.root, dir, seed: 17 };
    const r = spawnSync(process.execPath, [child, JSON.stringify(args)], { encoding: 'utf8', timeout: 150_000, maxBuffer: 1 << 26 });
    expect([r.status, r.signal], r.stderr.slice(-2000)).toEqual([0, null]);
    const { cases, live } = JSON.parse(r.stdout.trim().split('\n').pop()!) as { cases: Case[]; live: { before: number; after: number; health: number; serverScore: number } };
    const counts = Object.fromEntries(Object.keys(ALLOWED).map((k) => [k, cases.filter((c) => c.kind === k).length]));
    expect(cases.length).toBeGreaterThanOrEqual(300);
    expect(counts.image).toBeGreaterThanOrEqual(150);
    expect(counts.model).toBeGreaterThanOrEqual(100);
    expect(counts.server).toBeGreaterThanOrEqual(50);
    expect(counts.wheel + counts['wheel-unsafe']).toBeGreaterThanOrEqual(50);
    expect(counts['wheel-confined']).toBe(1);
    const unexpected = cases.filter((c) => !ALLOWED[c.kind]?.test(c.outcome));
    expect(unexpected).toEqual([]);
    // Every refusal was typed, and most inputs were refused (not silently accepted).
    expect(cases.filter((c) => c.kind === 'image' && c.outcome === 'ok').length).toBeLessThan(counts.image / 4);
    expect(live).toEqual({ before: live.before, after: live.before, health: 200, serverScore: live.before });
  });
});
