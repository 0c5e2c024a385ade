/**
 * The ensemble model file: magic "RCPENSEM", u32 format version, u32 section count, sections
 * (4-byte tag, u64 length, bytes): one `META` JSON section (member backbones, normalisers,
 * calibration), then one `MEMB` section per member holding that member's complete model-file
 * bytes (`Engine.saveBytes`); then a SHA-256 of everything before it. Encoded and decoded on
 * bytes; writing a file is ../engine/model_file.ts's job.
 */
import { createHash } from 'node:crypto';

import type { Calibration } from '../calibration.js';
import { ReconpatchError } from '../errors.js';
import { type StoredModel, readStoredModel } from '../engine/model_info.js';
import type { CalibrationOptions } from '../options.js';
import type { MemberRange } from './fusion.js';

export const MAGIC = Buffer.from('RCPENSEM');
const FORMAT_VERSION = 1;
export const MAX_MEMBERS = 16;
// Every section's length is an u64, but a model above this is certainly damage.
const MAX_SECTION = 2 ** 40;

export interface EnsembleMeta {
  format: 'reconpatch-ensemble';
  members: { backbone: string }[];
  calibrationOptions: CalibrationOptions;
  ranges: MemberRange[] | null;
  calibration: Calibration | null;
  /** The ensemble's identity (../engine/model_info.ts); absent in older files. */
  model?: StoredModel | null;
}

/** Container layout: magic | u32 version | u32 sections | (4-byte tag, u64 length, bytes)* | sha256 of all before. */
export function buildContainer(meta: EnsembleMeta, members: Buffer[]): Buffer {
  const sections: [string, Buffer][] = [['META', Buffer.from(JSON.stringify(meta))], ...members.map((m): [string, Buffer] => ['MEMB', m])];
  const header = Buffer.alloc(8);
  header.writeUInt32LE(FORMAT_VERSION, 0);
  header.writeUInt32LE(sections.length, 4);
  const parts: Buffer[] = [MAGIC, header];
  for (const [tag, body] of sections) {
    const head = Buffer.alloc(12);
    head.write(tag, 0, 'latin1');
    head.writeBigUInt64LE(BigInt(body.length), 4);
    parts.push(head, body);
  }
  const hash = createHash('sha256');
  for (const p of parts) hash.update(p);
  parts.push(hash.digest());
  return Buffer.concat(parts);
}

export function parseContainer(bytes: Buffer, label: string): { meta: EnsembleMeta; members: Buffer[] } {
  const damaged = (why: string) => new ReconpatchError('ERR_MODEL_FILE', `${label} is not a valid reconpatch ensemble model (${why}); re-save it or refit`);
  if (bytes.length < MAGIC.length + 8 + 32 || !bytes.subarray(0, MAGIC.length).equals(MAGIC)) throw damaged('no ensemble header');
  const version = bytes.readUInt32LE(MAGIC.length);
  if (version !== FORMAT_VERSION) throw damaged(`format version ${version}, this reconpatch reads ${FORMAT_VERSION}`);
  const body = bytes.subarray(0, bytes.length - 32);
  if (!createHash('sha256').update(body).digest().equals(bytes.subarray(bytes.length - 32))) throw damaged('checksum mismatch: the file is damaged or truncated');
  const count = bytes.readUInt32LE(MAGIC.length + 4);
  if (count < 2 || count > MAX_MEMBERS + 1) throw damaged(`${count} sections`);
  let at = MAGIC.length + 8;
  const sections: [string, Buffer][] = [];
  for (let s = 0; s < count; s++) {
    if (at + 12 > body.length) throw damaged('truncated section header');
    const tag = body.toString('latin1', at, at + 4);
    const length = body.readBigUInt64LE(at + 4);
    at += 12;
    if (length > BigInt(Math.min(MAX_SECTION, body.length - at))) throw damaged(`section ${tag} overruns the file`);
    sections.push([tag, body.subarray(at, at + Number(length))]);
    at += Number(length);
  }
  if (at !== body.length) throw damaged('trailing bytes after the last section');
  if (sections[0][0] !== 'META' || sections.slice(1).some(([tag]) => tag !== 'MEMB')) throw damaged('unexpected sections');
  let meta: EnsembleMeta;
  try {
    meta = JSON.parse(sections[0][1].toString('utf8')) as EnsembleMeta;
  } catch {
    throw damaged('unreadable META section');
  }
  const members = sections.slice(1).map(([, b]) => b);
  const finite = (x: unknown) => typeof x === 'number' && Number.isFinite(x);
  const ok =
    meta?.format === 'reconpatch-ensemble' &&
    Array.isArray(meta.members) && meta.members.length === members.length && meta.members.every((m) => typeof m?.backbone === 'string') &&
    finite(meta.calibrationOptions?.holdout) && finite(meta.calibrationOptions?.minImages) &&
    (meta.ranges === null
      ? meta.calibration === null
      : Array.isArray(meta.ranges) && meta.ranges.length === members.length &&
        meta.ranges.every((r) => finite(r?.scoreMin) && finite(r?.scoreMax) && finite(r?.mapMin) && finite(r?.mapMax) && r.scoreMax >= r.scoreMin && r.mapMax >= r.mapMin) &&
        // Today's calibrations and older ones (mean + 3 std) both carry these two.
        meta.calibration !== null && ['threshold', 'low'].every((k) => finite((meta.calibration as unknown as Record<string, unknown>)[k])));
  if (!ok) throw damaged('inconsistent META section');
  meta.model = readStoredModel(meta.model, (why) => damaged(`META: ${why}`));
  return { meta, members };
}

