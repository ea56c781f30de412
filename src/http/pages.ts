import type { OutgoingHttpHeaders } from "node:http";
import type { Span } from "@opentelemetry/api";
import type { Context } from "koa";
import type { FeedPage, ReadQuery } from "../log/reader.js";
import {
  answerCacheable,
  chooseEncoding,
  compressed,
  encodedTag,
  notModified,
  pageCacheControl,
  pageTag,
} from "./caching.js";
import type { Services } from "./context.js";
import { answerLater } from "./deferred.js";
import { problemHeaders, problemOf } from "./problems.js";

/**
 * `GET /v1/feeds/{feed}/events` as JSON: a page, at once or after a long-poll's wait.
 *
 * A page that is there is answered through Koa like any other read. A long-poll that finds nothing waits outside
 * the middleware (see deferred.ts) and writes its own answer when an append wakes it. An append to a feed that
 * thousands of clients long-poll wakes them all at one cursor: they share one read of the page (readPage), and here
 * one answer: its headers and bytes, compressed once per encoding, are prepared for the first of them and written
 * as they are for the rest. Through Koa, each answer cost its middleware's unwinding, a join of the page's bytes,
 * and a compression of its own; that made 5,000 woken long-polls 3.4 times as slow as 5,000 streams.
 */

export interface PageRequest {
  feed: string;
  query: ReadQuery;
  /** How long a long-poll may wait, in ms; 0 for a plain read. */
  waitMs: number;
}

const PAGE_START = Buffer.from('{"events":[');
const COMMA = Buffer.from(",");

/** The page as JSON, joined from the stored event bytes without parsing, re-serializing or even decoding them. */
function pageBody(page: FeedPage): Buffer {
  const parts: Buffer[] = [PAGE_START];
  page.bodies.forEach((body, index) => {
    if (index > 0) parts.push(COMMA);
    parts.push(body);
  });
  parts.push(Buffer.from(`],"next":"${page.next}","head":"${page.head}"}`));
  return Buffer.concat(parts);
}

/**
 * The next page's URL, canonical so that one page has one URL for caches: after, limit, each type (sorted, once),
 * subject, wait, always in that order.
 */
function nextLink(services: Services, request: PageRequest, wait: string | undefined, next: number): string {
  const { query } = request;
  const params = new URLSearchParams({ after: String(next), limit: String(query.limit) });
  for (const type of [...new Set(query.filters.types)].sort()) params.append("type", type);
  if (query.filters.subject !== undefined) params.set("subject", query.filters.subject);
  if (wait !== undefined) params.set("wait", wait);
  return `<${services.publicUrl()}/v1/feeds/${request.feed}/events?${params}>; rel="next"`;
}

function waitParameter(ctx: Context): string | undefined {
  const wait = ctx.query.wait;
  return typeof wait === "string" ? wait : undefined;
}

/** The validators of a page: its tag and how long it may be kept. */
function validators(request: PageRequest, page: FeedPage): { tag: string; cacheControl: string } {
  const after = request.query.after ?? 0;
  const start = Math.max(after, page.feed.prunedThrough);
  return {
    tag: pageTag(page.feed, start, page.next, page.head),
    cacheControl: pageCacheControl(page.feed, {
      after,
      next: page.next,
      head: page.head,
      empty: page.sequences.length === 0,
    }),
  };
}

const WAITED = { waited: "true" };
const NOT_WAITED = { waited: "false" };
const PULL = { channel: "pull" };

function served(services: Services, page: FeedPage, waited: boolean, span: Span | undefined): void {
  span?.setAttributes({ "seintje.next": page.next, "seintje.events": page.sequences.length });
  services.metrics.pagesServed.inc(waited ? WAITED : NOT_WAITED);
  services.metrics.eventsServed.inc(PULL, page.sequences.length);
}

/**
 * A signal aborted when the client goes away (the response closes before it is sent), so a long-poll stops waiting
 * for nobody. (A request's own 'close' fires once its body is read, so it would not do.) `release` once the wait is
 * over: a response closes after it is sent too, and aborting then was a twelfth of the time spent answering 5,000
 * woken long-polls (an AbortSignal builds a DOMException, stack and all). Shutdown needs no listener per request:
 * closing the wake-up bus answers every waiting long-poll at once.
 */
function clientGone(ctx: Context): { signal: AbortSignal; release(): void } {
  const controller = new AbortController();
  const abort = () => controller.abort();
  ctx.res.once("close", abort);
  return { signal: controller.signal, release: () => ctx.res.off("close", abort) };
}

/** Reads the page and answers it; a long-poll that finds nothing waits for it past the middleware. */
export async function servePage(ctx: Context, services: Services, request: PageRequest): Promise<void> {
  const span = ctx.state.span as Span | undefined;
  span?.setAttributes({
    "seintje.feed": request.feed,
    "seintje.after": request.query.after ?? 0,
    "seintje.wait_ms": request.waitMs,
  });
  const leave = request.waitMs > 0 ? services.admission.enter("longpolls") : undefined;
  let page: FeedPage;
  try {
    page = await services.reader.poll(request.feed, request.query, 0);
  } catch (error) {
    leave?.();
    throw error;
  }
  if (leave && page.sequences.length === 0) {
    waitPastKoa(ctx, services, request, page, leave);
    return;
  }
  leave?.();
  served(services, page, request.waitMs > 0, span);
  const { tag, cacheControl } = validators(request, page);
  ctx.set("Link", nextLink(services, request, waitParameter(ctx), page.next));
  answerCacheable(ctx, tag, cacheControl, pageBody(page));
}

/** A woken long-poll's answer, the same for every request that asked the same with the same encoding. */
interface Prepared {
  headers: OutgoingHttpHeaders;
  body: Buffer;
}

/** The answers prepared per page read, by `wait` and encoding; a page read is shared by the long-polls it woke. */
const preparedAnswers = new WeakMap<FeedPage, Map<string, Prepared>>();

function prepare(ctx: Context, services: Services, request: PageRequest, page: FeedPage): Prepared {
  let answers = preparedAnswers.get(page);
  if (!answers) {
    answers = new Map();
    preparedAnswers.set(page, answers);
  }
  const wait = waitParameter(ctx);
  const key = wait === undefined ? "" : `wait=${wait}`;
  let plain = answers.get(key);
  if (!plain) {
    const { tag, cacheControl } = validators(request, page);
    const body = pageBody(page);
    plain = {
      headers: {
        ETag: tag,
        "Cache-Control": cacheControl,
        Link: nextLink(services, request, wait, page.next),
        "Content-Type": "application/json; charset=utf-8",
        "Content-Length": body.length,
      },
      body,
    };
    answers.set(key, plain);
  }
  const encoding = chooseEncoding(ctx, plain.body.length);
  if (!encoding) return plain;
  let packed = answers.get(`${key} ${encoding}`);
  if (!packed) {
    const body = compressed(plain.body, encoding);
    packed = {
      headers: {
        ...plain.headers,
        ETag: encodedTag(plain.headers.ETag as string, encoding),
        "Content-Encoding": encoding,
        "Content-Length": body.length,
      },
      body,
    };
    answers.set(`${key} ${encoding}`, packed);
  }
  return packed;
}

/**
 * Waits for the page outside the middleware and answers it there: the same headers and bytes as an answer through
 * Koa (API-Version, CORS and Vary are on the response already), or the same problem document.
 */
function waitPastKoa(
  ctx: Context,
  services: Services,
  request: PageRequest,
  first: FeedPage,
  leave: () => void,
): void {
  const done = answerLater(ctx);
  ctx.vary("Accept");
  ctx.vary("Accept-Encoding");
  const span = ctx.state.span as Span | undefined;
  const gone = clientGone(ctx);
  const write = (status: number, headers: OutgoingHttpHeaders, body?: Buffer | string) => {
    // The status the request log and span record (ctx.status reads it), also when nobody is left to get it.
    ctx.res.statusCode = status;
    if (ctx.res.destroyed || ctx.res.headersSent) return;
    // A request answered while the service drains tells its client not to send more on this connection.
    const sent = services.stopping.aborted ? { ...headers, Connection: "close" } : headers;
    ctx.res.writeHead(status, sent).end(body);
  };
  const answer = async () => {
    try {
      const page = await services.reader.poll(
        request.feed,
        request.query,
        request.waitMs,
        gone.signal,
        first,
      );
      served(services, page, true, span);
      const prepared = prepare(ctx, services, request, page);
      const tag = prepared.headers.ETag as string;
      if (notModified(ctx, tag)) {
        const { ETag, "Cache-Control": cacheControl, Link } = prepared.headers;
        write(304, { ETag, "Cache-Control": cacheControl, Link });
      } else {
        write(200, prepared.headers, prepared.body);
      }
    } catch (error) {
      const problem = problemOf(services, ctx, error);
      const body = JSON.stringify(problem.toJSON());
      const headers = {
        ...problemHeaders(problem),
        "Content-Type": "application/problem+json",
        "Content-Length": Buffer.byteLength(body),
      };
      write(problem.status, headers, body);
    } finally {
      gone.release();
      leave();
      done();
    }
  };
  answer().catch((error: unknown) => {
    // Writing the problem failed too: nothing is left to tell the client.
    services.logger.error({ err: error, path: ctx.path }, "long-poll answer failed");
    ctx.res.destroy();
  });
}
