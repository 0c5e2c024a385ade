export type Section = [tag: string, payload: Buffer];

/** The format version and the [tag, payload] sections of a model file's bytes. */
export function parseModel(bytes: Buffer): { version: number; sections: Section[] };

/** Model file bytes from sections; `count` and `magic` may lie (for fuzzing). */
export function buildModel(sections: Section[], options: { version: number; count?: number; magic?: string }): Buffer;
