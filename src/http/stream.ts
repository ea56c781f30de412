import type { Context } from "koa";
import type { Filters } from "../db/events.js";
import { HttpProblem } from "../errors.js";
import { getFeed } from "../log/feeds.js";
import { checkCursor } from "../log/reader.js";
import { type EndReason, runStream, type StreamStats } from "../stream/connection.js";
import { namedMessage, retryMessage } from "../stream/framing.js";
import { principalOf } from "./auth.js";
import type { Services } from "./context.js";
import { parseSequence } from "./query.js";

/** `GET /v1/feeds/{feed}/events` with `Accept: text/event-stream`: the feed as Server-Sent Events. */

/** A stream ends this long before its token expires, so the client reconnects with a fresh one in time. */
export const TOKEN_MARGIN_MS = 5000;
/** setTimeout's longest delay; a token valid for longer simply outlives the stream's timer. */
const MAX_TIMER_MS = 2 ** 31 - 1;

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

function corsHeaders(ctx: Context, origins: string[]): Record<string, string> {
  const origin = ctx.get("Origin");
  if (origin === "" || origins.length === 0) return {};
  if (origins.includes("*")) return { "Access-Control-Allow-Origin": "*" };
  return origins.includes(origin) ? { "Access-Control-Allow-Origin": origin, Vary: "Origin" } : {};
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
  checkCursor(await getFeed(services.storage, feed), cursor, false);
  const leave = services.admission.enter("streams");
  try {
    await streamAdmitted(ctx, services, feed, cursor, filters);
  } finally {
    leave();
  }
}

/** The stream itself, once it has its place among the process's streams. */
async function streamAdmitted(
  ctx: Context,
  services: Services,
  feed: string,
  cursor: number,
  filters: Filters,
): Promise<void> {
  const end = new AbortController();
  const finish = (reason: EndReason) => {
    if (!end.signal.aborted) end.abort(reason);
  };
  const onStopping = () => finish("stopping");
  services.stopping.addEventListener("abort", onStopping, { once: true });
  if (services.stopping.aborted) finish("stopping");
  ctx.res.once("close", () => finish("client-gone"));
  const expiresAt = principalOf(ctx).expiresAt;
  let expiry: NodeJS.Timeout | undefined;
  if (expiresAt !== undefined) {
    const delay = Math.max(0, expiresAt - TOKEN_MARGIN_MS - Date.now());
    if (delay <= MAX_TIMER_MS) expiry = setTimeout(() => finish("token-expiring"), delay);
  }

  ctx.status = 200;
  ctx.respond = false;
  ctx.req.socket.setTimeout(0);
  ctx.req.socket.setNoDelay(true);
  ctx.res.writeHead(200, {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",
    ...corsHeaders(ctx, services.corsOrigins),
  });

  let stats: StreamStats | undefined;
  try {
    const reason = await runStream(
      ctx.res,
      {
        storage: services.storage,
        hub: services.hub,
        feed,
        cursor,
        filters,
        retryMs: services.streamRetryMs,
        keepaliveMs: services.keepaliveSeconds * 1000,
        end: end.signal,
        served: (events) => services.metrics.eventsServed.inc({ channel: "stream" }, events),
      },
      (live) => {
        stats = live;
        services.streams.add(live);
      },
    );
    if (!ctx.res.writableEnded && !ctx.res.destroyed) {
      if (reason === "stopping") ctx.res.write(`${retryMessage(services.streamRetryMs)}\n`);
      if (reason === "token-expiring") {
        ctx.res.write(
          namedMessage("token-expiring", JSON.stringify({ expiresAt: new Date(expiresAt!).toISOString() })),
        );
      }
      ctx.res.end();
    }
  } finally {
    clearTimeout(expiry);
    services.stopping.removeEventListener("abort", onStopping);
    if (stats) services.streams.delete(stats);
  }
}
