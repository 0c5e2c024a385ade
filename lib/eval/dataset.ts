/**
 * MVTec AD folder layout (also BTAD/MPDD-style mask names):
 *   <root>/<category>/train/good/*            defect-free images to fit on
 *   <root>/<category>/test/good/*             defect-free test images
 *   <root>/<category>/test/<defect>/*         defective images
 *   <root>/<category>/ground_truth/<defect>/<stem>_mask.<ext> (or <stem>.<ext>)   255 = defect
 */
import { existsSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';

import sharp from 'sharp';
import { glob, isDynamicPattern } from 'tinyglobby';

import { ReconpatchError } from '../errors.js';

export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp'];

export interface DatasetItem {
  path: string;
  label: 0 | 1;
  defect: string;
  maskPath: string | null;
}

export interface Dataset {
  root: string;
  category: string;
  train: string[];
  test: DatasetItem[];
  /** Defective test images without a mask: they count for image metrics only. */
  missingMasks: number;
}

// A dataset problem is a problem with files on disk: ERR_IO.
const datasetError = (message: string) => new ReconpatchError('ERR_IO', message);

const isImage = (name: string) => IMAGE_EXTENSIONS.includes(path.extname(name).toLowerCase());

/**
 * Image files in a directory (sorted by name), a single image file as is, or the image files
 * matching a glob (tinyglobby: `*`, `**`, `?`, `[0-9]`, `{a,b}`), e.g. `good/*.png`, sorted.
 */
export async function listImages(dirOrFile: string): Promise<string[]> {
  let s;
  try {
    s = await stat(dirOrFile);
  } catch {
    if (isDynamicPattern(dirOrFile)) return (await glob(dirOrFile, { onlyFiles: true, expandDirectories: false })).filter(isImage).sort();
    throw datasetError(`'${dirOrFile}' does not exist`);
  }
  if (s.isFile()) return [dirOrFile];
  const entries = await readdir(dirOrFile, { withFileTypes: true });
  const names = entries.filter((e) => e.isFile() && isImage(e.name)).map((e) => e.name).sort();
  return names.map((n) => path.join(dirOrFile, n));
}

async function subdirs(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  return entries.filter((e) => e.isDirectory()).map((e) => e.name).sort();
}

function findMask(root: string, defect: string, stem: string): string | null {
  const dir = path.join(root, 'ground_truth', defect);
  for (const name of [`${stem}_mask`, stem]) {
    for (const ext of IMAGE_EXTENSIONS) {
      const p = path.join(dir, name + ext);
      if (existsSync(p)) return p;
    }
  }
  return null;
}

/** Reads a dataset's file lists. Throws ERR_IO naming the missing or empty folder. */
export async function readMvtecDataset(root: string, category: string): Promise<Dataset> {
  const base = path.join(root, category);
  const missing = (sub: string) => datasetError(`dataset folder '${path.join(base, sub)}' is missing (expected MVTec AD layout: <root>/<category>/train/good, test/<defect>)`);
  if (!existsSync(path.join(base, 'train/good'))) throw missing('train/good');
  const train = await listImages(path.join(base, 'train/good'));
  if (train.length === 0) throw datasetError(`'${path.join(base, 'train/good')}' has no images`);
  if (!existsSync(path.join(base, 'test'))) throw missing('test');
  const test: DatasetItem[] = [];
  let missingMasks = 0;
  for (const defect of await subdirs(path.join(base, 'test'))) {
    for (const p of await listImages(path.join(base, 'test', defect))) {
      const label = defect === 'good' ? 0 : 1;
      const maskPath = label ? findMask(base, defect, path.parse(p).name) : null;
      if (label && !maskPath) missingMasks++;
      test.push({ path: p, label, defect, maskPath });
    }
  }
  if (test.length === 0) throw datasetError(`'${path.join(base, 'test')}' has no images`);
  return { root, category, train, test, missingMasks };
}

/** A mask as 0/1 bytes at width x height (nearest-neighbour resize when sizes differ). */
export async function readMask(maskPath: string, width: number, height: number): Promise<Uint8Array> {
  let decoded;
  try {
    decoded = await sharp(maskPath).greyscale().raw().toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw new ReconpatchError('ERR_IO', `mask '${maskPath}' cannot be read: ${(err as Error).message}`, { cause: err });
  }
  const { data, info } = decoded;
  const c = info.channels; // greyscale() may still come back with 3 channels: read the first
  // Nearest neighbour: source pixel floor((x + 0.5) * srcW / width), likewise for rows.
  const out = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    const sy = Math.min(info.height - 1, Math.floor(((y + 0.5) * info.height) / height));
    for (let x = 0; x < width; x++) {
      const sx = Math.min(info.width - 1, Math.floor(((x + 0.5) * info.width) / width));
      out[y * width + x] = data[(sy * info.width + sx) * c] > 127 ? 1 : 0;
    }
  }
  return out;
}
