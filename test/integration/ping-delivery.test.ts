import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Ajv2020 } from "ajv/dist/2020.js";
import formats from "ajv-formats";
import { call, cloudEvent, publish, putFeed, subscribe } from "../support/http.js";
import { type Receiver, startReceiver } from "../support/receiver.js";
import { startTestService, type TestService } from "../support/service.js";
import { eventually } from "../support/wait.js";

/**
 * Delivery control (contract 1.1, "Ping authentication and delivery control"): a retry on request, Retry-After
 * honoured as asked, and the ping's dataschema, served and matching what pings carry.
 */

const HOOKS = {
  SEINTJE_CALLBACK_HTTP: "true",
  SEINTJE_CALLBACK_ALLOW: "127.0.0.1",
  SEINTJE_PING_TIMEOUT: "2",
};

describe("ping delivery control", () => {
  let svc: TestService;
  let receiver: Receiver;
  let feeds = 0;
  before(async () => {
    // A one-second schedule whose later steps are an hour: a retry that comes soon came because it was asked for.
    svc = await startTestService({ ...HOOKS, SEINTJE_PING_RETRY: "1,3600" });
    receiver = await startReceiver();
  });
  after(async () => {
    await svc.stop();
    await receiver.close();
  });

  async function subscribed() {
    feeds += 1;
    const feed = `delivery-${feeds}`;
    await putFeed(svc.url, feed);
    const created = await subscribe(svc.url, { feed, url: receiver.url });
    assert.equal(created.status, 201, created.text);
    const id = created.body.id as string;
    const pings = () =>
      receiver.pings.filter((ping) => ping.event.data.subscription === id && !ping.event.data.test);
    return { feed, id, pings };
  }

  const retry = (id: string) => call(`${svc.url}/v1/subscriptions/${id}/retry`, { method: "POST" });

  it("waits as long as Retry-After asks: 3 s under a one-second schedule", async () => {
    const { feed, id, pings } = await subscribed();
    receiver.respond = (ping) =>
      ping.event.data.subscription === id && pings().length === 0
        ? { status: 429, headers: { "Retry-After": "3" } }
        : { status: 204 };
    await publish(svc.url, feed, cloudEvent());
    await eventually(() => pings().length >= 2, 10_000, "the retry");
    const [first, second] = pings();
    const waited = second!.at - first!.at;
    assert.ok(
      waited >= 2950,
      `the retry came ${waited} ms later; Retry-After asked for 3 s, the schedule 1 s`,
    );
    assert.ok(waited < 8000, `the retry came ${waited} ms later`);
  });

  it("delivers the pending ping at once on /retry, skipping an hour's backoff, and answers the attempt", async () => {
    const { feed, id, pings } = await subscribed();
    receiver.respond = (ping) => (ping.event.data.subscription === id ? { status: 500 } : { status: 204 });
    await publish(svc.url, feed, cloudEvent());
    await eventually(() => pings().length >= 2, 10_000, "the first retry, one second later");
    // Its failure is recorded (and its lease given back) shortly after it is answered.
    await eventually(
      async () => (await call(`${svc.url}/v1/subscriptions/${id}/attempts`)).body.attempts.length >= 2,
      5000,
      "the first retry's outcome recorded",
    );
    // The next step of the schedule is an hour away.
    const waiting = (await call(`${svc.url}/v1/subscriptions/${id}`)).body;
    assert.equal(waiting.status, "failing");
    assert.equal(waiting.acked, "0");

    receiver.respond = () => ({ status: 204 });
    const before = pings().length;
    const answered = await retry(id);
    assert.equal(answered.status, 200, answered.text);
    assert.equal(answered.body.statusCode, 204);
    assert.equal(answered.body.test, false);
    assert.equal(pings().length, before + 1, "the ping went out before the answer");
    assert.equal(
      pings().at(-1)!.headers["webhook-id"],
      pings()[0]!.headers["webhook-id"],
      "the same ping, retried",
    );
    const now = (await call(`${svc.url}/v1/subscriptions/${id}`)).body;
    assert.equal(now.status, "active");
    assert.equal(now.acked, "1", "the acknowledgement counts");
    assert.equal(now.lastAttempt.id, answered.body.id);

    const nothing = await retry(id);
    assert.equal(nothing.status, 409, "nothing lies beyond acked");
    assert.equal(nothing.headers.get("content-type"), "application/problem+json");
  });

  it("announces newer events on /retry, refuses a disabled subscription, and counts a failed retry", async () => {
    const { feed, id, pings } = await subscribed();
    receiver.respond = () => ({ status: 204 });
    await publish(svc.url, feed, cloudEvent());
    await eventually(
      async () => (await call(`${svc.url}/v1/subscriptions/${id}`)).body.acked === "1",
      5000,
      "acked",
    );
    await call(`${svc.url}/v1/subscriptions/${id}`, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ status: "disabled" }),
    });
    await publish(svc.url, feed, cloudEvent());
    assert.equal((await retry(id)).status, 409, "disabled");
    await call(`${svc.url}/v1/subscriptions/${id}`, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ status: "active" }),
    });
    receiver.respond = (ping) => (ping.event.data.subscription === id ? { status: 503 } : { status: 204 });
    // Re-enabling makes the ping due now; a retry at the same moment either delivers it or finds it in flight.
    const answered = await retry(id);
    if (answered.status === 200) {
      assert.equal(answered.body.statusCode, 503);
      const failing = (await call(`${svc.url}/v1/subscriptions/${id}`)).body;
      assert.equal(failing.status, "failing");
      assert.equal(failing.acked, "1");
    } else {
      assert.equal(answered.status, 409, answered.text);
    }
    await eventually(() => pings().some((ping) => ping.event.data.head === "2"), 5000, "a ping announcing 2");
    assert.equal((await retry("01900000-0000-7000-8000-000000000000")).status, 404);
  });

  it("names the JSON Schema of the ping's data in dataschema, served without a token, which every ping meets", async () => {
    const { feed, pings } = await subscribed();
    receiver.respond = () => ({ status: 204 });
    await publish(svc.url, feed, cloudEvent());
    await eventually(() => pings().length >= 1, 5000, "a ping");
    const ping = pings()[0]!.event;
    assert.equal(ping.dataschema, `${svc.url}/v1/schemas/feed-updated/v1.json`);
    const served = await call(ping.dataschema as string, { headers: { authorization: "" } });
    assert.equal(served.status, 200);
    assert.equal(served.body.$id, ping.dataschema);
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    formats.default(ajv);
    const validate = ajv.compile(served.body);
    assert.ok(validate(ping.data), ajv.errorsText(validate.errors));
    assert.equal(validate({ ...ping.data, head: 7 }), false, "the schema has teeth");
  });
});
