import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { cloudEvent, publish, putFeed, readAll } from "../support/http.js";
import { startTestService, type TestService } from "../support/service.js";

const PUBLISHERS = 20;
const EVENTS_EACH = 200;

describe("concurrent publishers", () => {
  let svc: TestService;
  before(async () => {
    svc = await startTestService();
    await putFeed(svc.url, "busy");
  });
  after(() => svc.stop());

  it(`${PUBLISHERS} publishers x ${EVENTS_EACH} events: sequences exactly 1..N, each once, each publisher's order kept`, async () => {
    const publisher = async (p: number) => {
      for (let i = 0; i < EVENTS_EACH; i += 1) {
        const reply = await publish(
          svc.url,
          "busy",
          cloudEvent({ id: `p${p}-e${i}`, source: `urn:nld:test:publisher-${p}` }),
        );
        assert.equal(reply.status, 201, reply.text);
      }
    };
    await Promise.all(Array.from({ length: PUBLISHERS }, (_, p) => publisher(p)));

    const events = await readAll(svc.url, "busy");
    const total = PUBLISHERS * EVENTS_EACH;
    assert.equal(events.length, total);
    assert.deepEqual(
      events.map((event) => Number(event.sequence)),
      Array.from({ length: total }, (_, i) => i + 1),
    );
    assert.equal(
      new Set(events.map((event) => `${event.source} ${event.id}`)).size,
      total,
      "every event once",
    );
    for (let p = 0; p < PUBLISHERS; p += 1) {
      const own = events
        .filter((event) => event.source === `urn:nld:test:publisher-${p}`)
        .map((event) => event.id);
      assert.deepEqual(
        own,
        Array.from({ length: EVENTS_EACH }, (_, i) => `p${p}-e${i}`),
        `publisher ${p} in order`,
      );
    }
  });
});
