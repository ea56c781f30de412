/**
 * The in-process wake-up bus. The log signals it after every commit; long-polls (and later streams and pings)
 * wait on it. A signal is a hint and storage is the truth: a waiter re-reads after waking, so a lost or early
 * signal only costs a read, never an event.
 */

interface Waiter {
  after: number;
  wake(woken: boolean): void;
}

/** Told of every append and every removed feed, after the fact. */
export interface WakeupListener {
  appended(feedId: number, head: number): void;
  removed(feedId: number): void;
}

export class WakeupBus {
  private readonly listeners = new Set<WakeupListener>();
  /** The newest head signalled per feed id, so a commit between a reader's read and its wait is not missed. */
  private readonly heads = new Map<number, number>();
  private readonly waiters = new Map<number, Set<Waiter>>();
  /**
   * The waiters of each abort signal. A signal gets one listener, the first time it is waited with, and keeps it;
   * a waiter only leaves the signal's set. Removing an AbortSignal's listener on every wake cost 2 µs, a twentieth
   * of answering a woken long-poll.
   */
  private readonly aborting = new WeakMap<AbortSignal, Set<Waiter>>();
  private closed = false;

  /** Called after a commit that made `head` the feed's newest sequence. */
  appended(feedId: number, head: number): void {
    if (head > (this.heads.get(feedId) ?? 0)) this.heads.set(feedId, head);
    for (const listener of this.listeners) listener.appended(feedId, head);
    const waiting = this.waiters.get(feedId);
    if (!waiting) return;
    for (const waiter of waiting) if (waiter.after < head) waiter.wake(true);
  }

  /** Called when a feed is deleted: its waiters wake and find it gone. */
  removed(feedId: number): void {
    this.heads.delete(feedId);
    for (const listener of this.listeners) listener.removed(feedId);
    for (const waiter of this.waiters.get(feedId) ?? []) waiter.wake(true);
  }

  /** The newest head signalled for a feed in this process (0 when none was). */
  headOf(feedId: number): number {
    return this.heads.get(feedId) ?? 0;
  }

  /** The feeds this process has seen appends to. */
  feedIds(): number[] {
    return [...this.heads.keys()];
  }

  listen(listener: WakeupListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** How many requests are waiting right now. */
  get waiting(): number {
    let count = 0;
    for (const set of this.waiters.values()) count += set.size;
    return count;
  }

  /**
   * Resolves true as soon as the feed's head passes `after`, or false when `timeoutMs` passes, `signal` aborts
   * or the bus closes (shutdown). Never rejects.
   */
  waitBeyond(feedId: number, after: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if ((this.heads.get(feedId) ?? 0) > after) return Promise.resolve(true);
    if (this.closed || timeoutMs <= 0 || signal?.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      let set = this.waiters.get(feedId);
      if (!set) {
        set = new Set();
        this.waiters.set(feedId, set);
      }
      const waiting = set;
      const aborting = signal ? this.abortingOf(signal) : undefined;
      const finish = (woken: boolean) => {
        clearTimeout(timer);
        aborting?.delete(waiter);
        waiting.delete(waiter);
        if (waiting.size === 0 && this.waiters.get(feedId) === waiting) this.waiters.delete(feedId);
        resolve(woken);
      };
      const waiter: Waiter = { after, wake: finish };
      const timer = setTimeout(() => finish(false), timeoutMs);
      aborting?.add(waiter);
      waiting.add(waiter);
    });
  }

  private abortingOf(signal: AbortSignal): Set<Waiter> {
    let waiters = this.aborting.get(signal);
    if (!waiters) {
      const set = new Set<Waiter>();
      signal.addEventListener("abort", () => {
        for (const waiter of [...set]) waiter.wake(false);
      });
      this.aborting.set(signal, set);
      waiters = set;
    }
    return waiters;
  }

  /** Shutdown: every waiter answers now with what it has. */
  close(): void {
    this.closed = true;
    for (const set of [...this.waiters.values()]) for (const waiter of [...set]) waiter.wake(false);
  }
}
