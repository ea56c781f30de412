import type { Context, Middleware } from "koa";
import { type Action, allows, allowsEveryFeed } from "../auth/grants.js";
import { InvalidToken, KeysUnavailable, type Principal, type TokenVerifier } from "../auth/verifier.js";
import { HttpProblem } from "../errors.js";
import type { Logger } from "../logger.js";
import { PING_DATA_SCHEMA_PATH } from "../webhooks/ping.js";

/**
 * Bearer authentication (RFC 6750) and per-feed authorization. Authorization looks only at the token's grants and
 * the feed's name, before any storage is touched, so a refusal never tells whether a feed exists.
 */

/** Paths that need no token; `/metrics` too unless SEINTJE_METRICS says otherwise. */
const OPEN_PATHS = [
  "/healthz",
  "/readyz",
  "/v1/openapi.json",
  "/v1/asyncapi.json",
  PING_DATA_SCHEMA_PATH,
  "/.well-known/jwks.json",
];

const REALM = 'Bearer realm="seintje"';

/**
 * Who a request without a token runs as on the paths a public feed opens: granted nothing, so it may read only what
 * `authorizeRead` finds public; anywhere else it is refused with the 401 a missing token gets.
 */
const ANONYMOUS: Principal = { subject: undefined, grants: [], expiresAt: undefined };

/** The GET paths of one feed that a public feed opens to anyone (contract 1.1, "Caching, public feeds"). */
const PUBLIC_CAPABLE = /^\/v1\/feeds\/[^/]+(?:\/events(?:\/[^/]+)?|\/types(?:\/[^/]+)?|\/asyncapi\.json)?$/;

/** Who a request runs as when authentication is off: allowed everything. */
const UNAUTHENTICATED: Principal = {
  subject: undefined,
  grants: [{ action: "admin", feeds: undefined, text: "admin" }],
  expiresAt: undefined,
};

function unauthorized(description?: string): HttpProblem {
  const header =
    description === undefined ? REALM : `${REALM}, error="invalid_token", error_description="${description}"`;
  return new HttpProblem(
    401,
    "unauthorized",
    description === undefined
      ? "This request needs a bearer token."
      : `The bearer token is not valid: ${description}.`,
    {},
    { "WWW-Authenticate": header },
  );
}

/** The stream endpoint: the one place where browsers' EventSource, which cannot send headers, may use ?access_token=. */
const STREAM_PATH = /^\/v1\/feeds\/[^/]+\/events$/;

function isStreamRequest(ctx: Context): boolean {
  return (
    ctx.method === "GET" &&
    STREAM_PATH.test(ctx.path) &&
    ctx.accepts("application/json", "text/event-stream") === "text/event-stream"
  );
}

function queryToken(ctx: Context): string | null | undefined {
  const token = ctx.query.access_token;
  if (token === undefined) return undefined;
  if (!isStreamRequest(ctx) || typeof token !== "string" || !/^[A-Za-z0-9\-._~+/]+=*$/.test(token))
    return null;
  return token;
}

/** Why a token in the wrong form or place was refused. */
function malformation(ctx: Context): string {
  if (ctx.get("Authorization") !== "") return "the Authorization header is malformed";
  return isStreamRequest(ctx)
    ? "access_token is malformed"
    : "access_token is taken on streams only (Accept: text/event-stream); send the token in an Authorization: Bearer header";
}

/**
 * The token from `Authorization: Bearer` (or, on the stream endpoint only, `?access_token=`): null when it is
 * malformed or in a place it may not be, undefined when there is none.
 */
function bearerToken(ctx: Context): string | null | undefined {
  const header = ctx.get("Authorization");
  if (header === "") return queryToken(ctx);
  const match = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(header);
  if (match) return match[1]!;
  return /^Bearer(\s|$)/i.test(header) ? null : undefined;
}

export function authentication(
  verifier: TokenVerifier | undefined,
  logger: Logger,
  options: { openMetrics: boolean },
): Middleware {
  const open = new Set(options.openMetrics ? [...OPEN_PATHS, "/metrics"] : OPEN_PATHS);
  return async (ctx, next) => {
    if (open.has(ctx.path)) return next();
    if (!verifier) {
      ctx.state.principal = UNAUTHENTICATED;
      return next();
    }
    const token = bearerToken(ctx);
    if (token === undefined) {
      if ((ctx.method === "GET" || ctx.method === "HEAD") && PUBLIC_CAPABLE.test(ctx.path)) {
        ctx.state.principal = ANONYMOUS;
        return next();
      }
      throw unauthorized();
    }
    if (token === null) throw unauthorized(malformation(ctx));
    try {
      ctx.state.principal = await verifier.verify(token);
    } catch (error) {
      if (error instanceof InvalidToken) throw unauthorized(error.description);
      if (error instanceof KeysUnavailable) {
        logger.warn({ err: error.cause }, "token keys could not be fetched");
        throw new HttpProblem(503, "unavailable", error.message, {}, { "Retry-After": "5" });
      }
      throw error;
    }
    return next();
  };
}

export function principalOf(ctx: Context): Principal {
  const principal = ctx.state.principal as Principal | undefined;
  if (!principal) throw new Error("authorization checked before authentication ran");
  return principal;
}

function forbidden(scope: string): HttpProblem {
  return new HttpProblem(
    403,
    "forbidden",
    `This token does not grant "${scope}".`,
    {},
    { "WWW-Authenticate": `${REALM}, error="insufficient_scope", scope="${scope}"` },
  );
}

/**
 * Throws 403 unless the request's token grants `action` on `feed` (or, without a feed, on some feed); 401 when the
 * request has no token.
 */
export function authorize(ctx: Context, action: Action, feed?: string): Principal {
  const principal = principalOf(ctx);
  if (!allows(principal.grants, action, feed)) {
    if (principal === ANONYMOUS) throw unauthorized();
    throw forbidden(feed === undefined ? action : `${action}:${feed}`);
  }
  return principal;
}

/**
 * Lets a request read `feed` when its token grants `read` on it, or when the feed is public (then a request
 * without a token, or with one that grants nothing here, may read too). The feed's publicness is looked up only
 * when the grants do not already allow it, and a refusal is the same whether the feed exists or not.
 */
export async function authorizeRead(
  ctx: Context,
  feed: string,
  feeds: { isPublic(feed: string): Promise<boolean> },
): Promise<Principal> {
  const principal = principalOf(ctx);
  if (allows(principal.grants, "read", feed)) return principal;
  if (await feeds.isPublic(feed)) return principal;
  return authorize(ctx, "read", feed);
}

/** Throws 403 unless the token grants `action` on every feed: the grant without a feed glob. */
export function authorizeEveryFeed(ctx: Context, action: Action): Principal {
  const principal = principalOf(ctx);
  if (!allowsEveryFeed(principal.grants, action)) throw forbidden(action);
  return principal;
}
