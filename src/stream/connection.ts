import type { ServerResponse } from "node:http";
import type { Storage } from "../db/database.js";
import { type Filters, matches } from "../db/events.js";
import { HttpProblem } from "../errors.js";
import { readPage } from "../log/reader.js";
import { comment, eventMessage, namedMessage, progressMessage, retryMessage } from "./framing.js";
import type { FeedTail, StreamHub } from "./hub.js";

/**
 * One SSE connection: the events after its cursor from storage, then live events from the hub's tail, with no gap
 * and no duplicate at the seam (both sides are cut by sequence, and the tail reports when it no longer holds
 * what the connection needs next, which sends it back to storage).
 *
 * Memory per connection is bounded: the connection writes one chunk (at most CHUNK_BYTES plus one event) and
 * waits for the socket to drain before it takes more, so a reader that stops reading holds at most the socket's
 * buffer plus one chunk here. Its cursor stays in the log, not in memory.
 */

/** Catch-up page size from storage. */
const PAGE = 500;
/** A chunk grows to about this many bytes before it is written. */
const CHUNK_BYTES = 64 * 1024;

export type EndReason = "client-gone" | "stopping" | "token-expiring" | "feed-removed" | "reset";

export interface StreamOptions {
  storage: Storage;
  hub: StreamHub;
  feed: string;
  cursor: number;
  filters: Filters;
  retryMs: number;
  keepaliveMs: number;
  /** Ends the stream with this reason's closing message. */
  end: AbortSignal;
  /** Told how many events each write carried. */
  served?: (events: number) => void;
}

/** What a stream reports about itself, for tests and metrics. */
export interface StreamStats {
  /** The most bytes that were waiting in this connection's socket buffer at any time. */
  maxBuffered: number;
  events: number;
}

class SseWriter {
  private readonly timer: NodeJS.Timeout;
  readonly stats: StreamStats = { maxBuffered: 0, events: 0 };

  constructor(
    private readonly res: ServerResponse,
    keepaliveMs: number,
    private readonly end: AbortSignal,
    idle: () => string,
  ) {
    this.timer = setInterval(() => {
      if (!this.res.writableEnded) this.res.write(idle());
    }, keepaliveMs);
  }

  get open(): boolean {
    return !this.end.aborted && !this.res.destroyed && !this.res.writableEnded;
  }

  /** Writes a chunk and resolves when the socket can take more (or the stream ends). */
  async write(chunk: string): Promise<void> {
    if (!this.open) return;
    this.timer.refresh();
    const ready = this.res.write(chunk);
    this.stats.maxBuffered = Math.max(this.stats.maxBuffered, this.res.writableLength);
    if (ready) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        this.res.off("drain", done);
        this.res.off("close", done);
        this.end.removeEventListener("abort", done);
        resolve();
      };
      this.res.on("drain", done);
      this.res.on("close", done);
      this.end.addEventListener("abort", done);
    });
  }

  dispose(): void {
    clearInterval(this.timer);
  }
}

function ended(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
}

/**
 * Runs the stream until it ends; resolves with why. The caller has written the response head and writes the
 * closing message for the reason.
 */
export async function runStream(
  res: ServerResponse,
  options: StreamOptions,
  onStats?: (stats: StreamStats) => void,
): Promise<EndReason> {
  const { storage, hub, filters } = options;
  const filtered = filters.types.length > 0 || filters.subject !== undefined;
  let cursor = options.cursor;
  /** The client's Last-Event-ID: the last id it was sent. */
  let lastId = cursor;
  const out = new SseWriter(res, options.keepaliveMs, options.end, () => {
    if (filtered && cursor > lastId) {
      lastId = cursor;
      return progressMessage(cursor);
    }
    return comment("keep-alive");
  });
  onStats?.(out.stats);
  const whenEnded = ended(options.end);
  let tail: FeedTail | undefined;
  try {
    await out.write(`${retryMessage(options.retryMs)}\n`);
    while (out.open) {
      // From storage, until the cursor reaches the head as it was at the read.
      let page: Awaited<ReturnType<typeof readPage>>;
      try {
        page = await readPage(storage, options.feed, { after: cursor, limit: PAGE, filters });
      } catch (error) {
        if (error instanceof HttpProblem && error.status === 410) {
          await out.write(namedMessage("reset", JSON.stringify(error.toJSON())));
          return "reset";
        }
        if (error instanceof HttpProblem && error.status === 404) return "feed-removed";
        throw error;
      }
      tail ??= hub.attach(page.feed.id, page.head);
      let chunk = "";
      page.sequences.forEach((sequence, index) => {
        chunk += eventMessage(sequence, page.bodies[index]!);
        lastId = sequence;
      });
      out.stats.events += page.sequences.length;
      options.served?.(page.sequences.length);
      cursor = page.next;
      if (chunk) await out.write(chunk);
      if (page.next < page.head) continue;

      // Live, from the hub's tail, until the tail no longer holds what comes next.
      while (out.open) {
        if (tail.closed) return "feed-removed";
        const fresh = tail.after(cursor);
        if (fresh === "behind") break;
        if (fresh.length === 0) {
          await Promise.race([tail.changed(), whenEnded]);
          continue;
        }
        let live = "";
        let count = 0;
        for (const entry of fresh) {
          if (!filtered || matches(filters, entry.type, entry.subject)) {
            live += eventMessage(entry.sequence, entry.body);
            lastId = entry.sequence;
            count += 1;
          }
          cursor = entry.sequence;
          if (live.length >= CHUNK_BYTES) break;
        }
        out.stats.events += count;
        if (count > 0) options.served?.(count);
        if (live) await out.write(live);
      }
    }
    return (options.end.reason as EndReason | undefined) ?? "client-gone";
  } finally {
    if (tail) hub.detach(tail);
    out.dispose();
  }
}
