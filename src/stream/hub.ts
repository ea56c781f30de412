import type { Storage } from "../db/database.js";
import { type Entry, readEntries } from "../db/events.js";
import type { WakeupBus, WakeupListener } from "../log/wakeup.js";
import type { Logger } from "../logger.js";

/**
 * The hub: per feed with open streams, an in-memory tail of the newest events. An append is read from storage
 * once, into the tail, and every stream of the feed takes it from there: one database read per append, not one
 * per stream.
 *
 * Streams pull from the tail at their own pace; the hub never pushes into per-connection queues. A stream whose
 * cursor has fallen out of the tail (it is slower than the tail is long) is told so and catches up from storage
 * with its own cursor. Memory is the tail (bounded in events and bytes) plus what each socket has buffered.
 */

export interface TailOptions {
  /** Most events kept per feed. */
  maxEvents: number;
  /** Most bytes of event JSON kept per feed. */
  maxBytes: number;
}

export const DEFAULT_TAIL: TailOptions = { maxEvents: 10_000, maxBytes: 8 * 1024 * 1024 };

/** Rows per storage read when the tail takes in new events. */
const FETCH_BATCH = 1000;

export class FeedTail {
  /** Contiguous: entries[i].sequence === base + 1 + i. */
  private entries: Entry[] = [];
  private bytes = 0;
  /** Every event in (base, last] is in `entries`. */
  private base: number;
  private waiters: Array<() => void> = [];
  streams = 0;
  pendingHead: number;
  fetching: Promise<void> | undefined;
  closed = false;

  constructor(
    readonly feedId: number,
    head: number,
    private readonly options: TailOptions,
  ) {
    this.base = head;
    this.pendingHead = head;
  }

  get last(): number {
    return this.base + this.entries.length;
  }

  /**
   * The events after `cursor` that the tail holds, or "behind" when some of them are no longer (or not yet
   * ever) in it, so the caller must read storage. An empty array means: nothing newer yet.
   */
  after(cursor: number): Entry[] | "behind" {
    if (cursor < this.base) return "behind";
    return this.entries.slice(cursor - this.base);
  }

  /** Resolves at the next change: new events, or the tail closing. */
  changed(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  take(rows: Entry[]): void {
    if (rows.length === 0) return;
    if (rows[0]!.sequence !== this.last + 1) {
      // Retention removed events the tail never saw: start again from what storage holds.
      this.entries = [];
      this.bytes = 0;
      this.base = rows[0]!.sequence - 1;
    }
    for (const row of rows) {
      this.entries.push(row);
      this.bytes += row.body.length;
    }
    let drop = 0;
    let bytes = this.bytes;
    while (
      this.entries.length - drop > this.options.maxEvents ||
      (bytes > this.options.maxBytes && drop < this.entries.length - 1)
    ) {
      bytes -= this.entries[drop]!.body.length;
      drop += 1;
    }
    if (drop > 0) {
      this.entries = this.entries.slice(drop);
      this.base += drop;
      this.bytes = bytes;
    }
    this.wake();
  }

  close(): void {
    this.closed = true;
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

export class StreamHub implements WakeupListener {
  private readonly tails = new Map<number, FeedTail>();
  private readonly unlisten: () => void;

  constructor(
    private readonly storage: Storage,
    private readonly bus: WakeupBus,
    private readonly logger: Logger,
    private readonly options: TailOptions = DEFAULT_TAIL,
  ) {
    this.unlisten = bus.listen(this);
  }

  /** The feed's tail, created when the first stream attaches; `head` is the feed's head as that stream read it. */
  attach(feedId: number, head: number): FeedTail {
    let tail = this.tails.get(feedId);
    if (!tail) {
      tail = new FeedTail(feedId, head, this.options);
      this.tails.set(feedId, tail);
      // An append signalled between the caller's read and now would otherwise wait for the next append.
      this.appended(feedId, this.bus.headOf(feedId));
    }
    tail.streams += 1;
    return tail;
  }

  detach(tail: FeedTail): void {
    tail.streams -= 1;
    if (tail.streams === 0 && this.tails.get(tail.feedId) === tail) this.tails.delete(tail.feedId);
  }

  appended(feedId: number, head: number): void {
    const tail = this.tails.get(feedId);
    if (!tail || head <= tail.pendingHead) return;
    tail.pendingHead = head;
    tail.fetching ??= this.fetch(tail).finally(() => {
      tail.fetching = undefined;
    });
  }

  removed(feedId: number): void {
    const tail = this.tails.get(feedId);
    if (!tail) return;
    this.tails.delete(feedId);
    tail.close();
  }

  private async fetch(tail: FeedTail): Promise<void> {
    try {
      while (!tail.closed && tail.last < tail.pendingHead) {
        const rows = await readEntries(
          this.storage.reader,
          tail.feedId,
          tail.last,
          tail.pendingHead,
          FETCH_BATCH,
        );
        if (rows.length === 0) return;
        tail.take(rows);
      }
    } catch (error) {
      // Streams are not stuck: the next append fetches again, and a stream that waits long re-reads storage.
      this.logger.error({ err: error, feedId: tail.feedId }, "stream hub could not read new events");
    }
  }

  close(): void {
    this.unlisten();
    for (const tail of this.tails.values()) tail.close();
    this.tails.clear();
  }
}
