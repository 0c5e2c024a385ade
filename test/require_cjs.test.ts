// The package is ESM only; CommonJS projects load it with require(esm), unflagged from Node
// 20.19.0 and 22.12.0 (issue 31, item 5), which is why engines.node says >=20.19. A CommonJS
// script in a project of its own, with the package linked into its node_modules, require()s both
// entry points. require(esm) refuses a module graph with top-level await: this keeps it out.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { repoRoot, tempDir } from './support/data.js';

const dist = path.join(repoRoot, 'dist/index.js');

describe('CommonJS consumers', () => {
  const dir = tempDir('require-cjs');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('engines.node is the first Node 20 with require(esm) unflagged, and this Node satisfies it', () => {
    const engines = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')).engines.node as string;
    expect(engines).toBe('>=20.19');
    const [major, minor] = process.versions.node.split('.').map(Number);
    expect(major > 20 || (major === 20 && minor >= 19)).toBe(true);
  });

  it.skipIf(!existsSync(dist))("require('reconpatch') and require('reconpatch/eval') work from a CommonJS project", () => {
    const project = path.join(dir, 'cjs-app');
    mkdirSync(path.join(project, 'node_modules'), { recursive: true });
    writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'cjs-app', type: 'commonjs', private: true }));
    symlinkSync(repoRoot, path.join(project, 'node_modules', 'reconpatch'), 'dir');
    const script = path.join(project, 'main.cjs');
    writeFileSync(
      script,
      [
        "const m = require('reconpatch');",
        "const byPath = require(" + JSON.stringify(dist) + ');',
        "const evaluation = require('reconpatch/eval');",
        'console.log(JSON.stringify({ engine: typeof m.Engine, pull: typeof m.pullWeights, same: m.Engine === byPath.Engine, eval: Object.keys(evaluation).length }));',
      ].join('\n'),
    );
    const r = spawnSync(process.execPath, [script], { cwd: project, encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).not.toMatch(/ERR_REQUIRE_ESM|ERR_REQUIRE_ASYNC_MODULE/);
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}');
    expect(out).toMatchObject({ engine: 'function', pull: 'function', same: true });
    expect(out.eval).toBeGreaterThan(0);
  }, 60_000);
});
