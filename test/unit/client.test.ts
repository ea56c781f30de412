import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { errorFor } from "../../src/client/errors.js";
import {
  CursorAheadError,
  CursorGoneError,
  isTransient,
  retryDelay,
  SeintjeError,
} from "../../src/client/index.js";

const problem = (kind: string, status: number, extra: Record<string, unknown> = {}) => ({
  type: `urn:seintje:problem:${kind}`,
  title: kind,
  status,
  ...extra,
});

describe("the SDK's errors", () => {
  it("types a refusal by its problem", () => {
    const gone = errorFor(410, problem("cursor-gone", 410, { oldest: "12", head: "40" }));
    assert.ok(gone instanceof CursorGoneError);
    assert.equal(gone.oldest, "12");
    assert.equal(gone.head, "40");
    assert.equal(
      (errorFor(410, problem("cursor-gone", 410, { oldest: null })) as CursorGoneError).oldest,
      null,
    );
    const ahead = errorFor(400, problem("cursor-ahead", 400, { head: "3" }));
    assert.ok(ahead instanceof CursorAheadError);
    assert.equal(ahead.head, "3");
    const other = errorFor(404, problem("feed-not-found", 404, { detail: "There is no feed named x." }));
    assert.equal(other.constructor, SeintjeError);
    assert.equal(other.kind, "feed-not-found");
    assert.equal(other.message, "There is no feed named x.");
    assert.equal(errorFor(502, undefined).message, "HTTP 502");
  });

  it("reads Retry-After as seconds or as a date", () => {
    assert.equal(errorFor(429, undefined, "3").retryAfterMs, 3000);
    const date = new Date(Date.now() + 10_000).toUTCString();
    const fromDate = errorFor(503, undefined, date).retryAfterMs!;
    assert.ok(fromDate > 8000 && fromDate <= 10_000, String(fromDate));
    assert.equal(errorFor(503, undefined, "soon").retryAfterMs, undefined);
  });

  it("retries the network, the server's trouble and limits, never a refusal or an abort", () => {
    assert.equal(isTransient(new TypeError("fetch failed")), true);
    for (const status of [500, 502, 503, 408, 429])
      assert.equal(isTransient(new SeintjeError(status, undefined)), true);
    for (const status of [400, 401, 403, 404, 409, 410]) {
      assert.equal(isTransient(new SeintjeError(status, undefined)), false);
    }
    assert.equal(isTransient(new DOMException("aborted", "AbortError")), false);
    assert.equal(isTransient(new DOMException("timed out", "TimeoutError")), true);
  });

  it("backs off exponentially with jitter, capped, and follows Retry-After", () => {
    for (let attempt = 1; attempt <= 10; attempt += 1) {
      const base = Math.min(100 * 2 ** (attempt - 1), 1000);
      const delay = retryDelay(new TypeError("x"), attempt, 100, 1000);
      assert.ok(delay >= base * 0.8 && delay <= base, `attempt ${attempt}: ${delay}`);
    }
    assert.equal(retryDelay(errorFor(429, undefined, "7"), 1), 7000);
    assert.equal(retryDelay(errorFor(503, undefined, "3600"), 1), 60_000, "at most a minute");
  });
});
