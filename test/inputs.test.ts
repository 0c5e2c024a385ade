// The CLI's input expansion (lib/cli/inputs.ts) on a folder tree with symlinks (issue 26): a link
// back up (`loop -> .`) and a link to a sibling folder list each image once, by its real path.
import { mkdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { expandInputs } from '../lib/cli/inputs.js';
import { tempDir } from './support/data.js';

describe('expandInputs', () => {
  const dir = tempDir('inputs');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  // scored/{a,b}.png, scored/sub/c.png, scored/loop -> ., scored/sub/up -> .., scored/sib -> ../sibling (d.png)
  const scored = path.join(dir, 'scored');
  mkdirSync(path.join(scored, 'sub'), { recursive: true });
  mkdirSync(path.join(dir, 'sibling'));
  for (const f of ['scored/a.png', 'scored/b.png', 'scored/sub/c.png', 'sibling/d.png']) writeFileSync(path.join(dir, f), 'x');
  symlinkSync('.', path.join(scored, 'loop'));
  symlinkSync('..', path.join(scored, 'sub', 'up'));
  symlinkSync('../sibling', path.join(scored, 'sib'));
  const real = (p: string) => realpathSync(p);

  it('walks a folder with symlink loops by real path: each image once', async () => {
    const images = await expandInputs([scored]);
    expect(images.map((i) => path.relative(scored, i.path))).toEqual(['a.png', 'b.png', 'sib/d.png', 'sub/c.png']);
    expect(new Set(images.map((i) => real(i.path))).size).toBe(images.length);
  });

  it('drops an image reached twice through a glob or given again through a link', async () => {
    const images = await expandInputs([path.join(scored, '**/*.png'), path.join(scored, 'loop', 'a.png')]);
    const reals = images.map((i) => real(i.path));
    expect(new Set(reals).size).toBe(reals.length);
    expect(reals.sort()).toEqual(['scored/a.png', 'scored/b.png', 'scored/sub/c.png', 'sibling/d.png'].map((f) => real(path.join(dir, f))));
  });
});
