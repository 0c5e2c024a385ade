// Working resolution and tiling (issue 33): resize 'auto' never scales an image up, tiles stitch
// one grid (exactly the whole image's with one tile, no seam peaks on a flat image, defects where
// they are), and the choice round-trips through save/load. The built-in random CNN, real libtorch.
import './support/test_addon.js';

import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { AUTO_RESIZE, Engine, Ensemble, ReconpatchError } from '../lib/index.js';
import { type RawFrame, native } from '../lib/native.js';
import { resizedSize } from '../lib/io/images.js';
import { repoRoot, tempDir } from './support/data.js';

const base = { head: false, backbone: 'random_cnn', calibration: false, coreset: { ratio: 0.5 } } as const;

// A textured part (seeded noise on a gradient), optionally with a bright square defect at (x, y).
function frame(width: number, height: number, seed: number, defect?: { x: number; y: number; size: number }): RawFrame {
  const data = new Uint8Array(width * height * 3);
  let s = seed * 2654435761 + 1;
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      s = (s * 1103515245 + 12345) >>> 0;
      const v = 60 + ((x * 7 + y * 3) % 40) + ((s >>> 24) % 24);
      const inDefect = defect && x >= defect.x && x < defect.x + defect.size && y >= defect.y && y < defect.y + defect.size;
      for (let c = 0; c < 3; c++) data[(y * width + x) * 3 + c] = inDefect ? 250 : v + c * 10;
    }
  return { data, width, height, channels: 3 };
}

const flat = (v: number, side: number): RawFrame => ({ data: new Uint8Array(side * side * 3).fill(v), width: side, height: side, channels: 3 });
const argmax = (map: Float32Array) => map.reduce((best, v, i) => (v > map[best] ? i : best), 0);

describe("resize: 'auto'", () => {
  it('inspects small images at their own size and large ones at about 384²', async () => {
    const auto = await Engine.create({ ...base, resize: 'auto' });
    const native = await Engine.create({ ...base, resize: null });
    const fixed = await Engine.create({ ...base, resize: AUTO_RESIZE });
    const small = [0, 1, 2].map((i) => frame(120, 96, i));
    const large = [0, 1, 2].map((i) => frame(640, 480, i));
    // Small images: auto is the image's own size, bank row for bank row.
    const a = await auto.fit(small);
    const n = await native.fit(small);
    expect(a.patches).toBe(n.patches);
    const sa = await auto.score(frame(120, 96, 9));
    const sn = await native.score(frame(120, 96, 9));
    expect(sa.score).toBeCloseTo(sn.score, 5);
    // Large images: auto is resize 384 (they have more pixels than 384²).
    const a2 = await auto.fit(large);
    const f2 = await fixed.fit(large);
    expect(a2.patches).toBe(f2.patches);
    expect((await auto.score(frame(640, 480, 9))).score).toBeCloseTo((await fixed.score(frame(640, 480, 9))).score, 5);
    expect(auto.options).toMatchObject({ resize: AUTO_RESIZE, upscale: false, tileSize: 0 });
    for (const e of [auto, native, fixed]) await e.dispose();
  });

  it('checks the input budget on the size it will really work at', async () => {
    // A 4096 target would be 16.7 M pixels, over the default 2048² budget; without upscaling a
    // 100 x 100 image stays 100 x 100 and is taken, and the JS mirror agrees with the engine.
    expect(resizedSize(100, 100, { resize: 4096, resizeMode: 'area', upscale: false })).toEqual([100, 100]);
    expect(resizedSize(1000, 500, { resize: 384, resizeMode: 'area', upscale: false })).toEqual([544, 272]);
    const up = await Engine.create({ ...base, resize: 4096 });
    const noUp = await Engine.create({ ...base, resize: 4096, upscale: false });
    await expect(up.fit([frame(100, 100, 0)])).rejects.toMatchObject({ code: 'ERR_INVALID_IMAGE' });
    const summary = await noUp.fit([frame(100, 100, 0), frame(100, 100, 1)]);
    expect(summary.images).toBe(2);
    for (const e of [up, noUp]) await e.dispose();
  });
});

describe('tiles', () => {
  it('refuses tiles it cannot stitch, with what to change', async () => {
    for (const tiles of [{ size: 250 }, { size: 256, overlap: 256 }, { size: 0 }, { size: 256, stride: 8 }] as const) {
      const err = await Engine.create({ ...base, tiles: tiles as never }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ReconpatchError);
      expect((err as ReconpatchError).code).toBe('ERR_INVALID_OPTION');
    }
    await expect(Engine.create({ ...base, tiles: { size: 256, overlap: 64 } })).resolves.toBeInstanceOf(Engine);
  });

  it('are planned so the stitched grid takes no cell near a tile border the whole image does not have', () => {
    const { tilePlan } = native().internals!;
    for (const [length, tile, overlap] of [[384, 128, 64], [1000, 256, 128], [1264, 512, 128], [640, 160, 32], [200, 256, 64]]) {
      const plan = tilePlan(length, tile, overlap, 32, 8);
      const tiles = Array.from({ length: plan.length / 4 }, (_, i) => plan.slice(4 * i, 4 * i + 4));
      let next = 0; // the kept cells cover the axis once, in order
      for (const [i, [origin, size, from, to]] of tiles.entries()) {
        expect(origin % 32).toBe(0);
        expect(origin + size).toBeLessThanOrEqual(length);
        expect(origin / 8 + from).toBe(next);
        next = origin / 8 + to;
        // Every kept cell is at least about half the overlap (in cells) from a border it shares
        // with a neighbour; the image's own borders are kept as the whole image has them.
        const margin = Math.floor(overlap / 16) - 1;
        if (i > 0) expect(from).toBeGreaterThanOrEqual(margin);
        if (i < tiles.length - 1) expect(Math.ceil(size / 8) - to).toBeGreaterThanOrEqual(margin);
      }
      expect(next).toBe(Math.ceil(length / 8));
      expect(tiles.at(-1)![0] + tiles.at(-1)![1]).toBe(length);
    }
  });

  it('with one tile give exactly the whole image: same bank, scores and maps', async () => {
    const train = [0, 1, 2, 3].map((i) => frame(320, 240, i));
    const whole = await Engine.create({ ...base, resize: null });
    const oneTile = await Engine.create({ ...base, resize: null, tiles: { size: 320 } });
    expect((await whole.fit(train)).bankRows).toBe((await oneTile.fit(train)).bankRows);
    const probe = frame(320, 240, 7, { x: 100, y: 60, size: 12 });
    const [w, t] = [await whole.score(probe), await oneTile.score(probe)];
    expect(t.score).toBe(w.score);
    expect(t.map).toEqual(w.map);
    for (const e of [whole, oneTile]) await e.dispose();
  });

  it('stitch many tiles into one map at the image size that finds a defect where it is', async () => {
    const train = [0, 1, 2, 3].map((i) => frame(448, 320, i));
    const whole = await Engine.create({ ...base, resize: null });
    const tiled = await Engine.create({ ...base, resize: null, tiles: { size: 160, overlap: 64 } });
    await whole.fit(train);
    const summary = await tiled.fit(train);
    // The stitched grid covers the whole image: as many patches as the whole image's.
    expect(summary.patches).toBe((await whole.fit(train)).patches);
    for (const d of [{ x: 40, y: 40 }, { x: 200, y: 150 }, { x: 380, y: 260 }]) {
      const probe = frame(448, 320, 11, { ...d, size: 16 });
      const r = await tiled.score(probe);
      expect([r.width, r.height]).toEqual([448, 320]);
      const at = argmax(r.map);
      const [x, y] = [at % r.width, Math.floor(at / r.width)];
      expect(Math.hypot(x - (d.x + 8), y - (d.y + 8))).toBeLessThan(24);
      // The defect scores well above the same part without it.
      expect(r.score).toBeGreaterThan((await tiled.score(frame(448, 320, 11))).score * 1.2);
    }
    for (const e of [whole, tiled]) await e.dispose();
  });

  it('create no false peaks at the seams on a flat image', async () => {
    // Fitted on flat images, scored on a flat image of a grey none of them had: every cell is a
    // little off, so a seam whose features differ from the rest would stand out.
    const whole = await Engine.create({ ...base, resize: null });
    const tiled = await Engine.create({ ...base, resize: null, tiles: { size: 128, overlap: 64 } });
    for (const e of [whole, tiled]) await e.fit([flat(100, 384), flat(128, 384), flat(156, 384)]);
    const [w, t] = [await whole.score(flat(142, 384)), await tiled.score(flat(142, 384))];
    const columnMax = (m: Float32Array, x: number) => {
      let best = -Infinity;
      for (let y = 0; y < 384; y++) best = Math.max(best, m[y * 384 + x]);
      return best;
    };
    // Tiles start every 64 px: columns 64, 128, ... are where seams sit (the middle of each overlap).
    for (let x = 0; x < 384; x += 8) expect(columnMax(t.map, x)).toBeLessThanOrEqual(columnMax(w.map, x) * 1.03);
    expect(Math.abs(t.score - w.score)).toBeLessThanOrEqual(0.02 * w.score);
    for (const e of [whole, tiled]) await e.dispose();
  });

  it('work with calibration, a bounded fit, update() and an ensemble', async () => {
    const tiles = { size: 96, overlap: 32 };
    const train = [0, 1, 2, 3, 4, 5].map((i) => frame(224, 160, i));
    const engine = await Engine.create({ ...base, resize: null, tiles, calibration: {} });
    const bounded = await engine.fit(train, { maxStagedPatches: 600 });
    expect(bounded.calibrationImages).toBeGreaterThan(0);
    expect(engine.info.calibration?.threshold).toBeGreaterThan(0);
    expect(bounded.bankRows).toBeLessThanOrEqual(600);
    const update = await engine.update([frame(224, 160, 20, { x: 0, y: 0, size: 1 }), frame(224, 160, 21)]);
    expect(update.bankRows).toBeGreaterThanOrEqual(bounded.bankRows);
    const defect = frame(224, 160, 30, { x: 150, y: 70, size: 14 });
    expect((await engine.score(defect)).isAnomaly).toBe(true);
    const member = { head: false, backbone: 'random_cnn', resize: null, coreset: { ratio: 0.5 } } as const;
    const ensemble = await Ensemble.create({ members: [{ ...member, tiles }, { ...member, seed: 1 }] });
    await ensemble.fit(train);
    const r = await ensemble.score(defect);
    expect([r.width, r.height]).toEqual([224, 160]);
    expect(r.score).toBeGreaterThan((await ensemble.score(frame(224, 160, 31))).score);
    for (const e of [engine, ensemble]) await e.dispose();
  });

  it('round-trip through save/load and show in info', async () => {
    const engine = await Engine.create({ ...base, resize: 'auto', tiles: { size: 192, overlap: 32 } });
    await engine.fit([0, 1, 2].map((i) => frame(400, 300, i)));
    const file = path.join(tempDir('resolution'), 'tiled.rcp');
    await engine.save(file);
    const loaded = await Engine.load(file);
    expect(loaded.options).toMatchObject({ resize: AUTO_RESIZE, upscale: false, tileSize: 192, tileOverlap: 32 });
    const probe = frame(400, 300, 5, { x: 30, y: 200, size: 10 });
    const [a, b] = [await engine.score(probe), await loaded.score(probe)];
    expect(b.score).toBe(a.score);
    expect(b.map).toEqual(a.map);
    const info = execFileSync(process.execPath, [path.join(repoRoot, 'dist/cli/main.js'), 'info', file], { encoding: 'utf8' });
    expect(info).toMatch(/resize\s+auto \(about 384 x 384 px, never above the image's own size\)/);
    expect(info).toMatch(/tiles\s+192 px, overlap 32 px/);
    writeFileSync(path.join(path.dirname(file), 'info.txt'), info);
    for (const e of [engine, loaded]) await e.dispose();
  });
});
