import type { Problem } from "./types.js";

/** The errors the SDK throws: every one says what the server (or the network) said. */

const PROBLEM = "urn:seintje:problem:";

/** The server refused a request: `status` and its problem document. */
export class SeintjeError extends Error {
  /** What the server's Retry-After asked for, in milliseconds (429, 503). */
  retryAfterMs: number | undefined;

  constructor(
    readonly status: number,
    readonly problem: Problem | undefined,
    message = problem?.detail ?? problem?.title ?? `HTTP ${status}`,
  ) {
    super(message);
    this.name = "SeintjeError";
  }

  /** The problem type's short name: `cursor-gone`, `validation`, ... */
  get kind(): string | undefined {
    return this.problem?.type.startsWith(PROBLEM) ? this.problem.type.slice(PROBLEM.length) : undefined;
  }
}

/**
 * Retention removed events after the cursor: the consumer missed them for good and must resynchronise from
 * `oldest` (null when the feed keeps no event now). Thrown by reads (410) and by streams (`event: reset`).
 */
export class CursorGoneError extends SeintjeError {
  readonly oldest: string | null;
  readonly head: string | undefined;

  constructor(problem: Problem) {
    super(410, problem);
    this.name = "CursorGoneError";
    this.oldest = typeof problem.oldest === "string" ? problem.oldest : null;
    this.head = typeof problem.head === "string" ? problem.head : undefined;
  }
}

/** The cursor is ahead of the feed's head: the feed was deleted and created again, or the cursor is another's. */
export class CursorAheadError extends SeintjeError {
  readonly head: string | undefined;

  constructor(problem: Problem) {
    super(400, problem);
    this.name = "CursorAheadError";
    this.head = typeof problem.head === "string" ? problem.head : undefined;
  }
}

/** The typed error for a refusal; `retryAfter` is the header's value (seconds or an HTTP date). */
export function errorFor(
  status: number,
  problem: Problem | undefined,
  retryAfter?: string | null,
): SeintjeError {
  const error =
    problem?.type === `${PROBLEM}cursor-gone`
      ? new CursorGoneError(problem)
      : problem?.type === `${PROBLEM}cursor-ahead`
        ? new CursorAheadError(problem)
        : new SeintjeError(status, problem);
  if (retryAfter) {
    const seconds = /^\d+$/.test(retryAfter)
      ? Number(retryAfter)
      : (Date.parse(retryAfter) - Date.now()) / 1000;
    if (Number.isFinite(seconds)) error.retryAfterMs = Math.max(0, seconds * 1000);
  }
  return error;
}

export type PingRefusal =
  | "missing-headers"
  | "bad-signature"
  | "timestamp-too-old"
  | "timestamp-too-new"
  | "not-a-ping"
  | "bad-authorization";

/** A ping that must not be trusted, with why. */
export class PingVerificationError extends Error {
  constructor(
    readonly reason: PingRefusal,
    message: string,
  ) {
    super(message);
    this.name = "PingVerificationError";
  }
}
