import zlib from "node:zlib";
import type { Context, Middleware } from "koa";
import compress from "koa-compress";
import Negotiator from "negotiator";
import type { FeedRow } from "../db/feeds.js";

/**
 * HTTP caching and compression of reads (contract 1.1, "Caching, public feeds and compression").
 *
 * - A page whose `next` is below the feed's head when it is read can never change, and neither can a single event:
 *   both are immutable for a year, `public` on a public feed (any cache may keep them) and `private` otherwise (the
 *   reader's own cache only). A page at the head is kept a few seconds by shared caches on a public feed, so that a
 *   cache in front collapses the long-polls waiting at one cursor into one request; elsewhere it is `no-cache`.
 * - Their ETags are strong and made from what determines the bytes, not from hashing them: the feed's id (a feed
 *   created again under its name is another feed), where the page starts, its `next` and the `head` it reports.
 *   The events between are stored once and never change, so equal tags mean equal bytes, at no cost per request.
 * - A compressed answer's ETag names its encoding (`"...-br"`): a strong tag belongs to one representation.
 */

/** A year: the longest lifetime RFC 9111 lets a cache assume. */
export const IMMUTABLE_SECONDS = 31_536_000;
/** How long a shared cache may keep a public feed's page at the head: long enough to answer a herd of long-polls. */
export const HEAD_PAGE_SECONDS = 2;
/** JSON answers of at least this many bytes are compressed when the client accepts it. */
export const COMPRESS_THRESHOLD = 1024;

const ENCODING_SUFFIX = /-(?:br|gzip|deflate)"$/;

/** The Cache-Control of an answer that can never change. */
export function immutable(feed: FeedRow): string {
  return `${feed.public ? "public" : "private"}, max-age=${IMMUTABLE_SECONDS}, immutable`;
}

/**
 * The Cache-Control of a page. It is immutable when it ends below the head and starts at a fixed place: a page read
 * from the start (`after` 0) of a feed with retention changes as retention removes its first events. An empty page
 * at the head (a long-poll that ended with nothing) is kept by nobody: there is nothing to share, and a cached one
 * would answer the next long-poll at once, empty.
 */
export function pageCacheControl(
  feed: FeedRow,
  page: { after: number; next: number; head: number; empty: boolean },
): string {
  const retained = feed.retentionMaxAge !== null || feed.retentionMaxEvents !== null;
  if (page.next < page.head && (page.after > 0 || !retained)) return immutable(feed);
  if (!feed.public) return "private, no-cache";
  return page.empty ? "public, max-age=0, must-revalidate" : `public, max-age=${HEAD_PAGE_SECONDS}`;
}

export function pageTag(feed: FeedRow, start: number, next: number, head: number): string {
  return `"p${feed.id}-${start}-${next}-${head}"`;
}

export function eventTag(feed: FeedRow, sequence: number): string {
  return `"e${feed.id}-${sequence}"`;
}

/** Whether If-None-Match names this tag (weak comparison, RFC 9110 §13.1.2, with any encoding suffix ignored). */
export function notModified(ctx: Context, tag: string): boolean {
  const header = ctx.get("If-None-Match");
  if (header === "") return false;
  if (header.trim() === "*") return true;
  return header.split(",").some((candidate) => {
    const opaque = candidate.trim().replace(/^W\//, "").replace(ENCODING_SUFFIX, '"');
    return opaque === tag;
  });
}

/**
 * Answers a read with its validators: ETag, Cache-Control and Vary on the 200 and on the 304 alike, and a 304
 * without a body when the client already holds this representation.
 */
export function answerCacheable(
  ctx: Context,
  tag: string,
  cacheControl: string,
  body: string | Buffer,
): void {
  ctx.set("ETag", tag);
  ctx.set("Cache-Control", cacheControl);
  // The stream shares the pull feed's URL, and compressed answers differ in bytes.
  ctx.vary("Accept");
  ctx.vary("Accept-Encoding");
  if (notModified(ctx, tag)) {
    ctx.status = 304;
    return;
  }
  ctx.type = "application/json";
  ctx.body = body;
}

/** A strong tag of one encoding's bytes: `"p1-0-10-10"` compressed with brotli is `"p1-0-10-10-br"`. */
export function encodedTag(tag: string, encoding: string): string {
  return tag.endsWith('"') && !ENCODING_SUFFIX.test(tag) ? `${tag.slice(0, -1)}-${encoding}"` : tag;
}

/** Brotli at the quality koa-compress uses for the answers it compresses. */
const BROTLI_OPTIONS = { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 4 } };

/**
 * The encoding to send a JSON answer of `size` bytes in, by the same rule as `compression`: brotli, then gzip,
 * for 1 KiB or more, when the client accepts it; undefined for the bytes as they are.
 */
export function chooseEncoding(ctx: Context, size: number): "br" | "gzip" | undefined {
  const header = ctx.get("Accept-Encoding");
  if (size < COMPRESS_THRESHOLD || header === "") return undefined;
  // As koa-compress negotiates: `*` means gzip, and among encodings the client weighs alike ours decides.
  const negotiator = new Negotiator({ headers: { "accept-encoding": header === "*" ? "gzip" : header } });
  const chosen = (negotiator.encoding as PreferringEncoding)(ENCODINGS, { preferred: ENCODINGS });
  return chosen === "br" || chosen === "gzip" ? chosen : undefined;
}

/** What `compression` may send, best first (koa-compress's order, without deflate). */
const ENCODINGS = ["br", "gzip", "identity"];
/** negotiator 1.x takes a preference among equals; its published types (0.6) do not know it yet. */
type PreferringEncoding = (available: string[], options: { preferred: string[] }) => string | undefined;

/** Compresses a whole answer at once, for answers sent past Koa (and its compression) to many clients. */
export function compressed(body: Buffer, encoding: "br" | "gzip"): Buffer {
  return encoding === "br" ? zlib.brotliCompressSync(body, BROTLI_OPTIONS) : zlib.gzipSync(body);
}

/**
 * Compression of JSON answers of 1 KiB or more (brotli, then gzip, as the contract names), never of streams.
 * koa-compress also offers zstd, first, wherever Node's zlib has it (Node 22.15 and later); it is turned off, so
 * that a runtime's upgrade changes no answer, and answers through Koa stay those that woken long-polls get
 * (chooseEncoding).
 */
export function compression(): Middleware {
  const compressing = compress({
    threshold: COMPRESS_THRESHOLD,
    filter: (type) => /^application\/(?:[\w.+-]+\+)?json\b/.test(type),
    deflate: false,
    zstd: false,
  });
  return async (ctx, next) => {
    await compressing(ctx, next);
    // Koa's response.get answers undefined for a header that is not set.
    const encoding = ctx.response.get("Content-Encoding") as string | undefined;
    const tag = ctx.response.get("ETag") as string | undefined;
    if (encoding && tag) ctx.set("ETag", encodedTag(tag, encoding));
  };
}
