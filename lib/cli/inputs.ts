/**
 * The images a command works on, from what was typed: folders (every image below them,
 * recursively), globs (tinyglobby: `**`, `{a,b}`, `[0-9]`, ...), and files. Each image keeps its
 * path relative to a base shared by all the inputs, so outputs written per image (heatmaps) can
 * mirror the input tree: `a/part.jpg` and `b/part.jpg` never overwrite each other. Folders are
 * walked by real place: each directory once (a symlink loop ends), each image once by its real path.
 */
import { readdirSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';

import { escapePath, glob, isDynamicPattern } from 'tinyglobby';

import { ReconpatchError } from '../errors.js';
import { IMAGE_EXTENSIONS } from '../eval/dataset.js';

/**
 * One image to work on: its path as the user would recognise it (a file as given; an image found
 * in a folder or by a glob relative to the current directory, or absolute when the folder or glob
 * was), and its path relative to the inputs' common base. */
export interface InputImage {
  path: string;
  rel: string;
}

const isImage = (file: string) => IMAGE_EXTENSIONS.includes(path.extname(file).toLowerCase());

/**
 * Expands `inputs` in order (each folder and glob sorted; duplicates dropped). Throws ERR_IO for an
 * input that does not exist or matches no image, naming it.
 */
export async function expandInputs(inputs: string[]): Promise<InputImage[]> {
  const found: { file: string; base: string }[] = [];
  for (const input of inputs) {
    let kind: 'dir' | 'file' | null = null;
    try {
      const s = statSync(input);
      kind = s.isDirectory() ? 'dir' : 'file';
    } catch {
      kind = null;
    }
    if (kind === 'file') {
      found.push({ file: input, base: path.dirname(input) });
      continue;
    }
    let files: string[];
    let base: string;
    if (kind === 'dir') {
      base = input;
      files = walkImages(input).map((f) => shown(f, input));
    } else if (isDynamicPattern(input)) {
      base = staticBase(input);
      files = (await glob(input, { onlyFiles: true, expandDirectories: false, followSymbolicLinks: true, absolute: true })).filter(isImage).map((f) => shown(f, input));
    } else {
      throw new ReconpatchError('ERR_IO', `'${input}' does not exist (give image files, folders or glob patterns such as 'good/**/*.png')`);
    }
    if (files.length === 0) throw new ReconpatchError('ERR_IO', `'${input}' ${kind === 'dir' ? 'holds' : 'matches'} no images (${IMAGE_EXTENSIONS.join(' ')})`);
    for (const file of files.sort()) found.push({ file, base });
  }
  const seen = new Set<string>();
  const unique = found.filter(({ file }) => {
    const key = realPath(file);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  const root = commonDir(unique.map((f) => path.resolve(f.base)));
  return unique.map(({ file }) => ({ path: file, rel: path.relative(root, path.resolve(file)) }));
}

/**
 * How an image found below a folder or by a glob is shown (the same for both): absolute when the
 * folder or glob was typed absolute, else relative to the current directory.
 */
function shown(file: string, input: string): string {
  const abs = path.resolve(file);
  if (path.isAbsolute(input)) return abs;
  return path.relative(process.cwd(), abs) || abs;
}

/** `file`'s real path (symlinks resolved); its absolute path where that fails (a broken link: reading it reports the error). */
function realPath(file: string): string {
  try {
    return realpathSync(file);
  } catch {
    return path.resolve(file);
  }
}

/**
 * The images below `dir` (links followed, hidden entries skipped as a glob does), each directory
 * entered once by device and inode: a link back up (`loop -> .`) or a second link to a folder
 * already walked adds nothing. Entries that cannot be read are skipped.
 */
function walkImages(dir: string): string[] {
  const visited = new Set<string>();
  const files: string[] = [];
  const walk = (at: string) => {
    let names: string[];
    try {
      const s = statSync(at);
      const id = `${s.dev}:${s.ino}`;
      if (visited.has(id)) return;
      visited.add(id);
      names = readdirSync(at).sort();
    } catch {
      return;
    }
    for (const name of names) {
      if (name.startsWith('.')) continue;
      const entry = path.join(at, name);
      let s;
      try {
        s = statSync(entry);
      } catch {
        continue; // a broken link
      }
      if (s.isDirectory()) walk(entry);
      else if (s.isFile() && isImage(name)) files.push(entry);
    }
  };
  walk(dir);
  return files;
}

/** The folder part of a glob before its first wildcard ('test/**\/*.png' -> 'test'). */
function staticBase(pattern: string): string {
  const parts = pattern.split(/[\\/]/);
  const fixed: string[] = [];
  for (const p of parts) {
    if (isDynamicPattern(p) || escapePath(p) !== p) break;
    fixed.push(p);
  }
  const base = fixed.join('/');
  return base === '' ? (pattern.startsWith('/') ? '/' : '.') : base;
}

/** The deepest folder containing every one of `dirs` (absolute paths). */
function commonDir(dirs: string[]): string {
  if (dirs.length === 0) return process.cwd();
  let common = dirs[0].split(path.sep);
  for (const d of dirs.slice(1)) {
    const parts = d.split(path.sep);
    let i = 0;
    while (i < common.length && i < parts.length && common[i] === parts[i]) i++;
    common = common.slice(0, i);
  }
  return common.join(path.sep) || path.sep;
}

/**
 * Output paths under `dir` mirroring each image's relative path, with the extension replaced by
 * `.png` (kept before it, `part.jpg.png`, where two inputs would otherwise collide).
 */
export function mirroredPaths(images: InputImage[], dir: string): string[] {
  const plain = images.map((im) => path.join(dir, im.rel.replace(/\.[^./\\]+$/, '') + '.png'));
  const count = new Map<string, number>();
  for (const p of plain) count.set(p, (count.get(p) ?? 0) + 1);
  return images.map((im, i) => ((count.get(plain[i]) ?? 0) > 1 ? path.join(dir, `${im.rel}.png`) : plain[i]));
}
