/**
 * Ordered, bounded-in-flight mapping of a (possibly endless) Iterable or AsyncIterable: the
 * machinery behind `Engine.scoreStream` and `Ensemble.scoreStream`.
 */
import { ReconpatchError } from '../errors.js';

/** Options of {@link orderedMap}. */
export interface OrderedMapOptions {
  /** Items run at once; the next input is pulled only when fewer are in flight. A positive integer. */
  concurrency: number;
  /** Stops within one item: throws ERR_ABORTED (`'<name> was aborted'`). */
  signal?: AbortSignal;
  /** `'throw'` ends at the first failed item (its error); `'yield'` reports it as `{ index, error }` and goes on. */
  onError: 'throw' | 'yield';
  /** The caller's name, for messages: `'<name> expects an Iterable or AsyncIterable of <items>'`. */
  name: string;
  /** What the source holds, for messages (e.g. `'images'`). */
  items: string;
}

/** One outcome of {@link orderedMap}: the input's position and its result or error. */
export type OrderedOutcome<R> = { index: number; result: R } | { index: number; error: ReconpatchError };

/**
 * Runs `run` on every item of `source` with at most `concurrency` running at once, yielding the
 * outcomes in input order. Inputs are pulled only when there is room (backpressure). `run` is
 * expected to reject with a ReconpatchError. On exit (done, error, abort, or the consumer
 * stopping early) waits for the items still running, then closes the source's iterator.
 * Throws ERR_INVALID_OPTION (bad concurrency, onError or source) on the first pull, ERR_ABORTED,
 * ERR_INPUT (the source's iterator threw; its error is the `cause`).
 */
export async function* orderedMap<T, R>(
  source: Iterable<T> | AsyncIterable<T>,
  run: (item: T, index: number) => Promise<R>,
  { concurrency, signal, onError, name, items }: OrderedMapOptions,
): AsyncGenerator<OrderedOutcome<R>, void, undefined> {
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new ReconpatchError('ERR_INVALID_OPTION', 'concurrency must be a positive integer');
  if (onError !== 'throw' && onError !== 'yield') throw new ReconpatchError('ERR_INVALID_OPTION', "onError must be 'throw' or 'yield'");
  const s = source as Partial<AsyncIterable<T> & Iterable<T>>;
  // The caller's own iterable failing is ERR_INPUT, its error the cause: not reconpatch failing.
  const inputError = (err: unknown) =>
    new ReconpatchError('ERR_INPUT', `${name}: the ${items} iterable threw (${err instanceof Error ? err.message : String(err)})`, { cause: err });
  let iterator: AsyncIterator<T> | Iterator<T> | undefined;
  try {
    iterator = s?.[Symbol.asyncIterator]?.() ?? s?.[Symbol.iterator]?.();
  } catch (err) {
    throw inputError(err);
  }
  if (!iterator) throw new ReconpatchError('ERR_INVALID_OPTION', `${name} expects an Iterable or AsyncIterable of ${items}`);
  let sourceError: ReconpatchError | undefined;
  const aborted = () => new ReconpatchError('ERR_ABORTED', `${name} was aborted`);
  const inFlight: Promise<OrderedOutcome<R>>[] = [];
  let next = 0;
  let exhausted = false;
  try {
    for (;;) {
      while (!exhausted && inFlight.length < concurrency) {
        if (signal?.aborted) throw aborted();
        let item: IteratorResult<T>;
        try {
          item = await iterator.next();
        } catch (err) {
          // A source that threw is finished (no return() to call); the items it gave before
          // still come out, in order, then its error.
          sourceError = inputError(err);
          exhausted = true;
          break;
        }
        if (item.done) {
          exhausted = true;
          break;
        }
        const index = next++;
        inFlight.push(run(item.value, index).then((result) => ({ index, result }), (error: ReconpatchError) => ({ index, error })));
      }
      const head = inFlight.shift();
      if (!head) {
        if (sourceError) throw sourceError;
        return;
      }
      const outcome = await head;
      if (signal?.aborted) throw aborted();
      if ('error' in outcome && onError === 'throw') throw outcome.error;
      yield outcome;
    }
  } finally {
    await Promise.allSettled(inFlight); // nothing left running
    if (!sourceError) await iterator.return?.();
  }
}
