// The MVTec AD folder reader and mask decoding, on a small fake tree of real PNG/JPEG/TIFF files,
// and (when ../shared/datasets is present) the file counts of the real datasets.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { listImages, readMask, readMvtecDataset } from '../lib/eval/dataset.js';
import { ReconpatchError } from '../lib/errors.js';

const sharedDatasets = fileURLToPath(new URL('../../shared/datasets', import.meta.url));
const hasSharedDatasets = existsSync(sharedDatasets);

/** Writes a grey image (PNG, JPEG or TIFF by extension) from raw bytes; creates folders. */
async function writeImage(file: string, pixels: number[] | Uint8Array, width: number, height: number, channels: 1 | 2 | 3 | 4 = 1) {
  await mkdir(path.dirname(file), { recursive: true });
  await sharp(Uint8Array.from(pixels), { raw: { width, height, channels } }).toFile(file);
}

const flat = (value: number) => new Uint8Array(8 * 8).fill(value);

/** The error a promise rejects with. */
async function rejection(p: Promise<unknown>): Promise<ReconpatchError> {
  try {
    await p;
  } catch (err) {
    return err as ReconpatchError;
  }
  throw new Error('expected a rejection');
}

describe('readMvtecDataset on a fake tree', () => {
  let root: string;
  let cat: string;

  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'reconpatch-dataset-'));
    cat = path.join(root, 'widget');
    // Names chosen to check code-unit order ('10' < '2' < 'a'), extension case and non-images.
    for (const name of ['2.png', '10.png', 'a.PNG']) await writeImage(path.join(cat, 'train/good', name), flat(128), 8, 8);
    await writeFile(path.join(cat, 'train/good/notes.txt'), 'not an image');
    await mkdir(path.join(cat, 'train/good/folder.png')); // a folder with an image-like name
    await writeImage(path.join(cat, 'test/good/g0.png'), flat(128), 8, 8);
    // MVTec names: c0 has c0_mask.png, c1 has no mask at all.
    await writeImage(path.join(cat, 'test/crack/c0.png'), flat(128), 8, 8);
    await writeImage(path.join(cat, 'test/crack/c1.png'), flat(128), 8, 8);
    await writeImage(path.join(cat, 'ground_truth/crack/c0_mask.png'), flat(255), 8, 8);
    // BTAD/MPDD-style names: the mask has the image's stem, and possibly another extension.
    await writeImage(path.join(cat, 'test/hole/h0.png'), flat(128), 8, 8);
    await writeImage(path.join(cat, 'ground_truth/hole/h0.png'), flat(255), 8, 8);
    await writeImage(path.join(cat, 'test/hole/h1.jpg'), flat(128), 8, 8);
    await writeImage(path.join(cat, 'ground_truth/hole/h1.tif'), flat(255), 8, 8);
  });

  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('lists train images sorted by code unit, skipping non-images and folders', async () => {
    const data = await readMvtecDataset(root, 'widget');
    expect(data.root).toBe(root);
    expect(data.category).toBe('widget');
    expect(data.train.map((p) => path.basename(p))).toEqual(['10.png', '2.png', 'a.PNG']);
    expect(data.train[0]).toBe(path.join(cat, 'train/good/10.png'));
  });

  it('labels test images, finds MVTec and BTAD-style masks and counts missing ones', async () => {
    const data = await readMvtecDataset(root, 'widget');
    const rel = (p: string | null) => (p === null ? null : path.relative(cat, p));
    expect(data.test.map((t) => ({ ...t, path: rel(t.path), maskPath: rel(t.maskPath) }))).toEqual([
      { path: 'test/crack/c0.png', label: 1, defect: 'crack', maskPath: 'ground_truth/crack/c0_mask.png' },
      { path: 'test/crack/c1.png', label: 1, defect: 'crack', maskPath: null },
      { path: 'test/good/g0.png', label: 0, defect: 'good', maskPath: null },
      { path: 'test/hole/h0.png', label: 1, defect: 'hole', maskPath: 'ground_truth/hole/h0.png' },
      { path: 'test/hole/h1.jpg', label: 1, defect: 'hole', maskPath: 'ground_truth/hole/h1.tif' },
    ]);
    expect(data.missingMasks).toBe(1);
  });

  it('throws ERR_IO naming the missing or empty folder', async () => {
    const missingCategory = await rejection(readMvtecDataset(root, 'nope'));
    expect(missingCategory).toBeInstanceOf(ReconpatchError);
    expect(missingCategory.code).toBe('ERR_IO');
    expect(missingCategory.message).toContain(path.join(root, 'nope'));

    await mkdir(path.join(root, 'notrain/test/good'), { recursive: true });
    const noTrain = await rejection(readMvtecDataset(root, 'notrain'));
    expect(noTrain.code).toBe('ERR_IO');
    expect(noTrain.message).toMatch(/train.good.*is missing/);

    await mkdir(path.join(root, 'emptytrain/train/good'), { recursive: true });
    expect((await rejection(readMvtecDataset(root, 'emptytrain'))).message).toMatch(/train.good.*has no images/);

    await writeImage(path.join(root, 'notest/train/good/0.png'), flat(0), 8, 8);
    expect((await rejection(readMvtecDataset(root, 'notest'))).message).toMatch(/notest.test.*is missing/);

    await mkdir(path.join(root, 'emptytest/test/good'), { recursive: true });
    await writeImage(path.join(root, 'emptytest/train/good/0.png'), flat(0), 8, 8);
    expect((await rejection(readMvtecDataset(root, 'emptytest'))).message).toMatch(/emptytest.test.*has no images/);
  });
});

describe('listImages', () => {
  it('lists a folder sorted, returns a single file as is, rejects a missing path', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'reconpatch-list-'));
    try {
      for (const name of ['b.jpeg', 'A.bmp.png', 'c.tiff']) await writeImage(path.join(dir, name), flat(9), 8, 8);
      expect((await listImages(dir)).map((p) => path.basename(p))).toEqual(['A.bmp.png', 'b.jpeg', 'c.tiff']);
      expect(await listImages(path.join(dir, 'b.jpeg'))).toEqual([path.join(dir, 'b.jpeg')]);
      // Full globs, not just * and ?: a character class and braces.
      expect((await listImages(path.join(dir, '[a-b]*'))).map((p) => path.basename(p))).toEqual(['b.jpeg']);
      expect((await listImages(path.join(dir, '{A,c}.*'))).map((p) => path.basename(p))).toEqual(['A.bmp.png', 'c.tiff']);
      const err = await rejection(listImages(path.join(dir, 'missing')));
      expect(err.code).toBe('ERR_IO');
      expect(err.message).toContain('does not exist');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('readMask', () => {
  let dir: string;
  // 4×2 mask: 127 and below is background, 128 and above is defect.
  const grey = [0, 255, 128, 127, 255, 0, 200, 10];
  const binary = [0, 1, 1, 0, 1, 0, 1, 0];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'reconpatch-mask-'));
    await writeImage(path.join(dir, 'grey.png'), grey, 4, 2);
    // RGBA: the grey value comes from the colour, the alpha channel is ignored.
    await writeImage(path.join(dir, 'rgba.png'), grey.flatMap((v) => [v, v, v, 255]), 4, 2, 4);
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('thresholds at 127 to 0/1 at the same size', async () => {
    expect(Array.from(await readMask(path.join(dir, 'grey.png'), 4, 2))).toEqual(binary);
    expect(Array.from(await readMask(path.join(dir, 'rgba.png'), 4, 2))).toEqual(binary);
  });

  it('resizes with nearest neighbour, staying binary', async () => {
    const up = await readMask(path.join(dir, 'grey.png'), 8, 4);
    for (let y = 0; y < 4; y++) for (let x = 0; x < 8; x++) expect(up[y * 8 + x]).toBe(binary[(y >> 1) * 4 + (x >> 1)]);
    // Down to 2×1: source pixels at floor((x + 0.5)·4/2) = 1, 3 and floor(0.5·2/1) = row 1.
    expect(Array.from(await readMask(path.join(dir, 'grey.png'), 2, 1))).toEqual([binary[5], binary[7]]);
  });

  it('throws ERR_IO for an unreadable mask', async () => {
    const err = await rejection(readMask(path.join(dir, 'missing.png'), 4, 2));
    expect(err.code).toBe('ERR_IO');
    expect(err.message).toContain('missing.png');
  });
});

describe('real datasets in ../shared/datasets', () => {
  const why = hasSharedDatasets ? '' : ` (skipped: ../shared/datasets is absent, looked in ${sharedDatasets})`;

  it.skipIf(!hasSharedDatasets)(`metal_plate: 64 train, 16 good test, 81 defective test, 0 missing masks${why}`, async () => {
    const data = await readMvtecDataset(sharedDatasets, 'metal_plate');
    expect(data.train).toHaveLength(64);
    expect(data.test.filter((t) => t.label === 0)).toHaveLength(16);
    expect(data.test.filter((t) => t.label === 1)).toHaveLength(81);
    expect(data.missingMasks).toBe(0);
    expect(data.test.filter((t) => t.label === 1).every((t) => t.maskPath !== null && existsSync(t.maskPath))).toBe(true);
  });

  it.skipIf(!hasSharedDatasets || !existsSync(path.join(sharedDatasets, 'magnetic_tile')))(
    `magnetic_tile: 762 train, 190 good test, 392 defective test in 5 types${why}`,
    async () => {
      const data = await readMvtecDataset(sharedDatasets, 'magnetic_tile');
      expect(data.train).toHaveLength(762);
      expect(data.test.filter((t) => t.label === 0)).toHaveLength(190);
      expect(data.test.filter((t) => t.label === 1)).toHaveLength(392);
      expect(new Set(data.test.filter((t) => t.label === 1).map((t) => t.defect))).toEqual(new Set(['blowhole', 'break', 'crack', 'fray', 'uneven']));
      expect(data.missingMasks).toBe(0);
    },
  );
});
