/** Runs async calls one at a time, in the order they were made (an engine's or ensemble's calls). */
export class CallQueue {
  #tail: Promise<unknown> = Promise.resolve();

  /** Runs `fn` after every call queued before it, whatever their outcome. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn, fn);
    this.#tail = result.catch(() => undefined);
    return result;
  }
}
