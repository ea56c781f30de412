import type { ServerResponse } from "node:http";
import type { Storage } from "../db/database.js";
import { type Entry, readEntries } from "../db/events.js";
import type { WakeupBus, WakeupListener } from "../log/wakeup.js";
import type { Logger } from "../logger.js";
import { StreamConnection, type StreamOptions } from "./connection.js";
import { eventMessage, httpChunk } from "./framing.js";

/**
 * The hub: every open stream, and per feed with open streams an in-memory tail of the newest events. An append is
 * read from storage once, into the tail, framed once as the bytes of its SSE message in an HTTP/1.1 chunk, and
 * pushed to every stream of the feed that is live (caught up, its socket not pushing back): one database read and
 * one framing per append, then one socket write per stream of bytes they all share.
 *
 * A stream that is not live (it is catching up, or its reader is slow) takes what it needs from the tail, or from
 * storage with its own cursor once the tail no longer holds it; nothing is queued for it. Memory is the tails
 * (bounded in events and bytes) plus what each socket buffers (bounded by the connection).
 *
 * One timer for all streams sends keep-alives and ends streams whose token is about to expire, so an idle stream
 * costs no timer of its own.
 */

export interface TailOptions {
  /** Most events kept per feed. */
  maxEvents: number;
  /** Most bytes of framed events kept per feed. */
  maxBytes: number;
}

export const DEFAULT_TAIL: TailOptions = { maxEvents: 10_000, maxBytes: 8 * 1024 * 1024 };

/**
 * An event in a tail, with the bytes every stream writes: its SSE message (`id:` and `data:` lines) framed as an
 * HTTP/1.1 chunk, so that a stream hands the very same buffer to its socket.
 */
export interface TailEntry extends Entry {
  frame: Buffer;
}

/** Rows per storage read when the tail takes in new events. */
const FETCH_BATCH = 1000;

export class FeedTail {
  /** Contiguous: entries[i].sequence === base + 1 + i. */
  private entries: TailEntry[] = [];
  private bytes = 0;
  /** Every event in (base, last] is in `entries`. */
  private base: number;
  readonly streams = new Set<StreamConnection>();
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
   * The events after `cursor` that the tail holds, or "behind" when some of them are no longer (or never were) in
   * it, so the caller must read storage. An empty array means: nothing newer yet.
   */
  after(cursor: number): TailEntry[] | "behind" {
    if (cursor < this.base) return "behind";
    return this.entries.slice(cursor - this.base);
  }

  /** Takes in rows read from storage; answers them as tail entries, framed. */
  take(rows: Entry[]): TailEntry[] {
    if (rows.length === 0) return [];
    if (rows[0]!.sequence !== this.last + 1) {
      // Retention removed events the tail never saw: start again from what storage holds.
      this.entries = [];
      this.bytes = 0;
      this.base = rows[0]!.sequence - 1;
    }
    const taken = rows.map((row) => ({ ...row, frame: httpChunk(eventMessage(row.sequence, row.body)) }));
    for (const entry of taken) {
      this.entries.push(entry);
      this.bytes += entry.frame.length;
    }
    let drop = 0;
    let bytes = this.bytes;
    while (
      this.entries.length - drop > this.options.maxEvents ||
      (bytes > this.options.maxBytes && drop < this.entries.length - 1)
    ) {
      bytes -= this.entries[drop]!.frame.length;
      drop += 1;
    }
    if (drop > 0) {
      this.entries = this.entries.slice(drop);
      this.base += drop;
      this.bytes = bytes;
    }
    return taken;
  }
}

export interface HubOptions {
  keepaliveMs: number;
  tail?: TailOptions;
  /**
   * Told how many events were written to streams: once per append for every live stream it reached, and once per
   * catch-up write of a stream.
   */
  served?(events: number): void;
}

export class StreamHub implements WakeupListener {
  private readonly tails = new Map<number, FeedTail>();
  private readonly open = new Set<StreamConnection>();
  private readonly unlisten: () => void;
  private readonly sweeper: NodeJS.Timeout;
  /** How often the sweep runs: often enough that no stream stays silent longer than the keep-alive. */
  readonly sweepMs: number;
  private closed = false;

  constructor(
    private readonly storage: Storage,
    private readonly bus: WakeupBus,
    private readonly logger: Logger,
    private readonly options: HubOptions,
  ) {
    this.unlisten = bus.listen(this);
    this.sweepMs = Math.min(1000, Math.max(50, options.keepaliveMs / 2));
    this.sweeper = setInterval(() => this.sweep(), this.sweepMs);
    this.sweeper.unref();
  }
  /** Starts a stream on `res`, which reads from this hub's storage when it falls behind. */
  connect(res: ServerResponse, options: Omit<StreamOptions, "storage" | "hub">): StreamConnection {
    return new StreamConnection(res, { ...options, storage: this.storage, hub: this });
  }

  /** How many streams are open. */
  get size(): number {
    return this.open.size;
  }

  /**
   * Registers a stream of a feed and answers the feed's tail, created when the first stream attaches; `head` is the
   * feed's head as that stream read it. Answers undefined when the hub is closed (the service is stopping).
   */
  attach(stream: StreamConnection, feedId: number, head: number): FeedTail | undefined {
    if (this.closed) return undefined;
    let tail = this.tails.get(feedId);
    if (!tail) {
      tail = new FeedTail(feedId, head, this.options.tail ?? DEFAULT_TAIL);
      this.tails.set(feedId, tail);
      // An append signalled between the stream's read and now would otherwise wait for the next append.
      this.appended(feedId, this.bus.headOf(feedId));
    }
    tail.streams.add(stream);
    this.open.add(stream);
    return tail;
  }

  detach(stream: StreamConnection, tail: FeedTail | undefined): void {
    this.open.delete(stream);
    if (!tail) return;
    tail.streams.delete(stream);
    if (tail.streams.size === 0 && this.tails.get(tail.feedId) === tail) this.tails.delete(tail.feedId);
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
    tail.closed = true;
    for (const stream of [...tail.streams]) stream.end("feed-removed");
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
        if (rows.length === 0 || tail.closed) return;
        const fresh = tail.take(rows);
        const now = Date.now();
        let served = 0;
        for (const stream of tail.streams) served += stream.offer(fresh, now);
        if (served > 0) this.served(served);
      }
    } catch (error) {
      // Streams are not stuck: the next append fetches again, and a stream that falls behind re-reads storage.
      this.logger.error({ err: error, feedId: tail.feedId }, "stream hub could not read new events");
    }
  }

  /** Counts events written to streams (a stream's catch-up reports its own writes here). */
  served(events: number): void {
    this.options.served?.(events);
  }

  private sweep(): void {
    const now = Date.now();
    for (const stream of this.open) stream.tick(now, this.sweepMs);
  }

  /** Ends every stream with a retry hint (the service is stopping) and takes no more. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    this.unlisten();
    for (const stream of [...this.open]) stream.end("stopping");
    for (const tail of this.tails.values()) tail.closed = true;
    this.tails.clear();
  }
}
