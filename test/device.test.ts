// Devices on the build under test, on this machine (no GPU): on a CPU build (Debian's libtorch 1.13,
// the PyTorch 2.13 CPU wheel) 'cuda' is refused as a CPU-only build; on the CUDA build (PyTorch 2.14.1
// + CUDA 13) it is refused because no CUDA device is visible. Either way ERR_DEVICE_UNAVAILABLE at
// Engine.create, nothing is left broken, and 'auto' picks the CPU. CI runs this file against both.
import { describe, expect, it } from 'vitest';

import { Engine, ReconpatchError, runtimeInfo } from '../lib/index.js';
import { syntheticDataset } from './support/data.js';

const base = { head: false, backbone: 'random_cnn', resize: null, crop: null, coreset: { ratio: 0.25 }, calibration: false } as const;

describe('device selection without a GPU', () => {
  it('runtimeInfo says which libtorch and addon are in use, and that no CUDA device is visible', () => {
    const rt = runtimeInfo();
    console.info(`[device] libtorch ${rt.libtorch.version} ${rt.libtorch.variant} (${rt.libtorch.source}), built with ${rt.builtWith}, addon ${rt.addon}`);
    expect(rt.builtWith.split('.').slice(0, 2)).toEqual(rt.libtorch.version.split('.').slice(0, 2));
    expect(rt.cudaBuild).toBe(rt.libtorch.variant === 'cuda');
    expect(rt.cudaDevices).toBe(0);
    if (process.env.RECONPATCH_LIBTORCH) expect(rt.libtorch.source).toBe('RECONPATCH_LIBTORCH');
  });

  it("device: 'cuda' fails at Engine.create with ERR_DEVICE_UNAVAILABLE and says why and what to do", async () => {
    const err = await Engine.create({ ...base, device: 'cuda' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ReconpatchError);
    expect((err as ReconpatchError).code).toBe('ERR_DEVICE_UNAVAILABLE');
    const message = (err as ReconpatchError).message;
    if (runtimeInfo().cudaBuild) {
      expect(message).toMatch(/no CUDA device is visible/);
      expect(message).not.toMatch(/CPU-only/);
    } else {
      expect(message).toMatch(/CPU-only/);
    }
    expect(message).toMatch(/device: 'cpu' or 'auto'/);
    expect(message).not.toMatch(/Exception raised from|frame #/);
    // Twice: the failure is clean and repeatable, not a one-off crash of the addon.
    await expect(Engine.create({ ...base, device: 'cuda' })).rejects.toMatchObject({ code: 'ERR_DEVICE_UNAVAILABLE' });
  });

  it("'auto' and 'cpu' give the CPU, and fit + score still work after the refusal", async () => {
    const auto = await Engine.create({ ...base, device: 'auto' });
    expect(auto.info.device).toBe('cpu');
    const cpu = await Engine.create({ ...base, device: 'cpu' });
    expect(cpu.info.device).toBe('cpu');
    const data = await syntheticDataset();
    await auto.fit(data.train.slice(0, 8));
    const good = await auto.score(data.test.find((t) => t.label === 0)!.path);
    const bad = await auto.score(data.test.find((t) => t.label === 1)!.path);
    expect(Number.isFinite(good.score)).toBe(true);
    expect(bad.score).toBeGreaterThan(good.score);
  });
});
