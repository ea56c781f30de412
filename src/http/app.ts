import { type IncomingMessage, type ServerResponse, STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import type Router from "@koa/router";
import { SpanKind, SpanStatusCode } from "@opentelemetry/api";
import Koa from "koa";
import compose from "koa-compose";
import { storageFailure } from "../db/failures.js";
import { coerceError, HttpProblem } from "../errors.js";
import { contextFrom, startSpan } from "../tracing.js";
import { asyncApiRouter } from "./asyncapi.js";
import { authentication } from "./auth.js";
import { expectsContinue } from "./body.js";
import { compression } from "./caching.js";
import { consoleMiddleware } from "./console.js";
import type { Services } from "./context.js";
import { crossOrigin } from "./cors.js";
import { eventRouter } from "./events.js";
import { feedRouter } from "./feeds.js";
import { healthRouter } from "./health.js";
import { jwksRouter } from "./jwks.js";
import { metricsRouter } from "./metrics.js";
import { API_VERSION, openApiRouter } from "./openapi.js";
import { subscriptionRouter } from "./subscriptions.js";
import { typeRouter } from "./types.js";

/** Seconds a client is asked to wait when storage is full: freeing space takes an operator. */
const FULL_RETRY_AFTER = "30";
/** Seconds a client is asked to wait when the database cannot be reached: a restart or fail-over. */
const UNAVAILABLE_RETRY_AFTER = "5";

/**
 * A storage failure that is not a bug, as the problem to answer: 507 when storage is full, 503 when the database
 * cannot be reached (a connection lost mid-commit included: the client's retry is safe, since publishing is
 * idempotent on (source, id)). Both ask the client to come back with Retry-After.
 */
function storageProblem(error: unknown): HttpProblem | undefined {
  const failure = storageFailure(error);
  if (failure === "full") {
    return new HttpProblem(
      507,
      "storageFull",
      "The service's storage is full; nothing of this request was stored. Try again later.",
      {},
      { "Retry-After": FULL_RETRY_AFTER },
    );
  }
  if (failure === "unavailable") {
    return new HttpProblem(
      503,
      "unavailable",
      "The database could not be reached; if this request wrote, it may or may not have been stored. Publishing the same events again is safe.",
      {},
      { "Retry-After": UNAVAILABLE_RETRY_AFTER },
    );
  }
  return undefined;
}

/** Turns every failure into an RFC 9457 problem document; logs what is not the client's fault. */
function problems(services: Services): Koa.Middleware {
  return async (ctx, next) => {
    let problem: HttpProblem | undefined;
    try {
      await next();
      if (ctx.body === undefined || ctx.body === null) {
        if (ctx.status === 404)
          problem = new HttpProblem(404, "notFound", `Nothing is served at ${ctx.path}.`);
        else if (ctx.status === 405)
          problem = new HttpProblem(405, "methodNotAllowed", `${ctx.method} is not allowed here.`);
        else if (ctx.status === 501)
          problem = new HttpProblem(501, "methodNotAllowed", `${ctx.method} is not implemented.`);
      }
    } catch (error) {
      services.writeHealth.saw(error);
      problem = coerceError(error) ?? storageProblem(error);
      if (!problem) {
        services.logger.error({ err: error, method: ctx.method, path: ctx.path }, "request failed");
        problem = new HttpProblem(
          500,
          "internal",
          "The request could not be completed; the error was logged.",
        );
      }
    }
    if (problem) {
      ctx.status = problem.status;
      ctx.set(problem.headers);
      // An error is about this request at this moment: no cache may keep it.
      ctx.set("Cache-Control", "no-store");
      // Refused before its body was asked for: the client sends none, so this connection cannot carry another.
      if (expectsContinue(ctx) && !ctx.req.complete) ctx.set("Connection", "close");
      ctx.type = "application/problem+json";
      ctx.body = JSON.stringify(problem.toJSON());
    }
  };
}

/**
 * One log line per request: method, route template (not the raw URL), path without the query (which may hold an
 * access_token), status, duration; and the same in the request metrics.
 */
function requestLog(services: Services): Koa.Middleware {
  const { metrics } = services;
  return async (ctx, next) => {
    const started = process.hrtime.bigint();
    try {
      await next();
    } finally {
      const route = (ctx as { _matchedRoute?: string })._matchedRoute;
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
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
      const labels = { method: ctx.method, route: route ?? "" };
      metrics.httpRequests.inc({ ...labels, status: String(ctx.status) });
      // A stream answers itself (respond = false) and lasts as long as its client: no latency to speak of.
      if (ctx.respond !== false) metrics.httpDuration.observe(labels, seconds);
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
    try {
      await next();
    } finally {
      const route = (ctx as { _matchedRoute?: string })._matchedRoute;
      if (route) {
        span.updateName(`${ctx.method} ${route}`);
        span.setAttribute("http.route", route);
      }
      span.setAttribute("http.response.status_code", ctx.status);
      if (ctx.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
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

/** What Koa's respond does, for the answers the stream path gives: nothing (a stream), text, or JSON. */
function respond(ctx: Koa.Context): void {
  const { res, body } = ctx;
  if (ctx.respond === false || res.writableEnded) return;
  if (body === undefined || body === null) {
    res.end();
    return;
  }
  res.end(typeof body === "string" || Buffer.isBuffer(body) ? body : JSON.stringify(body));
}

/**
 * Answers what Node's HTTP parser refuses before any middleware runs (headers too large, a malformed request, a
 * client too slow to send its request) as a problem document with API-Version, like every other answer; the
 * connection is closed after it, as Node's own answer would. A socket whose response has begun, or that is gone,
 * is only closed.
 */
export function answerClientError(error: Error & { code?: string }, socket: Duplex): void {
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
  socket.end(
    [
      `HTTP/1.1 ${problem.status} ${STATUS_CODES[problem.status]}`,
      "Content-Type: application/problem+json",
      `Content-Length: ${Buffer.byteLength(body)}`,
      `API-Version: ${API_VERSION}`,
      "Cache-Control: no-store",
      "Connection: close",
      "",
      body,
    ].join("\r\n"),
  );
}
