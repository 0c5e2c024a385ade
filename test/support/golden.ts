// Reads the golden fixtures made by test/fixtures/make_golden.py (raw little-endian arrays).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const goldenDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/golden');
export const meta = JSON.parse(readFileSync(path.join(goldenDir, 'meta.json'), 'utf8')) as {
  files: Record<string, { dtype: string; shape: number[] }>;
};

function bytes(name: string): Buffer {
  return readFileSync(path.join(goldenDir, name));
}

export function f32(name: string): { data: Float32Array; shape: number[] } {
  const b = bytes(name);
  return { data: new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)), shape: meta.files[name].shape };
}

export function i32(name: string): number[] {
  const b = bytes(name);
  return Array.from(new Int32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)));
}

export function u8(name: string): Uint8Array {
  return new Uint8Array(bytes(name));
}

/** max |a - b| / max |b|: a scale-aware error for small-valued tensors. */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / (scale || 1);
}
