import { EventSource } from "eventsource";
import type { SeintjeClient } from "./client.js";
import { deadline } from "./deadline.js";
import { CursorGoneError, SeintjeError } from "./errors.js";
import { isTransient, retryDelay } from "./retry.js";
import type { FeedEvent } from "./types.js";

/**
 * Following a feed: every event after a cursor, in order, forever. The cursor is the consumer's (the last event it
 * took), so whatever goes wrong (the network, a restart of the service, a token that expires) the follower
 * reconnects after it and nothing is lost or repeated.
 */

export interface FollowOptions {
  /** The sequence to start after; "0" (the default) starts at the oldest kept event. */
  after?: string | number;
  /** Prefixes of event types. */
  types?: readonly string[];
  subject?: string;
  /** Aborting ends the iteration (no error). */
  signal?: AbortSignal;
  /** Long-polling (the default) or Server-Sent Events. */
  mode?: "poll" | "stream";
  /** Seconds a long-poll waits for news (default 30, at most 60). */
  wait?: number;
  /** Events per page when polling (default 500). */
  limit?: number;
  /** Delays between attempts after errors: `initialMs` (default 500) doubling up to `maxMs` (default 30 s). */
  backoff?: { initialMs?: number; maxMs?: number };
  /** Told of each error the follower recovers from, and how long it waits before it tries again. */
  onRetry?: (error: unknown, delayMs: number) => void;
  /**
   * Stream mode: most events held for a caller that has not taken them yet (default 1,000). Beyond it the
   * connection is closed, and opened again after the last event the caller took, once it has caught up.
   */
  maxBuffered?: number;
}

/** What a source hands the follower: an event, or only a new cursor (a filtered page that matched nothing). */
interface Item {
  event?: FeedEvent;
  cursor: string;
}

export async function* follow(
  client: SeintjeClient,
  feed: string,
  options: FollowOptions,
): AsyncGenerator<FeedEvent, void, undefined> {
  const { signal } = options;
  let cursor = String(options.after ?? "0");
  let failures = 0;
  while (!signal?.aborted) {
    try {
      const source =
        options.mode === "stream"
          ? stream(client, feed, cursor, options)
          : poll(client, feed, cursor, options);
      for await (const item of source) {
        failures = 0;
        if (item.event) yield item.event;
        cursor = item.cursor;
      }
    } catch (error) {
      if (signal?.aborted) return;
      if (!isTransient(error)) throw error;
      failures += 1;
      const delay = retryDelay(
        error,
        failures,
        options.backoff?.initialMs ?? 500,
        options.backoff?.maxMs ?? 30_000,
      );
      options.onRetry?.(error, delay);
      await pause(delay, signal);
    }
  }
}

function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

async function* poll(
  client: SeintjeClient,
  feed: string,
  after: string,
  options: FollowOptions,
): AsyncGenerator<Item> {
  const wait = options.wait ?? 30;
  let cursor = after;
  for (;;) {
    // A long-poll that outlives its wait by far is a connection that died without telling.
    const limit = deadline((wait + 30) * 1000, options.signal);
    const page = await client
      .readPage(feed, {
        after: cursor,
        limit: options.limit ?? 500,
        wait,
        types: options.types,
        subject: options.subject,
        signal: limit.signal,
      })
      .finally(() => limit.clear());
    for (const event of page.events) yield { event, cursor: event.sequence };
    if (page.next !== cursor) {
      cursor = page.next;
      yield { cursor };
    }
  }
}

type Arrival = Item | { error: unknown } | { end: true };

async function* stream(
  client: SeintjeClient,
  feed: string,
  after: string,
  options: FollowOptions,
): AsyncGenerator<Item> {
  const query = new URLSearchParams({ after });
  for (const type of options.types ?? []) query.append("type", type);
  if (options.subject !== undefined) query.set("subject", options.subject);
  const headers = await client.authorization();
  const maxBuffered = options.maxBuffered ?? 1000;
  const arrivals: Arrival[] = [];
  let wake: (() => void) | undefined;
  const arrive = (arrival: Arrival) => {
    arrivals.push(arrival);
    wake?.();
  };

  const source = new EventSource(client.resolve(`/v1/feeds/${encodeURIComponent(feed)}/events?${query}`), {
    fetch: (input, init) => client.fetcher(input, { ...init, headers: { ...init?.headers, ...headers } }),
  });
  let buffered = 0;
  source.onmessage = (message) => {
    arrive({ event: JSON.parse(message.data) as FeedEvent, cursor: message.lastEventId });
    buffered += 1;
    if (buffered > maxBuffered) {
      // The caller is slower than the feed: stop taking more, and come back for the rest after it caught up.
      source.close();
      arrive({ end: true });
    }
  };
  source.addEventListener("reset", (message) => {
    source.close();
    arrive({ error: new CursorGoneError(JSON.parse((message as MessageEvent).data)) });
  });
  // The stream ends shortly before the token does: reconnect at once, with a fresh token.
  source.addEventListener("token-expiring", () => {
    source.close();
    arrive({ end: true });
  });
  source.onerror = (event) => {
    // The follower reconnects itself (after its cursor, with backoff and a fresh token), never EventSource.
    source.close();
    arrive({ error: event.code === undefined ? new Error(event.message ?? "the stream broke") : event.code });
  };
  const onAbort = () => {
    source.close();
    arrive({ end: true });
  };
  options.signal?.addEventListener("abort", onAbort, { once: true });

  try {
    for (;;) {
      while (arrivals.length === 0) await new Promise<void>((resolve) => (wake = resolve));
      const arrival = arrivals.shift()!;
      if ("end" in arrival) return;
      if ("error" in arrival) {
        const { error } = arrival;
        if (typeof error !== "number") throw error;
        // A refusal with a status: a plain read of the same cursor says why, with the problem document.
        await client.readPage(feed, { after, limit: 1, types: options.types, subject: options.subject });
        throw new SeintjeError(error, undefined, `the stream was refused with HTTP ${error}`);
      }
      buffered -= 1;
      yield arrival;
    }
  } finally {
    source.close();
    options.signal?.removeEventListener("abort", onAbort);
  }
}
