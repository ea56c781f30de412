import Router from "@koa/router";
import { type Span, SpanStatusCode } from "@opentelemetry/api";
import { storageFailure } from "../db/failures.js";
import { coerceError, HttpProblem, type ProblemKind } from "../errors.js";
import { parsePublishRequest } from "../events/encoding.js";
import type { AppendOutcome } from "../log/appender.js";
import { FILTER_LIMITS, PAGE_LIMIT } from "../log/bounds.js";
import { checkFeedName } from "../log/feeds.js";
import type { ReadQuery } from "../log/reader.js";
import { parseSequence } from "../log/sequence.js";
import type { RejectReason } from "../metrics.js";
import { linkTo, startSpan } from "../tracing.js";
import { authorize, authorizeRead } from "./auth.js";
import { expectsContinue, readBody } from "./body.js";
import { answerCacheable, eventTag, immutable } from "./caching.js";
import type { Services } from "./context.js";
import { servePage } from "./pages.js";
import {
  cursorParameter,
  limitParameter,
  listParameter,
  secondsParameter,
  stringParameter,
} from "./query.js";
import { serveStream, streamCursor, wantsStream } from "./stream.js";

/** `/v1/feeds/{feed}/events`: publishing and the pull feed. */

const REJECT_REASONS: Partial<Record<ProblemKind, RejectReason>> = {
  validation: "validation",
  badRequest: "validation",
  conflict: "conflict",
  tooLarge: "too-large",
  feedNotFound: "feed-not-found",
  unsupportedMediaType: "unsupported-media-type",
  rateLimited: "rate-limited",
  unavailable: "unavailable",
};

/**
 * Counts a refused publish request's events (1 when they could not be told apart) under the feed's name, or
 * under "" when no such feed exists: the label's values stay the feeds an admin created.
 */
async function countRejected(services: Services, feed: string, error: unknown, events: number) {
  // A full or unreachable storage is counted as "unavailable": the events may be sent again.
  const kind = coerceError(error)?.kind ?? (storageFailure(error) ? "unavailable" : undefined);
  const exists = kind !== "feedNotFound" && (await services.feeds.exists(feed));
  const reason = (kind && REJECT_REASONS[kind]) ?? "other";
  services.metrics.eventsRejected.inc({ feed: exists ? feed : "", reason }, events);
}

export function eventRouter(services: Services): Router {
  const router = new Router({ prefix: "/v1/feeds/:feed/events" });

  router.post("/", async (ctx) => {
    const feed = ctx.params.feed!;
    checkFeedName(feed);
    const principal = authorize(ctx, "publish", feed);
    const started = process.hrtime.bigint();
    let events = 1;
    try {
      await services.publishRate.take(principal.subject ?? `address:${ctx.ip}`);
      // A client waiting for 100 Continue learns of a missing feed before it sends the body.
      if (expectsContinue(ctx) && !services.appender.createsFeeds) await services.feeds.get(feed);
      const body = await readBody(ctx, services.maxRequestBytes);
      const contentType = ctx.get("Content-Type");
      const parsed = parsePublishRequest({
        contentType: contentType === "" ? undefined : contentType,
        headers: ctx.headers,
        body,
      });
      events = parsed.events.length;
      // The append, through its commit, in a span linked to each event's own trace (the CloudEvents distributed
      // tracing extension: `traceparent` and `tracestate`, stored with the event as published).
      const links = parsed.events.flatMap((event) => {
        const link = linkTo(event.attributes.traceparent, event.attributes.tracestate);
        return link ? [link] : [];
      });
      const span = startSpan(
        services.tracer,
        `append ${feed}`,
        { attributes: { "seintje.feed": feed, "seintje.events": events }, links },
        ctx.state.span as Span | undefined,
      );
      let appended: AppendOutcome;
      try {
        appended = await services.appender.append({
          feed,
          events: parsed.events,
          batch: parsed.mode === "batch",
        });
      } catch (error) {
        span.setStatus({ code: SpanStatusCode.ERROR });
        throw error;
      } finally {
        span.end();
      }
      const warnings = [...parsed.warnings, ...appended.warnings];
      ctx.status = appended.events.every((event) => event.repeat) ? 200 : 201;
      ctx.body = {
        events: appended.events.map((event) => ({
          id: event.id,
          source: event.source,
          sequence: String(event.sequence),
        })),
        ...(warnings.length > 0 ? { warnings } : {}),
      };
      services.metrics.publishDuration.observe(Number(process.hrtime.bigint() - started) / 1e9);
    } catch (error) {
      await countRejected(services, feed, error, events).catch(() => undefined);
      throw error;
    }
  });

  router.get("/", async (ctx) => {
    const feed = ctx.params.feed!;
    checkFeedName(feed);
    await authorizeRead(ctx, feed, services.feeds);
    const query: ReadQuery = {
      after: cursorParameter(ctx.query),
      limit: limitParameter(ctx.query, PAGE_LIMIT),
      filters: {
        types: listParameter(ctx.query, "type", FILTER_LIMITS.types, FILTER_LIMITS.length),
        subject: stringParameter(ctx.query, "subject", FILTER_LIMITS.length),
      },
    };
    if (wantsStream(ctx)) {
      (ctx.state.span as Span | undefined)?.setAttributes({ "seintje.feed": feed, "seintje.stream": true });
      await serveStream(ctx, services, feed, streamCursor(ctx, query.after), query.filters);
      return;
    }
    const waitMs = secondsParameter(ctx.query, "wait", services.maxWaitSeconds) * 1000;
    await servePage(ctx, services, { feed, query, waitMs });
  });

  router.get("/:sequence", async (ctx) => {
    const feed = ctx.params.feed!;
    checkFeedName(feed);
    await authorizeRead(ctx, feed, services.feeds);
    const sequence = parseSequence(ctx.params.sequence);
    if (sequence === undefined || sequence === 0) {
      throw new HttpProblem(404, "eventNotFound", "An event's sequence is a positive decimal integer.");
    }
    const event = await services.reader.event(feed, sequence);
    answerCacheable(ctx, eventTag(event.feed, sequence), immutable(event.feed), event.body);
  });

  return router;
}
