import type Koa from "koa";
import { type StorageFailure, storageFailure } from "../db/failures.js";
import { coerceError, HttpProblem, type ProblemKind } from "../errors.js";
import { expectsContinue } from "./body.js";
import type { Services } from "./context.js";

/** Failures as RFC 9457 problem documents: the middleware, and the same for answers given past it. */

/**
 * A storage failure that is not the client's, as the problem to answer, each with the seconds of its Retry-After:
 * - full: 507, for as long as freeing space takes an operator;
 * - unavailable: 503, the database cannot be reached (a restart or fail-over). A connection lost mid-commit is one:
 *   the client's retry is safe, since publishing is idempotent on (source, id);
 * - conflict: 503, the database undid the request's transaction because it met another, which is done by then.
 */
const STORAGE_PROBLEMS: Record<
  StorageFailure,
  { status: number; kind: ProblemKind; detail: string; retryAfter: string }
> = {
  full: {
    status: 507,
    kind: "storageFull",
    detail: "The service's storage is full; nothing of this request was stored. Try again later.",
    retryAfter: "30",
  },
  unavailable: {
    status: 503,
    kind: "unavailable",
    detail:
      "The database could not be reached; if this request wrote, it may or may not have been stored. Publishing the same events again is safe.",
    retryAfter: "5",
  },
  conflict: {
    status: 503,
    kind: "unavailable",
    detail:
      "The request met another in the database and was undone: nothing of it was stored. Send it again.",
    retryAfter: "1",
  },
};

function storageProblem(error: unknown): HttpProblem | undefined {
  const failure = storageFailure(error);
  if (failure === undefined) return undefined;
  const { status, kind, detail, retryAfter } = STORAGE_PROBLEMS[failure];
  return new HttpProblem(status, kind, detail, {}, { "Retry-After": retryAfter });
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
