// The README's TypeScript examples compile against the public types (strict tsc).
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import { describe, expect, it } from 'vitest';

import { repoRoot } from './support/data.js';

const run = promisify(execFile);

// Free variables the examples use, declared so only the library's types are under test.
const PREAMBLE = `declare const goodImages: string[];\ndeclare const signal: AbortSignal;\n`;

describe('README examples', () => {
  it('type-check', async () => {
    const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
    const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
    expect(blocks.length).toBeGreaterThan(0);
    const dir = path.join(repoRoot, 'build/readme-types');
    mkdirSync(dir, { recursive: true });
    const files = blocks.map((code, i) => {
      const file = path.join(dir, `example${i}.ts`);
      const lib = path.relative(dir, path.join(repoRoot, 'lib/index.js')).split(path.sep).join('/');
      writeFileSync(file, `${PREAMBLE}${code.replaceAll("from 'reconpatch'", `from '${lib}'`)}\nexport {};\n`);
      return file;
    });
    const tsc = path.join(repoRoot, 'node_modules/typescript/bin/tsc');
    const args = ['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--skipLibCheck', '--types', 'node', ...files];
    const result = await run(process.execPath, [tsc, ...args], { cwd: repoRoot }).then(
      () => '',
      (e: { stdout: string }) => e.stdout,
    );
    expect(result).toBe('');
  });
});
