// Devices on this CPU-only build (Debian's libtorch 1.13 has no CUDA): 'cuda' is refused with
// ERR_DEVICE_UNAVAILABLE when the engine is created, nothing is left broken, and 'auto' picks the CPU.
// The CUDA code paths themselves cannot run here (no GPU, no CUDA libtorch); see README: CUDA.
import { describe, expect, it } from 'vitest';

import { Engine, ReconpatchError } from '../lib/index.js';
import { syntheticDataset } from './support/data.js';

const base = { backbone: 'random_cnn', resize: null, crop: null, coreset: { ratio: 0.25 }, calibration: false } as const;

describe('device selection on a CPU build', () => {
  it("device: 'cuda' fails at Engine.create with ERR_DEVICE_UNAVAILABLE and says what to do", async () => {
    const err = await Engine.create({ ...base, device: 'cuda' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ReconpatchError);
    expect((err as ReconpatchError).code).toBe('ERR_DEVICE_UNAVAILABLE');
    expect((err as ReconpatchError).message).toMatch(/CPU-only/);
    expect((err as ReconpatchError).message).toMatch(/device: 'cpu' or 'auto'/);
    expect((err as ReconpatchError).message).not.toMatch(/Exception raised from|frame #/);
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
