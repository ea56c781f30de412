import type { ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Storage } from "../db/database.js";
import { type Filters, matches } from "../db/events.js";
import { HttpProblem } from "../errors.js";
import { readClock, readPage } from "../log/reader.js";
import type { Logger } from "../logger.js";
import {
  chunkMessage,
  comment,
  eventMessage,
  httpChunk,
  namedMessage,
  progressMessage,
  retryMessage,
} from "./framing.js";
import type { FeedTail, StreamHub, TailEntry } from "./hub.js";

/**
 * One SSE connection, as small as it can be: a cursor, a socket, and whether it is live.
 *
 * It starts by catching up: the events after its cursor from storage (pages shared with any other reader at the same
 * cursor), then from the hub's tail. Once it has everything the tail holds it is live, and the hub pushes each new
 * event's bytes to it as they are appended. When its socket pushes back (the reader is slower than the feed), it
 * stops being live, waits for the socket to drain, and catches up again from the tail, or from storage if the tail
 * moved on. So it never loses or repeats an event at a seam (everything is cut by sequence), and never holds more
 * than one chunk (CHUNK_BYTES plus one event) beyond what the socket buffers.
 *
 * No promise, timer or listener per stream waits for events: a live stream is only an entry in its tail's set.
 *
 * Once the response's head is sent, the stream writes its body to the socket itself, as HTTP/1.1 chunks: a live
 * event is the tail's buffer, framed once for all streams, in one socket write. (The response's own write frames
 * every write again, in three parts, and defers it to the next tick; in a bare Node server holding 5,000 streams,
 * writing to the socket brought the last one its message a quarter sooner.) An HTTP/1.0 client, which gets no chunks, is written through the response.
 */

/** Catch-up page size from storage. */
const PAGE = 500;
/** A chunk grows to about this many bytes before it is written. */
const CHUNK_BYTES = 64 * 1024;
/** A stream ends this long before its token expires, so the client reconnects with a fresh one in time. */
const TOKEN_MARGIN_MS = 5000;

export type EndReason = "client-gone" | "stopping" | "token-expiring" | "feed-removed" | "reset" | "failed";

/** What a stream reports about itself, for tests and metrics. */
export interface StreamStats {
  /** The most bytes that were waiting in this connection's socket buffer at any time. */
  maxBuffered: number;
  events: number;
}

export interface StreamOptions {
  storage: Storage;
  hub: StreamHub;
  logger: Logger;
  feed: string;
  feedId: number;
  /** The feed's head as the request read it. */
  head: number;
  cursor: number;
  filters: Filters;
  retryMs: number;
  keepaliveMs: number;
  /** When the stream's token expires (epoch ms), if it does. */
  expiresAt: number | undefined;
  /** Told once, when the stream has ended. */
  ended(reason: EndReason): void;
}

export class StreamConnection implements StreamStats {
  maxBuffered = 0;
  events = 0;
  private cursor: number;
  /** The client's Last-Event-ID: the last id it was sent. */
  private lastId: number;
  private lastWrite = Date.now();
  private live = false;
  private catching = false;
  private done = false;
  private tail: FeedTail | undefined;
  private readonly filtered: boolean;
  /** The socket the body goes to as HTTP/1.1 chunks, once the head is sent; until then, or without chunks, none. */
  private socket: Socket | undefined;

  constructor(
    private readonly res: ServerResponse,
    private readonly options: StreamOptions,
  ) {
    this.cursor = options.cursor;
    this.lastId = options.cursor;
    this.filtered = options.filters.types.length > 0 || options.filters.subject !== undefined;
  }

  /** Starts the stream: the retry hint, then catching up. The response's head is written already. */
  start(): void {
    this.res.once("close", () => this.end("client-gone"));
    // The retry hint goes through the response, which sends the head before it. Node corks a response's first
    // write until the next tick, and from Node 22 on (nodejs/node#50167) the response holds the chunk, and the
    // head, itself until then, where direct socket writes would overtake them: corked and uncorked here, it hands
    // both to the socket now. The socket is the stream's only once the response holds nothing of its own; one
    // that does (a pipelined request's, still waiting for its socket) keeps writing through itself.
    this.res.cork();
    this.write(`${retryMessage(this.options.retryMs)}\n`);
    this.res.uncork();
    const { socket } = this.res;
    if (this.res.chunkedEncoding && socket && this.res.writableLength === socket.writableLength) {
      this.socket = socket;
    }
    this.tail = this.options.hub.attach(this, this.options.feedId, this.options.head);
    if (!this.tail) {
      this.end("stopping");
      return;
    }
    void this.catchUp();
  }

  /**
   * New events of the feed, in order (the hub calls this for every append while the stream is attached, with the
   * time it did so). Answers how many it wrote: the hub counts them for all its streams at once.
   */
  offer(entries: TailEntry[], now: number): number {
    if (!this.live || this.done) return 0;
    const next = entries[0]!;
    if (entries.length === 1 && next.sequence === this.cursor + 1 && !this.filtered) {
      // The common case, kept lean: one new event for a stream that takes every event.
      this.cursor = next.sequence;
      this.lastId = next.sequence;
      if (this.socket) this.send(this.socket, next.frame, now);
      else this.send(this.res, chunkMessage(next.frame), now);
      this.events += 1;
      if (this.needsDrain) void this.catchUp();
      return 1;
    }
    const first = entries.findIndex((entry) => entry.sequence > this.cursor);
    if (first === -1) return 0;
    if (entries[first]!.sequence !== this.cursor + 1) {
      // A gap (the tail started again after retention): storage knows what lies in it.
      void this.catchUp();
      return 0;
    }
    const before = this.events;
    const written = this.writeEntries(entries, first);
    if (written < entries.length || this.needsDrain) void this.catchUp();
    return this.events - before;
  }

  /**
   * Writes entries[from...] as one chunk of at most about CHUNK_BYTES, moving the cursor past them; answers the
   * index after the last one written. The caller reports the events served.
   */
  private writeEntries(entries: TailEntry[], from: number): number {
    const frames: Buffer[] = [];
    let bytes = 0;
    let count = 0;
    let index = from;
    for (; index < entries.length && bytes < CHUNK_BYTES; index += 1) {
      const entry = entries[index]!;
      if (!this.filtered || matches(this.options.filters, entry.type, entry.subject)) {
        frames.push(entry.frame);
        bytes += entry.frame.length;
        this.lastId = entry.sequence;
        count += 1;
      }
      this.cursor = entry.sequence;
    }
    if (frames.length > 0) {
      this.writeFrames(frames, bytes);
      this.events += count;
    }
    return index;
  }

  /** Catches up from the tail or storage until the stream can be live again. One catch-up runs at a time. */
  private async catchUp(): Promise<void> {
    this.live = false;
    if (this.catching) return;
    this.catching = true;
    // Reads from storage share a read in flight (see readPage) until one finds nothing newer.
    let since = Number.NEGATIVE_INFINITY;
    try {
      while (!this.done) {
        if (this.needsDrain) {
          await this.drained();
          continue;
        }
        const fresh = this.tail!.after(this.cursor);
        if (fresh !== "behind") {
          const before = this.events;
          const written = this.writeEntries(fresh, 0);
          if (this.events > before) this.options.hub.served(this.events - before);
          if (written === fresh.length && !this.needsDrain) {
            this.live = true;
            return;
          }
          continue;
        }
        if (await this.readStorage(since)) continue;
        if (since === Number.NEGATIVE_INFINITY) {
          // Nothing newer than the cursor, though the tail began later: a read shared with another stream can have
          // begun before the appends the tail holds (on PostgreSQL a read takes a round trip). Read once more, in
          // a read begun now.
          since = readClock();
          continue;
        }
        // Storage holds nothing newer even so (it cannot, but should it): be live, and let the next append's gap
        // bring the stream back here.
        this.live = !this.done;
        return;
      }
    } catch (error) {
      this.options.logger.error({ err: error, feed: this.options.feed }, "stream failed; the client resumes");
      this.end("failed");
    } finally {
      this.catching = false;
    }
  }

  /**
   * One page from storage after the cursor; ends the stream when retention passed it or the feed is gone. Answers
   * whether the cursor moved.
   */
  private async readStorage(since: number): Promise<boolean> {
    const { storage, feed, filters } = this.options;
    let page: Awaited<ReturnType<typeof readPage>>;
    try {
      page = await readPage(storage, feed, { after: this.cursor, limit: PAGE, filters }, since);
    } catch (error) {
      if (error instanceof HttpProblem && error.status === 410) {
        this.write(namedMessage("reset", JSON.stringify(error.toJSON())));
        this.end("reset");
        return true;
      }
      if (error instanceof HttpProblem && error.status === 404) {
        this.end("feed-removed");
        return true;
      }
      throw error;
    }
    if (this.done) return true;
    if (page.next <= this.cursor) return false;
    let chunk = "";
    page.sequences.forEach((sequence, index) => {
      chunk += eventMessage(sequence, page.bodies[index]!);
      this.lastId = sequence;
    });
    this.cursor = page.next;
    if (chunk) {
      this.write(chunk);
      this.events += page.sequences.length;
      this.options.hub.served(page.sequences.length);
    }
    return true;
  }

  /** Whether the socket pushes back: it buffers more than its high-water mark. */
  private get needsDrain(): boolean {
    return (this.socket ?? this.res).writableNeedDrain;
  }

  private drained(): Promise<void> {
    const out = this.socket ?? this.res;
    return new Promise((resolve) => {
      const done = () => {
        out.off("drain", done);
        this.res.off("close", done);
        resolve();
      };
      out.on("drain", done);
      this.res.on("close", done);
    });
  }

  /** Writes a message (or several, joined) of the stream's own, framed here. */
  private write(message: string): void {
    if (this.socket) this.send(this.socket, httpChunk(message));
    else this.send(this.res, message);
  }

  /** Writes the tail's framed events: the chunks as they are, or (without chunks) the messages in them. */
  private writeFrames(frames: Buffer[], bytes: number): void {
    if (this.socket) this.send(this.socket, frames.length === 1 ? frames[0]! : Buffer.concat(frames, bytes));
    else this.send(this.res, Buffer.concat(frames.map(chunkMessage)));
  }

  private send(out: Socket | ServerResponse, bytes: string | Buffer, now = Date.now()): void {
    if (this.res.writableEnded || this.res.destroyed || out.destroyed) return;
    out.write(bytes);
    this.lastWrite = now;
    if (out.writableLength > this.maxBuffered) this.maxBuffered = out.writableLength;
  }

  /**
   * The hub's sweep, every `sweepMs`: ends a stream whose token is about to expire, and breaks a silence that
   * would last longer than the keep-alive with a comment, or (when filters skipped events) a bare id.
   */
  tick(now: number, sweepMs: number): void {
    if (this.done) return;
    const { expiresAt, keepaliveMs } = this.options;
    if (expiresAt !== undefined && now >= expiresAt - TOKEN_MARGIN_MS) {
      this.write(
        namedMessage("token-expiring", JSON.stringify({ expiresAt: new Date(expiresAt).toISOString() })),
      );
      this.end("token-expiring");
      return;
    }
    if (now - this.lastWrite < keepaliveMs - sweepMs || this.needsDrain) return;
    if (this.filtered && this.cursor > this.lastId) {
      this.lastId = this.cursor;
      this.write(progressMessage(this.cursor));
    } else {
      this.write(comment("keep-alive"));
    }
  }

  /** Ends the stream (once): a retry hint when the service stops, then the end of the response. */
  end(reason: EndReason): void {
    if (this.done) return;
    this.done = true;
    this.live = false;
    this.options.hub.detach(this, this.tail);
    if (!this.res.writableEnded && !this.res.destroyed) {
      if (reason === "stopping") this.write(`${retryMessage(this.options.retryMs)}\n`);
      this.res.end();
    }
    this.options.ended(reason);
  }
}
