import cors from "@koa/cors";
import type Koa from "koa";

/**
 * CORS, for browser clients that send `Authorization` (a fetch, the console): an origin in SEINTJE_CORS_ORIGINS
 * (or any, with `*`) gets its preflight answered 204 before authentication, and every answer, errors and streams
 * included, names it in Access-Control-Allow-Origin with the headers a client needs to read exposed. Other origins
 * get no CORS headers: their browsers keep the answers from them. The published API descriptions are readable by
 * every origin (NL API Design Rules, /core/publish-openapi).
 */

const OPEN_DOCUMENTS = new Set(["/v1/openapi.json", "/v1/asyncapi.json"]);

/** How long a browser may keep a preflight's answer: ten minutes, so a changed configuration applies soon. */
const PREFLIGHT_MAX_AGE_SECONDS = 600;

export function crossOrigin(origins: readonly string[]): Koa.Middleware {
  const anyOrigin = origins.includes("*");
  return cors({
    origin: (ctx) => {
      if (OPEN_DOCUMENTS.has(ctx.path) || anyOrigin) return "*";
      const origin = ctx.get("Origin");
      return origins.includes(origin) ? origin : "";
    },
    allowMethods: ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"],
    allowHeaders: ["Authorization", "Content-Type", "Last-Event-ID", "If-None-Match"],
    exposeHeaders: ["Link", "ETag", "API-Version", "Retry-After", "Location"],
    maxAge: PREFLIGHT_MAX_AGE_SECONDS,
    keepHeadersOnError: true,
  });
}
