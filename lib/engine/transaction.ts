/**
 * The fit (or update) transaction of Engine and Ensemble, written once: stage the images into
 * every native engine in one pass (./staged_fit.ts), gather the nominal evidence against the
 * pending models, let the caller decide what to commit (which engines, with which metadata), then
 * commit. A failure or abort anywhere before the commit leaves every engine as it was.
 */
import type { NominalEvidence } from '../calibration.js';
import type { ImageInput } from '../io/images.js';
import type { NativeEngine } from '../native.js';
import { FitControl, type StageFitOptions, type StagedFit, abortFit, nominalEvidence, stageFit } from './staged_fit.js';

/** What a transaction is run with: stageFit's options but the batch size (the first engine's), and who runs it. */
export interface TransactionOptions extends Omit<StageFitOptions, 'batchSize'> {
  /** 'engine' or 'ensemble' (for messages). */
  what: 'engine' | 'ensemble';
}

/** The caller's decision once the evidence is in: the engines to commit, each with its metadata, and what to return. */
export interface Decision<T> {
  commit: { engine: NativeEngine; metadata: string }[];
  result: T;
}

/**
 * Runs one transaction over `engines` (see the file comment). `decide` sees the staged fit and the
 * nominal evidence per engine (the same images, in the same order, for every engine) and may run
 * more checks on the pending models (`control` reports aborts and callback failures); engines it
 * does not commit are aborted. Throws as stageFit does.
 */
export async function fitTransaction<T>(
  engines: NativeEngine[],
  images: Iterable<ImageInput> | AsyncIterable<ImageInput>,
  options: TransactionOptions,
  decide: (staged: StagedFit, evidence: NominalEvidence[][], control: FitControl) => Promise<Decision<T>>,
): Promise<T> {
  const { what, signal, onProgress, ...stage } = options;
  const control = new FitControl(engines, signal, what, options.mode);
  try {
    const batchSize = engines[0].options().batchSize;
    const staged = await stageFit(engines, images, control, { ...stage, onProgress, batchSize });
    const evidence = await nominalEvidence(engines, staged, control, batchSize, onProgress && ((p) => onProgress(p, undefined)));
    const { commit, result } = await decide(staged, evidence, control);
    for (const e of engines) if (!commit.some((c) => c.engine === e)) e.fitAbort();
    for (const { engine, metadata } of commit) engine.fitCommit(metadata);
    return result;
  } catch (err) {
    abortFit(engines);
    throw control.explain(err);
  } finally {
    control.dispose();
  }
}
