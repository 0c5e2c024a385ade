// Crafted model files for tests: a saved model's bytes taken apart into sections and put back
// together with a fresh checksum, as an older writer or an attacker would write them. The layout
// (native/core/io/model_file.cc): 8-byte magic, u32 version, u32 section count, then per section a
// 4-byte tag, a u64 length and the payload, then the SHA-256 of everything before it.
// Plain JavaScript so that child processes (fuzz_child.mjs) use it too; types in model_file.d.mts.
import { createHash } from 'node:crypto';

/** The format version and the [tag, payload] sections of a model file's bytes. */
export function parseModel(bytes) {
  const sections = [];
  let at = 16;
  for (let i = 0, count = bytes.readUInt32LE(12); i < count; i++) {
    const length = Number(bytes.readBigUInt64LE(at + 4));
    sections.push([bytes.toString('latin1', at, at + 4), bytes.subarray(at + 12, at + 12 + length)]);
    at += 12 + length;
  }
  return { version: bytes.readUInt32LE(8), sections };
}

/** Model file bytes from sections; `count` and `magic` may lie (for fuzzing). */
export function buildModel(sections, { version, count = sections.length, magic = 'RCPMODEL' }) {
  const head = Buffer.alloc(16);
  head.write(magic, 0, 'latin1');
  head.writeUInt32LE(version >>> 0, 8);
  head.writeUInt32LE(count >>> 0, 12);
  const parts = [head];
  for (const [tag, payload] of sections) {
    const h = Buffer.alloc(12);
    h.write(tag, 0, 'latin1');
    h.writeBigUInt64LE(BigInt(payload.length), 4);
    parts.push(h, payload);
  }
  const body = Buffer.concat(parts);
  return Buffer.concat([body, createHash('sha256').update(body).digest()]);
}
