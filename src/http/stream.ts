import type { Context } from "koa";
import type { Filters } from "../db/events.js";
import { HttpProblem } from "../errors.js";
import { checkCursor } from "../log/reader.js";
import { parseSequence } from "../log/sequence.js";
import { principalOf } from "./auth.js";
import type { Services } from "./context.js";

/**
 * `GET /v1/feeds/{feed}/events` with `Accept: text/event-stream`: the feed as Server-Sent Events.
 *
 * Koa checks the request (authorization, the feed, the cursor) and writes the response's head; then the stream is
 * handed to the hub and the request's middleware returns, so an open stream holds no Koa context, promise chain or
 * timer of its own: only its connection object in the hub.
 */

export function wantsStream(ctx: Context): boolean {
  return ctx.accepts("application/json", "text/event-stream") === "text/event-stream";
}

/** The cursor: `Last-Event-ID` (sent by a reconnecting EventSource) wins over `after`. */
export function streamCursor(ctx: Context, after: number | undefined): number {
  const lastEventId = ctx.get("Last-Event-ID").trim();
  if (lastEventId === "") return after ?? 0;
  const sequence = parseSequence(lastEventId);
  if (sequence === undefined) {
    throw new HttpProblem(
      400,
      "invalidCursor",
      "Last-Event-ID must be a sequence: a non-negative decimal integer.",
      {
        parameter: "Last-Event-ID",
      },
    );
  }
  return sequence;
}

export async function serveStream(
  ctx: Context,
  services: Services,
  feed: string,
  cursor: number,
  filters: Filters,
): Promise<void> {
  // Problems that make a stream pointless are answered as plain HTTP before it starts: no feed (404), a cursor
  // ahead of the head (400). A cursor retention has passed is answered in the stream, as `event: reset`.
  // One look at the feed row, no event read: the stream's own first page follows at once.
  const row = await services.feeds.get(feed);
  checkCursor(row, cursor, false);
  if (services.stopping.aborted) {
    throw new HttpProblem(503, "unavailable", "The service is shutting down.", {}, { "Retry-After": "1" });
  }
  const headers = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",
  };
  if (ctx.method === "HEAD") {
    // The head of the stream's answer, at once; nothing is held open and no stream slot is taken.
    ctx.status = 200;
    ctx.set(headers);
    return;
  }
  const leave = services.admission.enter("streams");

  ctx.status = 200;
  ctx.respond = false;
  ctx.req.socket.setTimeout(0);
  ctx.req.socket.setNoDelay(true);
  ctx.res.writeHead(200, headers);
  const stream = services.hub.connect(ctx.res, {
    logger: services.logger,
    feed,
    feedId: row.id,
    head: row.head,
    cursor,
    filters,
    retryMs: services.streamRetryMs,
    keepaliveMs: services.keepaliveSeconds * 1000,
    expiresAt: principalOf(ctx).expiresAt,
    ended: () => {
      leave();
      services.streams.delete(stream);
    },
  });
  services.streams.add(stream);
  stream.start();
}
