/**
 * Two kinds of errors. An HttpProblem is expected, safe to show, and becomes an RFC 9457 problem document with a
 * stable `type`. Everything else is a bug or an outage: it is logged with its context and answered as a bare 500.
 */

import type { Pointed, Problem as ProblemDocument } from "./client/types.js";

/** The stable problem types. The URI names the kind of error; it does not change between releases. */
export const PROBLEM_TYPES = {
  badRequest: "bad-request",
  validation: "validation",
  invalidFeedName: "invalid-feed-name",
  invalidTypeName: "invalid-type-name",
  invalidCursor: "invalid-cursor",
  cursorAhead: "cursor-ahead",
  cursorGone: "cursor-gone",
  unauthorized: "unauthorized",
  forbidden: "forbidden",
  notFound: "not-found",
  feedNotFound: "feed-not-found",
  eventNotFound: "event-not-found",
  typeNotFound: "event-type-not-found",
  subscriptionNotFound: "subscription-not-found",
  callbackRefused: "callback-refused",
  methodNotAllowed: "method-not-allowed",
  notImplemented: "not-implemented",
  notAcceptable: "not-acceptable",
  unsupportedMediaType: "unsupported-media-type",
  conflict: "idempotency-conflict",
  tooLarge: "payload-too-large",
  rateLimited: "rate-limited",
  unavailable: "service-unavailable",
  storageFull: "storage-full",
  requestTimeout: "request-timeout",
  headersTooLarge: "request-headers-too-large",
  internal: "internal",
} as const;

export type ProblemKind = keyof typeof PROBLEM_TYPES;

export const PROBLEM_BASE = "urn:seintje:problem:";

export function problemType(kind: ProblemKind): string {
  return PROBLEM_BASE + PROBLEM_TYPES[kind];
}

/**
 * One entry of `errors[]` or `warnings[]` (a JSON Pointer into the request and what is wrong there), and the
 * problem document: the SDK's wire types, so that server and SDK read the same shape.
 */
export type { Pointed, ProblemDocument };

const TITLES: Record<ProblemKind, string> = {
  badRequest: "Bad request",
  validation: "The request is not valid",
  invalidFeedName: "Invalid feed name",
  invalidTypeName: "Invalid event type",
  invalidCursor: "Invalid cursor",
  cursorAhead: "Cursor is ahead of the feed",
  cursorGone: "Cursor is older than the oldest kept event",
  unauthorized: "Authentication required",
  forbidden: "Not allowed with this token",
  notFound: "Not found",
  feedNotFound: "Feed not found",
  eventNotFound: "Event not found",
  typeNotFound: "Event type not found",
  subscriptionNotFound: "Subscription not found",
  callbackRefused: "The callback URL was refused",
  methodNotAllowed: "Method not allowed",
  notImplemented: "Method not implemented",
  notAcceptable: "Not acceptable",
  unsupportedMediaType: "Unsupported media type",
  conflict: "Conflicts with an event already stored",
  tooLarge: "Payload too large",
  rateLimited: "Too many requests",
  unavailable: "Service unavailable",
  storageFull: "Storage is full",
  requestTimeout: "Request timeout",
  headersTooLarge: "Request headers too large",
  internal: "Internal server error",
};

export class HttpProblem extends Error {
  readonly type: string;
  readonly title: string;

  constructor(
    readonly status: number,
    readonly kind: ProblemKind,
    readonly detail?: string,
    /** Extra members of the problem document (`errors`, `oldest`, ...). */
    readonly extensions: Record<string, unknown> = {},
    /** Response headers that belong to this problem (`Allow`, `Retry-After`, ...). */
    readonly headers: Record<string, string> = {},
  ) {
    super(detail ?? TITLES[kind]);
    this.name = "HttpProblem";
    this.type = problemType(kind);
    this.title = TITLES[kind];
  }

  toJSON(): ProblemDocument {
    const document: ProblemDocument = { type: this.type, title: this.title, status: this.status };
    if (this.detail !== undefined) document.detail = this.detail;
    return { ...document, ...this.extensions };
  }
}

export function validationProblem(
  errors: Pointed[],
  detail = "The request has invalid attributes.",
): HttpProblem {
  return new HttpProblem(400, "validation", detail, { errors });
}

/**
 * Maps what a library threw to a problem when it describes the client's mistake (raw-body's size and encoding
 * errors carry `status` and `type`), and returns undefined for everything else: those are ours to log.
 */
export function coerceError(error: unknown): HttpProblem | undefined {
  if (error instanceof HttpProblem) return error;
  if (typeof error !== "object" || error === null) return undefined;
  const { type, status, expose } = error as { type?: unknown; status?: unknown; expose?: unknown };
  if (type === "entity.too.large")
    return new HttpProblem(413, "tooLarge", "The request body is larger than allowed.");
  if (type === "request.aborted") return new HttpProblem(400, "badRequest", "The request was aborted.");
  if (type === "encoding.unsupported" || type === "charset.unsupported") {
    return new HttpProblem(
      415,
      "unsupportedMediaType",
      "The request's content encoding or charset is not supported.",
    );
  }
  if (expose === true && typeof status === "number" && status >= 400 && status < 500) {
    return new HttpProblem(status, "badRequest", (error as Error).message);
  }
  return undefined;
}
