import { type IncomingMessage, type ServerResponse, STATUS_CODES } from "node:http";
import { type Duplex, pipeline, Readable } from "node:stream";
import type Router from "@koa/router";
import { SpanKind, SpanStatusCode } from "@opentelemetry/api";
import Koa from "koa";
import compose from "koa-compose";
import { HttpProblem } from "../errors.js";
import { contextFrom, startSpan } from "../tracing.js";
import { asyncApiRouter } from "./asyncapi.js";
import { authentication } from "./auth.js";
import { compression } from "./caching.js";
import { consoleMiddleware } from "./console.js";
import type { Services } from "./context.js";
import { crossOrigin } from "./cors.js";
import { answered } from "./deferred.js";
import { eventRouter } from "./events.js";
import { feedRouter } from "./feeds.js";
import { healthRouter } from "./health.js";
import { jwksRouter } from "./jwks.js";
import { metricsRouter } from "./metrics.js";
import { API_VERSION, openApiRouter } from "./openapi.js";
import { problems } from "./problems.js";
import { subscriptionRouter } from "./subscriptions.js";
import { typeRouter } from "./types.js";

/**
 * One log line per request: method, route template (not the raw URL), path without the query (which may hold an
 * access_token), status, duration; and the same in the request metrics.
 */
function requestLog(services: Services): Koa.Middleware {
  const { metrics } = services;
  const logsRequests = services.logger.isLevelEnabled("info");
  return async (ctx, next) => {
    const started = process.hrtime.bigint();
    const record = (timed: boolean) => {
      const route = (ctx as { _matchedRoute?: string })._matchedRoute;
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      if (logsRequests) {
        services.logger.info(
          {
            method: ctx.method,
            route: route ?? null,
            path: ctx.path,
            status: ctx.status,
            durationMs: seconds * 1000,
          },
          "request",
        );
      }
      const labels = { method: ctx.method, route: route ?? "" };
      metrics.httpRequests.inc({ ...labels, status: String(ctx.status) });
      if (timed) metrics.httpDuration.observe(labels, seconds);
    };
    try {
      await next();
    } finally {
      const later = answered(ctx);
      // A stream answers itself (respond = false) and lasts as long as its client: no latency to speak of. A
      // long-poll that waited is recorded when it is answered.
      if (later) void later.then(() => record(true));
      else record(ctx.respond !== false);
    }
  };
}

/**
 * A span per request (when tracing is on), continuing the caller's trace from its `traceparent`, named by the
 * route template, never by the raw URL (whose query may hold an access_token). What the request does adds to it
 * (`ctx.state.span`); a stream's ends when the stream is open.
 */
function traced(services: Services): Koa.Middleware {
  return async (ctx, next) => {
    const span = startSpan(
      services.tracer,
      ctx.method,
      { kind: SpanKind.SERVER, attributes: { "http.request.method": ctx.method, "url.path": ctx.path } },
      contextFrom(ctx.headers),
    );
    ctx.state.span = span;
    const end = () => {
      const route = (ctx as { _matchedRoute?: string })._matchedRoute;
      if (route) {
        span.updateName(`${ctx.method} ${route}`);
        span.setAttribute("http.route", route);
      }
      span.setAttribute("http.response.status_code", ctx.status);
      if (ctx.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
    };
    try {
      await next();
    } finally {
      const later = answered(ctx);
      if (later) void later.then(end);
      else end();
    }
  };
}

/** Builds the Koa application without listening: the service and the tests attach it to a server. */
export function createApp(services: Services): Koa {
  const app = new Koa();
  app.silent = true;
  app.use(async (ctx, next) => {
    ctx.set("API-Version", API_VERSION);
    await next();
    // A request answered while the service drains tells its client not to send more on this connection.
    if (services.stopping.aborted) ctx.set("Connection", "close");
  });
  app.use(requestLog(services));
  app.use(traced(services));
  app.use(crossOrigin(services.corsOrigins));
  app.use(compression());
  app.use(problems(services));
  app.use(consoleMiddleware());
  app.use(
    authentication(services.verifier, services.logger, { openMetrics: services.metricsAccess === "open" }),
  );
  for (const router of createRouters(services)) {
    app.use(router.routes());
    app.use(router.allowedMethods());
  }
  return app;
}

/** Every router of the API, in the order they are tried. The OpenAPI test lists their routes. */
export function createRouters(services: Services): Router[] {
  return [
    healthRouter(services),
    metricsRouter(services),
    openApiRouter(services),
    asyncApiRouter(services),
    jwksRouter(services),
    feedRouter(services),
    eventRouter(services),
    typeRouter(services),
    subscriptionRouter(services),
  ];
}

/**
 * The server's request listener. Requests that may ask for a stream (`Accept` names text/event-stream) run through
 * the same middleware as every other, but outside Koa's own request handling, which keeps each request's context
 * alive until its response ends (on-finished holds it). A stream's response lasts for hours, and its context was
 * 1.8 KB of heap per open stream, measured with heap snapshots of 2,000 streams. Every other request is Koa's.
 */
export function requestListener(
  app: Koa,
  logger: Services["logger"],
): (req: IncomingMessage, res: ServerResponse) => void {
  const handle = app.callback();
  const run = compose(app.middleware);
  return (req, res) => {
    if (req.method !== "GET" || !req.headers.accept?.includes("text/event-stream")) {
      void handle(req, res);
      return;
    }
    const ctx = app.createContext(req, res);
    res.statusCode = 404;
    run(ctx).then(
      () => respond(ctx),
      (error: unknown) => {
        // The problems middleware answers every error; this is only the last line of defence.
        logger.error({ err: error, path: ctx.path }, "stream request failed");
        if (!res.headersSent) res.writeHead(500);
        res.end();
      },
    );
  };
}

/**
 * What Koa's respond does, for the answers the stream path gives: nothing (an event stream, which writes its own),
 * text, JSON, or a body compressed on its way out (compression turns a JSON answer of 1 KiB or more into a zlib
 * stream, whatever route gave it: any GET may name text/event-stream in its Accept).
 */
function respond(ctx: Koa.Context): void {
  const { res, body } = ctx;
  if (ctx.respond === false || res.writableEnded) return;
  if (body === undefined || body === null) {
    res.end();
    return;
  }
  if (body instanceof Readable) {
    // An error here is the client gone, or the compressor failing: pipeline destroys both sides, nothing is left
    // to answer.
    pipeline(body, res, () => {});
    return;
  }
  res.end(typeof body === "string" || Buffer.isBuffer(body) ? body : JSON.stringify(body));
}

/**
 * Answers what Node's HTTP parser refuses before any middleware runs (headers too large, a malformed request, a
 * client too slow to send its request) as a problem document with API-Version, like every other answer; the
 * connection is closed after it, as Node's own answer would. A socket whose response has begun, or that is gone,
 * is only closed. An answer to HEAD has no content (RFC 9112, section 6.3): a client reads the bytes after its
 * headers as the next response.
 */
export function answerClientError(
  error: Error & { code?: string; rawPacket?: Buffer },
  socket: Duplex,
): void {
  const inFlight = (socket as Duplex & { _httpMessage?: ServerResponse })._httpMessage;
  if (!socket.writable || inFlight?.headersSent || error.code === "ECONNRESET") {
    socket.destroy();
    return;
  }
  const problem =
    error.code === "HPE_HEADER_OVERFLOW"
      ? new HttpProblem(431, "headersTooLarge", "The request's headers are larger than the service takes.")
      : error.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? new HttpProblem(408, "requestTimeout", "The request was not received in time.")
        : new HttpProblem(400, "badRequest", "The request is not valid HTTP/1.1.");
  const body = JSON.stringify(problem.toJSON());
  const head = error.rawPacket?.subarray(0, 5).toString("latin1") === "HEAD ";
  socket.end(
    [
      `HTTP/1.1 ${problem.status} ${STATUS_CODES[problem.status]}`,
      "Content-Type: application/problem+json",
      `Content-Length: ${Buffer.byteLength(body)}`,
      `API-Version: ${API_VERSION}`,
      "Cache-Control: no-store",
      "Connection: close",
      "",
      head ? "" : body,
    ].join("\r\n"),
  );
}
