/** A queue of events pushed by a callback and awaited by a test, with no sleeps. */
export class EventQueue<T> {
  private items: T[] = [];
  private waiting: { resolve: (v: T) => void; reject: (e: unknown) => void } | undefined;
  private failure: unknown;
  ended = false;

  push(item: T): void {
    const w = this.waiting;
    if (w) {
      this.waiting = undefined;
      w.resolve(item);
    } else this.items.push(item);
  }

  fail(error: unknown): void {
    this.failure = error;
    const w = this.waiting;
    this.waiting = undefined;
    w?.reject(error);
  }

  end(): void {
    this.ended = true;
  }

  get size(): number {
    return this.items.length;
  }

  /** The next event; rejects after `timeoutMs` (a guard against hangs, not a wait for time). */
  next(timeoutMs = 15_000): Promise<T> {
    if (this.items.length > 0) return Promise.resolve(this.items.shift() as T);
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = undefined;
        reject(new Error(`no event within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting = {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }
}
