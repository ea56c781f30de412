import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { durationProblem, parseDuration, subtractDuration } from "../../src/log/duration.js";

describe("ISO 8601 durations", () => {
  it("parses the designators", () => {
    assert.deepEqual(parseDuration("P1Y2M3W4DT5H6M7.5S"), {
      years: 1,
      months: 2,
      weeks: 3,
      days: 4,
      hours: 5,
      minutes: 6,
      seconds: 7.5,
    });
    assert.equal(parseDuration("PT12H")?.hours, 12);
    assert.equal(parseDuration("P30D")?.days, 30);
  });

  it("refuses what is not a duration", () => {
    for (const text of ["", "P", "PT", "30D", "P1H", "PT1D", "P-1D", "P1.5D", "p1d", "P1DT"]) {
      assert.equal(parseDuration(text), undefined, text);
    }
  });

  it("subtracts calendar units on the calendar", () => {
    const now = Date.parse("2026-03-31T12:00:00Z");
    assert.equal(
      new Date(subtractDuration(now, parseDuration("P1D")!)!).toISOString(),
      "2026-03-30T12:00:00.000Z",
    );
    assert.equal(
      new Date(subtractDuration(now, parseDuration("PT90M")!)!).toISOString(),
      "2026-03-31T10:30:00.000Z",
    );
    assert.equal(
      new Date(subtractDuration(now, parseDuration("P1Y")!)!).toISOString(),
      "2025-03-31T12:00:00.000Z",
    );
  });

  it("gives no instant, never NaN, when the arithmetic leaves the range of dates", () => {
    const now = Date.parse("2026-11-30T12:00:00Z");
    for (const text of [
      "P300000Y",
      "P4000000M",
      "P99999999999999999999Y",
      "PT99999999999999H",
      "P9999999999W",
    ]) {
      assert.equal(subtractDuration(now, parseDuration(text)!), undefined, text);
      assert.match(durationProblem(text, now)!, /too long/, text);
    }
    // Long but inside the range: applied on the calendar.
    assert.equal(new Date(subtractDuration(now, parseDuration("P200000Y")!)!).getUTCFullYear(), -197974);
    assert.equal(durationProblem("P200000Y", now), undefined);
    assert.match(durationProblem("PT0S", now)!, /non-zero/);
  });
});
