/**
 * Gathers concurrent `score()` calls into native batches without changing the engine's call
 * order: a batch takes one place in the engine's queue, and calls join the newest batch only while
 * nothing else (fit, save, ...) has been queued behind it. A call joins when it is made, with its
 * input still being decoded: its place in the order does not depend on how long decoding takes.
 */
import type { BatchingOptions } from '../options.js';

interface Pending<In, Out> {
  input: Promise<In>;
  resolve: (value: Out) => void;
  reject: (reason: unknown) => void;
}

interface Batch<In, Out> {
  items: Pending<In, Out>[];
  /** Set while the batch holds its turn open for `maxWaitMs`; called when it fills up. */
  wake?: () => void;
}

export class ScoreBatcher<In, Out> {
  readonly #enqueue: (task: () => Promise<void>) => Promise<void>;
  readonly #run: (inputs: In[]) => Promise<Out[]>;
  readonly #options: Required<BatchingOptions>;
  #open: Batch<In, Out> | null = null;
  #calls = 0;
  #batches = 0;

  /**
   * @param enqueue puts a task in the engine's queue (tasks run one at a time, in order)
   * @param run scores inputs in one native call, one output per input, in order
   */
  constructor(enqueue: (task: () => Promise<void>) => Promise<void>, run: (inputs: In[]) => Promise<Out[]>, options: Required<BatchingOptions>) {
    this.#enqueue = enqueue;
    this.#run = run;
    this.#options = options;
  }

  /**
   * Adds one input (being prepared: a failed preparation fails this call only) to the open batch,
   * or a new one, and resolves with its own output or error.
   */
  add(input: Promise<In>): Promise<Out> {
    let batch = this.#open;
    if (!batch || batch.items.length >= this.#options.maxBatch) {
      const fresh: Batch<In, Out> = { items: [] };
      batch = this.#open = fresh;
      void this.#enqueue(() => this.#process(fresh));
    }
    const open = batch;
    return new Promise<Out>((resolve, reject) => {
      open.items.push({ input, resolve, reject });
      if (open.items.length >= this.#options.maxBatch) open.wake?.();
    });
  }

  /** The options in force and how many calls were served in how many native batches. */
  get stats(): Required<BatchingOptions> & { calls: number; batches: number } {
    return { ...this.#options, calls: this.#calls, batches: this.#batches };
  }

  /** Closes the open batch: calls made from now on run after whatever is queued next. */
  seal(): void {
    this.#open = null;
  }

  async #process(batch: Batch<In, Out>): Promise<void> {
    const { maxBatch, maxWaitMs } = this.#options;
    if (maxWaitMs > 0 && batch.items.length < maxBatch && this.#open === batch) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, maxWaitMs);
        batch.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    if (this.#open === batch) this.#open = null;
    const ready: Pending<In, Out>[] = [];
    const inputs: In[] = [];
    for (const [i, outcome] of (await Promise.allSettled(batch.items.map((p) => p.input))).entries()) {
      if (outcome.status === 'rejected') batch.items[i].reject(outcome.reason);
      else {
        ready.push(batch.items[i]);
        inputs.push(outcome.value);
      }
    }
    if (ready.length === 0) return;
    this.#calls += ready.length;
    this.#batches += 1;
    try {
      const outputs = await this.#run(inputs);
      ready.forEach((p, i) => p.resolve(outputs[i]));
    } catch (err) {
      if (ready.length === 1) return ready[0].reject(err);
      // One bad input must not fail its batch-mates: run them one by one, each with its own outcome.
      for (const [i, p] of ready.entries()) {
        try {
          p.resolve((await this.#run([inputs[i]]))[0]);
        } catch (e) {
          p.reject(e);
        }
      }
    }
  }
}
