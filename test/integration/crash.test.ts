import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { after, describe, it } from "node:test";
import { call, cloudEvent, publish, putFeed, readAll, useToken } from "../support/http.js";
import { startServerProcess } from "../support/process.js";
import { tempDir, tokenFor } from "../support/service.js";

describe("crash safety", () => {
  const dir = tempDir("seintje-crash-");
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("keeps every acknowledged event, gap-free, when the process is killed with SIGKILL mid-load", async () => {
    const env = { SEINTJE_DATA_DIR: dir, SEINTJE_LOG_LEVEL: "info" };
    const first = await startServerProcess(env);
    useToken(first.url, await tokenFor(dir, "admin"));
    assert.equal((await putFeed(first.url, "crash")).status, 201);

    const acknowledged = new Set<string>();
    let stop = false;
    const publisher = async (p: number) => {
      for (let i = 0; !stop && i < 5000; i += 1) {
        const id = `p${p}-${i}`;
        try {
          const reply = await publish(first.url, "crash", cloudEvent({ id }));
          if (reply.status === 201) acknowledged.add(id);
        } catch {
          return; // the server is gone
        }
      }
    };
    const load = Promise.all(Array.from({ length: 10 }, (_, p) => publisher(p)));
    // Kill once a good number of events are in, while requests are in flight.
    for (let i = 0; i < 200 && acknowledged.size < 300; i += 1) await new Promise((r) => setTimeout(r, 25));
    first.child.kill("SIGKILL");
    stop = true;
    assert.equal(await first.exited, "SIGKILL");
    await load;
    assert.ok(acknowledged.size >= 300, `only ${acknowledged.size} events were acknowledged before the kill`);

    const second = await startServerProcess(env);
    useToken(second.url, await tokenFor(dir, "admin"));
    try {
      const events = await readAll(second.url, "crash");
      const ids = new Set(events.map((event) => event.id as string));
      const lost = [...acknowledged].filter((id) => !ids.has(id));
      assert.deepEqual(lost, [], "every acknowledged event survived");
      assert.deepEqual(
        events.map((event) => Number(event.sequence)),
        Array.from({ length: events.length }, (_, i) => i + 1),
        "sequences are gap-free",
      );
      assert.equal(ids.size, events.length, "no event twice");
      const feed = await call(`${second.url}/v1/feeds/crash`);
      assert.equal(feed.body.head, String(events.length));
      // The feed goes on where it stopped.
      const next = await publish(second.url, "crash", cloudEvent());
      assert.equal(next.body.events[0].sequence, String(events.length + 1));
    } finally {
      second.child.kill("SIGTERM");
      assert.equal(await second.exited, 0, "SIGTERM stops the service cleanly");
    }
  });
});
