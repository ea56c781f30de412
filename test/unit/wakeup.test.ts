import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { WakeupBus } from "../../src/log/wakeup.js";

describe("WakeupBus", () => {
  it("wakes a waiter when the head passes its cursor, not before", async () => {
    const bus = new WakeupBus();
    let woken: boolean | undefined;
    const waiting = bus.waitBeyond(1, 5, 5000).then((value) => {
      woken = value;
    });
    bus.appended(1, 5);
    bus.appended(2, 9);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(woken, undefined);
    assert.equal(bus.waiting, 1);
    bus.appended(1, 6);
    await waiting;
    assert.equal(woken, true);
    assert.equal(bus.waiting, 0);
  });

  it("answers at once when an append was signalled before the wait began", async () => {
    const bus = new WakeupBus();
    bus.appended(1, 3);
    assert.equal(await bus.waitBeyond(1, 2, 5000), true);
  });

  it("times out, aborts and closes with false", async () => {
    const bus = new WakeupBus();
    assert.equal(await bus.waitBeyond(1, 0, 10), false);
    const controller = new AbortController();
    const aborted = bus.waitBeyond(1, 0, 5000, controller.signal);
    controller.abort();
    assert.equal(await aborted, false);
    const closing = bus.waitBeyond(1, 0, 5000);
    bus.close();
    assert.equal(await closing, false);
    assert.equal(bus.waiting, 0);
    assert.equal(await bus.waitBeyond(1, 0, 5000), false);
  });

  it("wakes waiters of a removed feed", async () => {
    const bus = new WakeupBus();
    const waiting = bus.waitBeyond(4, 10, 5000);
    bus.removed(4);
    assert.equal(await waiting, true);
  });
});
