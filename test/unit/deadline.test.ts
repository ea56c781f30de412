import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { describe, it } from "node:test";
import { deadline } from "../../src/client/deadline.js";
import { eventually } from "../support/wait.js";

describe("deadline", () => {
  it("aborts with a TimeoutError when its time runs out", async () => {
    const limit = deadline(20);
    await eventually(() => limit.signal.aborted, 2000, "the time ran out");
    assert.equal(limit.timedOut(), true);
    assert.equal((limit.signal.reason as Error).name, "TimeoutError");
  });

  it("aborts with its parent's reason, which is not a timeout", () => {
    const parent = new AbortController();
    const limit = deadline(60_000, parent.signal);
    parent.abort(new Error("stopping"));
    assert.equal(limit.signal.aborted, true);
    assert.equal(limit.timedOut(), false);
    assert.equal((limit.signal.reason as Error).message, "stopping");
    limit.clear();
  });

  it("is aborted at once under a parent that already is", () => {
    const parent = new AbortController();
    parent.abort(new Error("gone"));
    const limit = deadline(60_000, parent.signal);
    assert.equal(limit.signal.aborted, true);
    limit.clear();
  });

  it("leaves nothing on its parent once cleared, and no longer aborts", async () => {
    const parent = new AbortController();
    const limits = Array.from({ length: 100 }, () => deadline(20, parent.signal));
    assert.equal(getEventListeners(parent.signal, "abort").length, 100);
    for (const limit of limits) limit.clear();
    assert.equal(getEventListeners(parent.signal, "abort").length, 0);
    // A deadline not cleared, of the same length, shows the moment has passed.
    const witness = deadline(20);
    await eventually(() => witness.signal.aborted, 2000, "the witness timed out");
    parent.abort();
    assert.ok(limits.every((limit) => !limit.signal.aborted && !limit.timedOut()));
  });
});
