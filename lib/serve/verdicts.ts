/**
 * Recent verdicts, in memory: a bounded ring (newest first when read). The image and heatmap
 * bytes are kept only for the newest `keepImages` (they are what the review page shows and what
 * an update learns from); older verdicts keep their numbers and label.
 */
import { randomUUID } from 'node:crypto';

export type Label = 'good' | 'defect';

/** One verdict as the API answers it. */
export interface Verdict {
  id: string;
  score: number;
  normalizedScore: number | null;
  isAnomaly: boolean | null;
  /** normalizedScore within `borderlineBand` of the threshold (0.5): worth a look either way. */
  borderline: boolean;
  threshold: number | null;
  model: string;
  version: string;
  time: string;
  tag: string | null;
  /** The image's name as the client gave it (`?name=`), written in its heatmap's banner. */
  name: string | null;
  label: Label | null;
  /** The model version an update published from this verdict's image (labelled good), once it did. */
  learnedIn: string | null;
  hasImage: boolean;
}

interface Entry extends Verdict {
  image: Buffer | null;
  heatmap: Buffer | null;
}

export type VerdictFilter = 'anomalies' | 'borderline' | 'all';

export class VerdictLog {
  readonly #entries: Entry[] = [];
  readonly #byId = new Map<string, Entry>();
  readonly #max: number;
  readonly #keepImages: number;
  #withImages = 0;

  constructor(max: number, keepImages: number) {
    this.#max = max;
    this.#keepImages = keepImages;
  }

  add(v: Omit<Verdict, 'id' | 'label' | 'learnedIn' | 'hasImage'>, image: Buffer, heatmap: Buffer | null): Verdict {
    const keep = this.#keepImages > 0;
    const entry: Entry = { ...v, id: randomUUID(), label: null, learnedIn: null, hasImage: keep, image: keep ? image : null, heatmap: keep ? heatmap : null };
    this.#entries.push(entry);
    this.#byId.set(entry.id, entry);
    if (keep) this.#withImages++;
    // Drop bytes of the oldest verdicts that still hold them, then the oldest verdicts.
    for (let i = 0; this.#withImages > this.#keepImages && i < this.#entries.length; i++) {
      const e = this.#entries[i];
      if (e.image) {
        e.image = null;
        e.heatmap = null;
        e.hasImage = false;
        this.#withImages--;
      }
    }
    while (this.#entries.length > this.#max) {
      const old = this.#entries.shift()!;
      this.#byId.delete(old.id);
      if (old.image) this.#withImages--;
    }
    return publicView(entry);
  }

  get(id: string): (Verdict & { image: Buffer | null; heatmap: Buffer | null }) | undefined {
    return this.#byId.get(id);
  }

  label(id: string, label: Label): Verdict | undefined {
    const e = this.#byId.get(id);
    if (!e) return undefined;
    e.label = label;
    return publicView(e);
  }

  /** Newest first. */
  list({ filter = 'all', tag, model, limit = 100 }: { filter?: VerdictFilter; tag?: string; model?: string; limit?: number }): Verdict[] {
    const out: Verdict[] = [];
    for (let i = this.#entries.length - 1; i >= 0 && out.length < limit; i--) {
      const e = this.#entries[i];
      if (filter === 'anomalies' && e.isAnomaly !== true) continue;
      if (filter === 'borderline' && !e.borderline) continue;
      if (tag !== undefined && e.tag !== tag) continue;
      if (model !== undefined && e.model !== model) continue;
      out.push(publicView(e));
    }
    return out;
  }

  /**
   * The update batch of `model`: images of its verdicts an operator labelled good (false alarms and
   * good parts) that no update has learned yet, with their ids.
   */
  goodImages(model: string): { id: string; image: Buffer }[] {
    return this.#entries.filter((e) => e.model === model && e.label === 'good' && !e.learnedIn && e.image).map((e) => ({ id: e.id, image: e.image! }));
  }

  /** Marks verdicts as learned by the update that published `version` (so the next update does not take them again). */
  learned(ids: string[], version: string): void {
    for (const id of ids) {
      const e = this.#byId.get(id);
      if (e) e.learnedIn = version;
    }
  }

  /** Labelled verdicts of `model` (for the threshold view). */
  labelled(model: string): { score: number; label: Label; version: string }[] {
    return this.#entries.filter((e) => e.model === model && e.label).map((e) => ({ score: e.score, label: e.label!, version: e.version }));
  }
}

function publicView(e: Entry): Verdict {
  const { image: _i, heatmap: _h, ...v } = e;
  return { ...v };
}
