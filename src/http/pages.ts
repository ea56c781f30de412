import type { OutgoingHttpHeaders } from "node:http";
import type { Span } from "@opentelemetry/api";
import type { Context } from "koa";
import { MAX_WAIT_SECONDS } from "../log/bounds.js";
import { type FeedPage, type ReadQuery, readClock, readKey } from "../log/reader.js";
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
 * the middleware (see deferred.ts) and writes its own answer when an append wakes it. Thousands of clients that
 * long-poll a feed mostly wait at one cursor: they wait as one herd (one wait, one read of the page), and get one
 * answer: its headers and bytes, compressed once per encoding, are prepared for the first of them and written as
 * they are for the rest. Through Koa, each answer cost its middleware's unwinding, a join of the page's bytes, and a
 * compression of its own; that made 5,000 woken long-polls 3.4 times as slow as 5,000 streams.
 */

export interface PageRequest {
  feed: string;
  query: ReadQuery;
  /** How long a long-poll may wait, in ms; 0 for a plain read. */
  waitMs: number;
}

/**
 * The page as JSON, joined from the stored event texts without parsing or re-serializing them, and encoded once.
 * (Read as bytes and joined as buffers, a page of 1,000 events took 4.0 to 4.6 ms here; as strings joined by `+=`,
 * which V8 keeps as a rope until it is encoded, 3.1 to 3.3 ms: one buffer per event cost more than the encoding.)
 */
function pageBody(page: FeedPage): Buffer {
  let text = '{"events":[';
  for (let index = 0; index < page.bodies.length; index += 1) {
    if (index > 0) text += ",";
    text += page.bodies[index];
  }
  return Buffer.from(`${text}],"next":"${page.next}","head":"${page.head}"}`);
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

/** Counts `page` served to the requests of `spans` (one per request), and says so on each span. */
function served(services: Services, page: FeedPage, waited: boolean, spans: Array<Span | undefined>): void {
  for (const span of spans) {
    span?.setAttributes({ "seintje.next": page.next, "seintje.events": page.sequences.length });
  }
  services.metrics.pagesServed.inc(waited ? WAITED : NOT_WAITED, spans.length);
  services.metrics.eventsServed.inc(PULL, spans.length * page.sequences.length);
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
    // Read in a read that began after the request arrived: its client sees every append acknowledged before.
    page = await services.reader.poll(request.feed, request.query, { waitMs: 0, since: readClock() });
  } catch (error) {
    leave?.();
    throw error;
  }
  if (leave && page.sequences.length === 0) {
    // It waits past the middleware, in the herd of long-polls that wait for the same page.
    Herd.join(ctx, services, request, page, leave);
    return;
  }
  leave?.();
  served(services, page, request.waitMs > 0, [span]);
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

/** A long-poll waiting in a herd. */
interface Waiting {
  ctx: Context;
  request: PageRequest;
  timer: NodeJS.Timeout;
  gone: () => void;
  leave: () => void;
  done: () => void;
}

/** The herds waiting now, per service, by what they read (readKey). */
const herds = new WeakMap<Services, Map<string, Herd>>();

/**
 * The long-polls that wait for the same page: one wait on the wake-up bus and one read for all of them, then one
 * loop that writes each its answer. Each long-poll keeps its own deadline and leaves alone when its client goes.
 * Before, each long-poll had a waiter, a promise chain and a read lookup of its own; 5,000 woken at one cursor
 * spent more time in those and their garbage than in answering.
 */
class Herd {
  private readonly members = new Set<Waiting>();
  /** Aborted when the last member has left: nobody is left to wait for. */
  private readonly quit = new AbortController();

  constructor(
    private readonly services: Services,
    private readonly key: string,
    private readonly request: PageRequest,
    /** The newest page read, empty: what a long-poll whose time is up gets. */
    private current: FeedPage,
  ) {}

  static join(
    ctx: Context,
    services: Services,
    request: PageRequest,
    first: FeedPage,
    leave: () => void,
  ): void {
    let waiting = herds.get(services);
    if (!waiting) {
      waiting = new Map();
      herds.set(services, waiting);
    }
    const key = readKey(request.feed, request.query);
    // A new herd is in the map before its first member joins: a member whose client is already gone leaves at
    // once, and the herd it leaves empty takes itself out.
    let herd = waiting.get(key);
    const fresh = herd === undefined;
    if (!herd) {
      herd = new Herd(services, key, request, first);
      waiting.set(key, herd);
    } else {
      // The joining request may have read after the herd did: whoever's time is up gets the newer page.
      herd.keep(first);
    }
    herd.add(ctx, request, leave);
    if (fresh) void herd.wait();
  }

  /** Keeps `page` (empty, as every page of a waiting herd) as the answer for timeouts, unless it is older. */
  private keep(page: FeedPage): void {
    if (page.feed.id !== this.current.feed.id || page.head > this.current.head) this.current = page;
  }

  private add(ctx: Context, request: PageRequest, leave: () => void): void {
    const done = answerLater(ctx);
    ctx.vary("Accept");
    ctx.vary("Accept-Encoding");
    const member: Waiting = {
      ctx,
      request,
      leave,
      done,
      timer: setTimeout(() => this.release(member), request.waitMs),
      gone: () => this.release(member),
    };
    this.members.add(member);
    // The client going away (the response closing before it is sent) ends its wait; it may have gone already,
    // during the first read.
    if (ctx.res.destroyed) this.release(member);
    else ctx.res.once("close", member.gone);
  }

  /** A long-poll whose time is up, or whose client left: it gets the newest (empty) page. */
  private release(member: Waiting): void {
    if (!this.members.delete(member)) return;
    this.finish(member, this.current);
    served(this.services, this.current, true, [member.ctx.state.span as Span | undefined]);
    if (this.members.size === 0) this.end();
  }

  private end(): void {
    const waiting = herds.get(this.services);
    if (waiting?.get(this.key) === this) waiting.delete(this.key);
    this.quit.abort();
  }

  private async wait(): Promise<void> {
    const { services, request } = this;
    try {
      for (;;) {
        // The longest wait a long-poll may ask for: members' own timers answer them at their deadlines.
        const page = await services.reader.poll(request.feed, request.query, {
          waitMs: MAX_WAIT_SECONDS * 1000,
          signal: this.quit.signal,
          first: this.current,
        });
        if (this.members.size === 0) return;
        // Nothing new yet (the herd outlived the longest wait, members having joined later): wait again. An empty
        // page whose filters skipped windows, or one of a service that is stopping, is the answer as it is.
        if (page.sequences.length === 0 && page.next >= page.head && !services.stopping.aborted) {
          this.keep(page);
          continue;
        }
        this.answer(page);
        return;
      }
    } catch (error) {
      this.fail(error);
    }
  }

  private answer(page: FeedPage): void {
    this.end();
    const members = [...this.members];
    served(
      this.services,
      page,
      true,
      members.map((member) => member.ctx.state.span as Span | undefined),
    );
    for (const member of members) this.finish(member, page);
    this.members.clear();
  }

  private fail(error: unknown): void {
    this.end();
    for (const member of this.members) {
      const problem = problemOf(this.services, member.ctx, error);
      const body = JSON.stringify(problem.toJSON());
      const headers = {
        ...problemHeaders(problem),
        "Content-Type": "application/problem+json",
        "Content-Length": Buffer.byteLength(body),
      };
      this.settle(member, () => write(this.services, member.ctx, problem.status, headers, body));
    }
    this.members.clear();
  }

  /** Writes a member's answer: the same headers and bytes as an answer through Koa would have. */
  private finish(member: Waiting, page: FeedPage): void {
    const { ctx } = member;
    this.settle(member, () => {
      const prepared = prepare(ctx, this.services, member.request, page);
      const tag = prepared.headers.ETag as string;
      if (notModified(ctx, tag)) {
        const { ETag, "Cache-Control": cacheControl, Link } = prepared.headers;
        write(this.services, ctx, 304, { ETag, "Cache-Control": cacheControl, Link });
      } else {
        write(this.services, ctx, 200, prepared.headers, prepared.body);
      }
    });
  }

  private settle(member: Waiting, answer: () => void): void {
    clearTimeout(member.timer);
    member.ctx.res.off("close", member.gone);
    try {
      answer();
    } catch (error) {
      // Writing failed: nothing is left to tell the client.
      this.services.logger.error({ err: error, path: member.ctx.path }, "long-poll answer failed");
      member.ctx.res.destroy();
    } finally {
      member.leave();
      member.done();
    }
  }
}

/**
 * Writes an answer outside the middleware (API-Version, CORS and Vary are on the response already). The status is
 * set for the request log and span (ctx.status reads it), also when nobody is left to get the answer.
 */
function write(
  services: Services,
  ctx: Context,
  status: number,
  headers: OutgoingHttpHeaders,
  body?: Buffer | string,
): void {
  ctx.res.statusCode = status;
  if (ctx.res.destroyed || ctx.res.headersSent) return;
  // A request answered while the service drains tells its client not to send more on this connection.
  const sent = services.stopping.aborted ? { ...headers, Connection: "close" } : headers;
  ctx.res.writeHead(status, sent).end(body);
}
