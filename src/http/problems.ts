import type Koa from "koa";
import { storageFailure } from "../db/failures.js";
import { coerceError, HttpProblem } from "../errors.js";
import { expectsContinue } from "./body.js";
import type { Services } from "./context.js";

/** Failures as RFC 9457 problem documents: the middleware, and the same for answers given past it. */

/** Seconds a client is asked to wait when storage is full: freeing space takes an operator. */
const FULL_RETRY_AFTER = "30";
/** Seconds a client is asked to wait when the database cannot be reached: a restart or fail-over. */
const UNAVAILABLE_RETRY_AFTER = "5";
/** Seconds before sending again a request the database undid because it met another: the other is done by then. */
const CONFLICT_RETRY_AFTER = "1";

/**
 * A storage failure that is not the client's, as the problem to answer: 507 when storage is full, 503 when the
 * database cannot be reached (a connection lost mid-commit included: the client's retry is safe, since publishing
 * is idempotent on (source, id)), and 503 when it undid the request's transaction because it met another. All ask
 * the client to come back with Retry-After.
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
  if (failure === "conflict") {
    return new HttpProblem(
      503,
      "unavailable",
      "The request met another in the database and was undone: nothing of it was stored. Send it again.",
      {},
      { "Retry-After": CONFLICT_RETRY_AFTER },
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

/**
 * The problem document a failure is answered with; what is not the client's fault (a 500) is logged. Used by the
 * problems middleware and by answers given past it (a long-poll that waited).
 */
export function problemOf(services: Services, ctx: Koa.Context, error: unknown): HttpProblem {
  services.writeHealth.saw(error);
  const problem = coerceError(error) ?? storageProblem(error);
  if (problem) return problem;
  services.logger.error({ err: error, method: ctx.method, path: ctx.path }, "request failed");
  return new HttpProblem(500, "internal", "The request could not be completed; the error was logged.");
}

/** The headers of a problem's answer besides its type: an error is about this request now, so no cache keeps it. */
export function problemHeaders(problem: HttpProblem): Record<string, string> {
  return { ...problem.headers, "Cache-Control": "no-store" };
}

/** Turns every failure into an RFC 9457 problem document; logs what is not the client's fault. */
export function problems(services: Services): Koa.Middleware {
  return async (ctx, next) => {
    let problem: HttpProblem | undefined;
    try {
      await next();
      if ((ctx.body === undefined || ctx.body === null) && ctx.respond !== false) {
        if (ctx.status === 404)
          problem = new HttpProblem(404, "notFound", `Nothing is served at ${ctx.path}.`);
        else if (ctx.status === 405)
          problem = new HttpProblem(405, "methodNotAllowed", `${ctx.method} is not allowed here.`);
        else if (ctx.status === 501)
          problem = new HttpProblem(
            501,
            "notImplemented",
            `${ctx.method} is not a method this service knows.`,
          );
      }
    } catch (error) {
      problem = problemOf(services, ctx, error);
    }
    if (problem) {
      ctx.status = problem.status;
      ctx.set(problemHeaders(problem));
      // Refused before its body was asked for: the client sends none, so this connection cannot carry another.
      if (expectsContinue(ctx) && !ctx.req.complete) ctx.set("Connection", "close");
      ctx.type = "application/problem+json";
      ctx.body = JSON.stringify(problem.toJSON());
    }
  };
}
