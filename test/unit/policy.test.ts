import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseDuration } from "../../src/log/duration.js";
import { decide, parseRetryAfter, type RetryPolicy, scheduledDelay } from "../../src/webhooks/policy.js";

const policy: RetryPolicy = {
  scheduleMs: [5000, 30_000, 120_000],
  disableAfter: parseDuration("P3D")!,
};
const NOW = Date.parse("2026-11-23T12:00:00Z");
const fresh = { failures: 0, failingSince: null };
const middle = () => 0.5;

describe("the ping retry policy", () => {
  it("acknowledges any 2xx and nothing else", () => {
    for (const status of [200, 201, 202, 204, 299]) {
      assert.deepEqual(decide(policy, { statusCode: status }, fresh, NOW), { kind: "acknowledged" });
    }
    for (const status of [100, 301, 302, 400, 404, 500]) {
      assert.equal(decide(policy, { statusCode: status }, fresh, NOW, middle).kind, "retry");
    }
    assert.equal(decide(policy, { statusCode: null }, fresh, NOW, middle).kind, "retry");
  });

  it("follows the schedule, repeating its last delay", () => {
    const delays = [0, 1, 2, 3, 7].map((failures) => {
      const decision = decide(policy, { statusCode: 500 }, { failures, failingSince: NOW }, NOW, middle);
      assert.equal(decision.kind, "retry");
      return decision.kind === "retry" ? [decision.failures, decision.at - NOW] : [];
    });
    assert.deepEqual(delays, [
      [1, 5000],
      [2, 30_000],
      [3, 120_000],
      [4, 120_000],
      [8, 120_000],
    ]);
  });

  it("adds at most 20 % jitter either way", () => {
    assert.equal(
      scheduledDelay(policy, 1, () => 0),
      4000,
    );
    assert.equal(
      scheduledDelay(policy, 1, () => 0.999999),
      6000,
    );
    assert.equal(
      scheduledDelay(policy, 2, () => 0.25),
      27_000,
    );
  });

  it("starts a failure streak at the first failure and keeps its start", () => {
    const first = decide(policy, { statusCode: null }, fresh, NOW, middle);
    assert.deepEqual(first, { kind: "retry", at: NOW + 5000, failures: 1, failingSince: NOW });
    const later = decide(
      policy,
      { statusCode: 503 },
      { failures: 1, failingSince: NOW },
      NOW + 60_000,
      middle,
    );
    assert.equal(later.kind === "retry" && later.failingSince, NOW);
  });

  it("honours Retry-After as asked, never sooner, up to the disable window", () => {
    const at = (status: number, retryAfter: string) => {
      const decision = decide(policy, { statusCode: status, retryAfter }, fresh, NOW, middle);
      return decision.kind === "retry" ? decision.at - NOW : undefined;
    };
    assert.equal(at(429, "7"), 7000);
    assert.equal(at(503, "60"), 60_000);
    assert.equal(at(503, new Date(NOW + 90_000).toUTCString()), 90_000);
    assert.equal(at(429, "0"), 1000, "at least one second");
    assert.equal(at(429, "3600"), 3_600_000, "longer than the schedule's longest delay, as asked");
    assert.equal(at(429, String(4 * 86_400)), 3 * 86_400_000, "at most the disable window (P3D)");
    assert.equal(at(429, "soon"), 5000, "a malformed header falls back to the schedule");
    assert.equal(at(500, "7"), 7000, "whatever the status that asks");
    assert.equal(decide(policy, { statusCode: 500 }, fresh, NOW, middle).kind, "retry");
  });

  it("disables at once on 410", () => {
    const decision = decide(policy, { statusCode: 410 }, fresh, NOW);
    assert.equal(decision.kind, "disable");
  });

  it("disables a subscription failing for longer than the window", () => {
    const since = NOW - 3 * 86_400_000;
    const decision = decide(policy, { statusCode: 500 }, { failures: 40, failingSince: since }, NOW, middle);
    assert.equal(decision.kind, "disable");
    assert.equal(decision.kind === "disable" && decision.failingSince, since);
    const inside = decide(
      policy,
      { statusCode: 500 },
      { failures: 40, failingSince: since + 1 },
      NOW,
      middle,
    );
    assert.equal(inside.kind, "retry");
  });

  it("reads Retry-After as seconds or an HTTP date", () => {
    assert.equal(parseRetryAfter("120", NOW), 120_000);
    assert.equal(parseRetryAfter("Mon, 23 Nov 2026 12:00:30 GMT", NOW), 30_000);
    assert.equal(parseRetryAfter("Mon, 23 Nov 2026 11:00:00 GMT", NOW), 0);
    assert.equal(parseRetryAfter("-5", NOW), undefined);
    assert.equal(parseRetryAfter("1.5", NOW), undefined);
    assert.equal(parseRetryAfter(undefined, NOW), undefined);
  });
});
