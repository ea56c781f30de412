import assert from "node:assert/strict";
import { copyFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Webhook } from "standardwebhooks";
import { ConfigError } from "../../src/config.js";
import { look } from "../../src/db/subscriptions.js";
import { DIALECT, databaseEnv, dropDatabaseOf } from "../support/database.js";
import {
  call,
  cloudEvent,
  publish,
  publishBatch,
  putFeed,
  subscribe as subscribeTo,
} from "../support/http.js";
import { startServerProcess } from "../support/process.js";
import { type Receiver, startReceiver } from "../support/receiver.js";
import { startTestService, type TestService, tempDir, tokenFor } from "../support/service.js";
import { eventually, pause } from "../support/wait.js";

/** Webhook wake-up pings against real receivers on 127.0.0.1. */

const FAST = {
  SEINTJE_CALLBACK_HTTP: "true",
  SEINTJE_CALLBACK_ALLOW: "127.0.0.1",
  SEINTJE_PING_RETRY: "0.2",
  SEINTJE_PING_TIMEOUT: "2",
};

let feedCounter = 0;

async function newFeed(svc: TestService): Promise<string> {
  feedCounter += 1;
  const feed = `hooks-${feedCounter}`;
  assert.equal((await putFeed(svc.url, feed)).status, 201);
  return feed;
}

function subscribe(svc: TestService, body: Record<string, unknown>, headers: Record<string, string> = {}) {
  return subscribeTo(svc.url, body, headers);
}

function patch(svc: TestService, id: string, body: Record<string, unknown>) {
  return call(`${svc.url}/v1/subscriptions/${id}`, {
    method: "PATCH",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

async function publishMany(svc: TestService, feed: string, count: number, type?: string) {
  const events = Array.from({ length: count }, () => cloudEvent(type ? { type } : {}));
  for (let start = 0; start < events.length; start += 100) {
    const reply = await publishBatch(svc.url, feed, events.slice(start, start + 100));
    assert.equal(reply.status, 201, reply.text);
  }
  return events;
}

/**
 * Waits until the dispatcher has looked for matching events up to `head` for this subscription: its `scanned`
 * column, which it moves whether or not a ping follows. A "no ping" check made after this cannot pass only
 * because the dispatcher had not got there yet.
 */
async function dispatcherPassed(svc: TestService, id: string, head: number): Promise<void> {
  await eventually(
    async () => {
      const row = await svc.service.storage.reader("subscriptions").where({ id }).first("scanned");
      return Number(row?.scanned) >= head;
    },
    5000,
    `the dispatcher looked at ${id} up to ${head}`,
  );
}

async function subscription(svc: TestService, id: string) {
  const reply = await call(`${svc.url}/v1/subscriptions/${id}`);
  assert.equal(reply.status, 200, reply.text);
  return reply.body;
}

/**
 * A subscription of a new feed whose first ping its receiver answers 410, which disables it; the receiver answers
 * 204 to everything again once it is disabled.
 */
async function disabledByItsReceiver(svc: TestService, receiver: Receiver) {
  const feed = await newFeed(svc);
  const created = (await subscribe(svc, { feed, url: receiver.url })).body;
  receiver.respond = (ping) =>
    ping.event.data.subscription === created.id ? { status: 410 } : { status: 204 };
  await publish(svc.url, feed, cloudEvent());
  await eventually(
    async () => (await subscription(svc, created.id)).status === "disabled",
    10_000,
    "disabled",
  );
  receiver.respond = () => ({ status: 204 });
  return { feed, created };
}

describe("webhook subscriptions", () => {
  let svc: TestService;
  let receiver: Receiver;

  before(async () => {
    svc = await startTestService(FAST);
    receiver = await startReceiver();
  });

  /**
   * The first ping of subscription `id` among those that came after the receiver had `seen`: the receiver is
   * shared, and another test's subscription may be pinged at the same moment.
   */
  async function pingFor(id: string, seen: number) {
    const mine = () => receiver.pings.slice(seen).find((p) => p.event.data.subscription === id);
    await eventually(() => mine() !== undefined, 10_000, `a ping of ${id}`);
    return mine()!;
  }
  after(async () => {
    await svc.stop();
    await receiver.close();
  });

  it("registers after the abuse-protection handshake and shows the secret once", async () => {
    const feed = await newFeed(svc);
    await publishMany(svc, feed, 2);
    const handshakes = receiver.handshakes.length;
    const reply = await subscribe(svc, {
      feed,
      url: receiver.url,
      types: ["nl.example."],
      description: "zaken van gemeente X",
    });
    assert.equal(reply.status, 201, reply.text);
    assert.equal(receiver.handshakes.length, handshakes + 1);
    assert.equal(receiver.handshakes.at(-1)!["webhook-request-origin"], "127.0.0.1");
    const created = reply.body;
    assert.match(created.secret, /^whsec_[A-Za-z0-9+/]{43}=$/);
    assert.equal(reply.headers.get("location"), `${svc.url}/v1/subscriptions/${created.id}`);
    assert.deepEqual(
      { ...created, id: undefined, secret: undefined, createdAt: undefined },
      {
        id: undefined,
        secret: undefined,
        createdAt: undefined,
        feed,
        url: receiver.url,
        types: ["nl.example."],
        subject: null,
        description: "zaken van gemeente X",
        status: "active",
        disabledReason: null,
        acked: "2",
        head: "2",
        lastAttempt: null,
        failingSince: null,
        signature: "v1",
        publicKey: null,
        authorization: null,
      },
      "acked starts at the feed's head",
    );
    const shown = await subscription(svc, created.id);
    assert.equal(shown.secret, undefined, "the secret is shown only at creation");
    assert.equal(shown.acked, "2");
    const list = await call(`${svc.url}/v1/subscriptions`);
    assert.ok(list.body.subscriptions.some((entry: { id: string }) => entry.id === created.id));
    assert.equal(list.body.next, null);
    // No ping for events from before the subscription: its first ping announces only what came after.
    await publish(svc.url, feed, cloudEvent());
    const [first] = await eventually(() => {
      const mine = receiver.pings.filter((ping) => ping.event.data.subscription === created.id);
      return mine.length > 0 ? mine : undefined;
    });
    assert.equal(first!.event.data.after, "2");
    assert.deepEqual(
      first!.event.data.events.map((event: { sequence: string }) => event.sequence),
      ["3"],
    );
  });

  it("refuses a callback whose handshake fails, storing nothing", async () => {
    const feed = await newFeed(svc);
    const before = (await call(`${svc.url}/v1/subscriptions`)).body.subscriptions.length;
    const refusing = await startReceiver();
    try {
      for (const allow of [null, "someone-else.example"]) {
        refusing.allowOrigin = () => allow;
        const reply = await subscribe(svc, { feed, url: refusing.url });
        assert.equal(reply.status, 400, reply.text);
        assert.equal(reply.headers.get("content-type"), "application/problem+json");
        assert.equal(reply.body.type, "urn:seintje:problem:callback-refused");
        assert.equal(reply.body.errors[0].pointer, "/url");
        assert.match(reply.body.detail, /WebHook-Allowed-Origin/);
      }
      refusing.allowOrigin = (origin) => origin ?? null;
      assert.equal(
        (await subscribe(svc, { feed, url: refusing.url })).status,
        201,
        "the exact origin is accepted",
      );
    } finally {
      await refusing.close();
    }
    const gone = await subscribe(svc, { feed, url: "http://127.0.0.1:9/nothing-listens" });
    assert.equal(gone.status, 400);
    assert.equal(gone.body.type, "urn:seintje:problem:callback-refused");
    assert.equal((await call(`${svc.url}/v1/subscriptions`)).body.subscriptions.length, before + 1);
  });

  it("refuses bad bodies with pointers, unknown feeds with 404 and cursors ahead of the head", async () => {
    const feed = await newFeed(svc);
    const cases: Array<[unknown, string[]]> = [
      [{}, ["/feed", "/url"]],
      [{ feed, url: receiver.url, types: "nl." }, ["/types"]],
      [{ feed, url: receiver.url, types: ["ok", ""] }, ["/types/1"]],
      [{ feed, url: receiver.url, subject: 5 }, ["/subject"]],
      [{ feed, url: receiver.url, after: 3 }, ["/after"]],
      [{ feed, url: receiver.url, secret: "mine" }, ["/secret"]],
      [{ feed: "Not A Feed", url: receiver.url }, ["/feed"]],
      [{ feed, url: "not a url" }, ["/url"]],
      [{ feed, url: "ftp://127.0.0.1/x" }, ["/url"]],
      [{ feed, url: "http://user:pw@127.0.0.1/x" }, ["/url"]],
    ];
    for (const [body, pointers] of cases) {
      const reply = await subscribe(svc, body as Record<string, unknown>);
      assert.equal(reply.status, 400, JSON.stringify(body));
      assert.equal(reply.body.type, "urn:seintje:problem:validation");
      assert.deepEqual(
        reply.body.errors.map((error: { pointer: string }) => error.pointer),
        pointers,
        JSON.stringify(body),
      );
    }
    const notJson = await call(`${svc.url}/v1/subscriptions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{",
    });
    assert.equal(notJson.status, 400);
    const missing = await subscribe(svc, { feed: "no-such-feed", url: receiver.url });
    assert.equal(missing.status, 404);
    assert.equal(missing.body.type, "urn:seintje:problem:feed-not-found");
    const ahead = await subscribe(svc, { feed, url: receiver.url, after: "5" });
    assert.equal(ahead.status, 400);
    assert.equal(ahead.body.type, "urn:seintje:problem:cursor-ahead");
    const unknown = await call(`${svc.url}/v1/subscriptions/0190c0de-0000-7000-8000-000000000000`);
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.type, "urn:seintje:problem:subscription-not-found");
    assert.equal((await call(`${svc.url}/v1/subscriptions/not-an-id`)).status, 404);
  });

  it("pings with a signed, identifier-only CloudEvent and advances acked on a 2xx", async () => {
    const feed = await newFeed(svc);
    const created = (await subscribe(svc, { feed, url: receiver.url })).body;
    const seen = receiver.pings.length;
    const events = await publishMany(svc, feed, 3);
    const ping = await pingFor(created.id, seen);
    const headers = ping.headers as Record<string, string>;
    assert.match(headers["content-type"]!, /^application\/cloudevents\+json/);
    assert.equal(headers["webhook-id"], ping.event.id);
    assert.equal(headers["webhook-request-origin"], "127.0.0.1");
    assert.deepEqual(new Webhook(created.secret).verify(ping.body, headers), ping.event);
    const { data, ...envelope } = ping.event;
    assert.equal(envelope.specversion, "1.0");
    assert.equal(envelope.type, "nl.seintje.feed.updated");
    assert.equal(envelope.subject, feed);
    assert.equal(envelope.datacontenttype, "application/json");
    assert.match(envelope.source, /^urn:seintje:/);
    assert.ok(!Number.isNaN(Date.parse(envelope.time)));
    // The ping may have been sent after the first event already; the last one announces all three.
    await eventually(async () => (await subscription(svc, created.id)).acked === "3", 5000, "acked = 3");
    const last = receiver.pings.filter((p) => p.event.data.subscription === created.id).at(-1)!.event.data;
    assert.equal(last.head, "3");
    const all = receiver.pings.filter((p) => p.event.data.subscription === created.id);
    assert.equal(all[0]!.event.data.after, "0");
    assert.deepEqual(Object.keys(data).sort(), [
      "after",
      "events",
      "feed",
      "head",
      "subscription",
      "truncated",
      "url",
    ]);
    assert.equal(data.feed, feed);
    assert.equal(data.subscription, created.id);
    assert.equal(data.url, `${svc.url}/v1/feeds/${feed}/events?after=0`);
    assert.equal(data.truncated, false);
    for (const event of data.events) {
      assert.deepEqual(Object.keys(event).sort(), ["id", "sequence", "subject", "type"]);
    }
    assert.deepEqual(
      data.events.map((event: { id: string }) => event.id),
      events.slice(0, data.events.length).map((event) => event.id),
    );
    assert.doesNotMatch(ping.body, /"zaak"/, "no event data in a ping");
    const shown = await subscription(svc, created.id);
    assert.equal(shown.status, "active");
    assert.equal(shown.lastAttempt.statusCode, 204);
    assert.equal(shown.lastAttempt.test, false);
    // The announced URL is what a subscriber reads next.
    const page = await call(data.url);
    assert.equal(page.status, 200);
  });

  it("retries a failed ping with the same webhook-id", async () => {
    const feed = await newFeed(svc);
    const created = (await subscribe(svc, { feed, url: receiver.url })).body;
    const mine = () => receiver.pings.filter((p) => p.event.data.subscription === created.id);
    receiver.respond = (ping) =>
      ping.event.data.subscription === created.id && mine().length === 0 ? { status: 500 } : { status: 200 };
    await publish(svc.url, feed, cloudEvent());
    await eventually(() => mine().length >= 2, 5000, "two pings");
    receiver.respond = () => ({ status: 204 });
    const [first, second] = mine();
    assert.equal(first!.headers["webhook-id"], second!.headers["webhook-id"]);
    assert.equal(first!.body, second!.body, "the body never changes under its id");
    await eventually(async () => (await subscription(svc, created.id)).acked === "1", 5000, "acked");
    const attempts = (await call(`${svc.url}/v1/subscriptions/${created.id}/attempts`)).body;
    assert.deepEqual(
      attempts.attempts.map((attempt: { statusCode: number }) => attempt.statusCode),
      [200, 500],
      "newest first",
    );
    assert.equal(attempts.attempts[1].error, "HTTP 500");
    assert.equal(attempts.attempts[0].pingId, first!.headers["webhook-id"]);
    const page = (await call(`${svc.url}/v1/subscriptions/${created.id}/attempts?limit=1`)).body;
    assert.equal(page.attempts.length, 1);
    assert.equal(
      page.next,
      `${svc.url}/v1/subscriptions/${created.id}/attempts?before=${page.attempts[0].id}&limit=1`,
    );
    const rest = (await call(page.next)).body;
    assert.deepEqual(
      rest.attempts.map((a: { statusCode: number }) => a.statusCode),
      [500],
    );
    assert.equal((await call(`${svc.url}/v1/subscriptions/${created.id}/attempts?before=x`)).status, 400);
  });

  it("honours Retry-After on 503", async () => {
    const feed = await newFeed(svc);
    const created = (await subscribe(svc, { feed, url: receiver.url })).body;
    const mine = () => receiver.pings.filter((p) => p.event.data.subscription === created.id);
    receiver.respond = (ping) =>
      ping.event.data.subscription === created.id && mine().length === 0
        ? { status: 503, headers: { "Retry-After": "1" } }
        : { status: 204 };
    await publish(svc.url, feed, cloudEvent());
    // While the retry waits, the dispatcher's look knows when it is due (its timer is set from it).
    const stored = () =>
      svc.service.storage.reader("subscriptions").where({ id: created.id }).first("next_attempt_at");
    await eventually(async () => (await stored())?.next_attempt_at != null, 5000, "the retry scheduled");
    const retryAt = Number((await stored()).next_attempt_at);
    const lookedAt = Date.now();
    const seen = await look(svc.service.storage.reader, lookedAt);
    assert.ok(lookedAt < retryAt, "looked before the retry was due");
    assert.ok(seen.nextRetry !== undefined && seen.nextRetry <= retryAt, `next retry ${seen.nextRetry}`);
    await eventually(() => mine().length >= 2, 5000, "the retry");
    receiver.respond = () => ({ status: 204 });
    const [first, second] = mine();
    const waited = second!.at - first!.at;
    assert.ok(
      waited >= 950,
      `the retry came ${waited} ms later; Retry-After asked for 1 s (the schedule says 0.2 s)`,
    );
    const failing = (await call(`${svc.url}/v1/subscriptions/${created.id}/attempts`)).body.attempts.at(-1);
    assert.equal(failing.statusCode, 503);
  });

  it("announces newer events in a new ping when they arrive before the retry, never resending the old one", async () => {
    const feed = await newFeed(svc);
    const created = (await subscribe(svc, { feed, url: receiver.url })).body;
    const mine = () => receiver.pings.filter((p) => p.event.data.subscription === created.id);
    let published = false;
    receiver.respond = (ping) => {
      if (ping.event.data.subscription !== created.id) return { status: 204 };
      if (!published) {
        published = true;
        // Publish while the first ping is being answered with a failure.
        void publish(svc.url, feed, cloudEvent());
        return { status: 500, delayMs: 100 };
      }
      return { status: 204 };
    };
    await publish(svc.url, feed, cloudEvent());
    await eventually(async () => (await subscription(svc, created.id)).acked === "2", 5000, "acked = 2");
    receiver.respond = () => ({ status: 204 });
    const pings = mine();
    assert.equal(pings[0]!.event.data.head, "1");
    const ids = pings.map((p) => p.headers["webhook-id"]);
    const last = pings.at(-1)!;
    assert.equal(last.event.data.head, "2");
    assert.equal(last.event.data.after, "0");
    assert.notEqual(last.headers["webhook-id"], ids[0], "a new id for the newer head");
    assert.equal(ids.filter((id) => id === ids[0]).length, 1, "the superseded ping was never sent again");
  });

  it("acknowledges nothing with a ping whose filters changed while it was in flight", async () => {
    const feed = await newFeed(svc);
    const created = (await subscribe(svc, { feed, url: receiver.url })).body;
    let patched: Promise<unknown> | undefined;
    receiver.respond = (ping) => {
      if (ping.event.data.subscription !== created.id || patched) return { status: 204 };
      // Filters that exclude the announced event, while its ping waits for this answer.
      patched = patch(svc, created.id, { types: ["nl.example.other."] });
      return { status: 204, after: patched };
    };
    await publish(svc.url, feed, cloudEvent());
    await eventually(async () => patched !== undefined, 5000, "the ping arrived");
    assert.equal(((await patched) as { status: number }).status, 200);
    // The change made the dispatcher look again from acked; it does so once the old ping's lease is given back.
    await dispatcherPassed(svc, created.id, 1);
    const after = await subscription(svc, created.id);
    assert.equal(after.acked, "0", "the answer to the replaced ping acknowledged nothing");
    assert.equal(after.status, "active");
    const row = await svc.service.storage.reader("subscriptions").where({ id: created.id }).first();
    assert.equal(row.lease_owner, null);
    assert.equal(row.ping_id, null);
    assert.equal(receiver.pings.filter((p) => p.event.data.subscription === created.id).length, 1);
    receiver.respond = () => ({ status: 204 });
  });

  it("disables on 410 and, re-enabled, covers everything since acked", async () => {
    const { feed, created } = await disabledByItsReceiver(svc, receiver);
    const mine = () => receiver.pings.filter((p) => p.event.data.subscription === created.id);
    const disabled = await subscription(svc, created.id);
    assert.equal(disabled.acked, "0");
    assert.match(disabled.disabledReason, /410/);
    // A subscription made now takes the same appends: once it is pinged, the dispatcher has been past them.
    const control = (await subscribe(svc, { feed, url: receiver.url })).body;
    await publishMany(svc, feed, 2);
    await eventually(
      () => receiver.pings.some((p) => p.event.data.subscription === control.id && p.event.data.head === "3"),
      5000,
      "the control subscription's ping",
    );
    assert.equal(mine().length, 1, "a disabled subscription gets no pings");
    const enabled = await patch(svc, created.id, { status: "active" });
    assert.equal(enabled.status, 200, enabled.text);
    assert.equal(enabled.body.status, "active");
    await eventually(() => mine().length >= 2, 5000, "a ping after re-enabling");
    const data = mine()[1]!.event.data;
    assert.equal(data.after, "0");
    assert.equal(data.head, "3");
    assert.equal(data.events.length, 3);
    await eventually(async () => (await subscription(svc, created.id)).acked === "3", 5000, "acked = 3");
  });

  it("sends no ping for events its filters exclude", async () => {
    const feed = await newFeed(svc);
    const created = (
      await subscribe(svc, {
        feed,
        url: receiver.url,
        types: ["nl.example.vergunning."],
        subject: "perceel-7",
      })
    ).body;
    const mine = () => receiver.pings.filter((p) => p.event.data.subscription === created.id);
    await publishMany(svc, feed, 3, "nl.example.zaak.aangemaakt");
    await publish(
      svc.url,
      feed,
      cloudEvent({ type: "nl.example.vergunning.verleend", subject: "perceel-1" }),
    );
    await dispatcherPassed(svc, created.id, 4);
    assert.equal(mine().length, 0);
    const match = cloudEvent({ type: "nl.example.vergunning.verleend", subject: "perceel-7" });
    await publish(svc.url, feed, match);
    await publishMany(svc, feed, 2, "nl.example.zaak.aangemaakt");
    const [ping] = await eventually(() => (mine().length > 0 ? mine() : undefined), 5000, "a ping");
    assert.equal(ping!.event.data.head, "5");
    assert.deepEqual(ping!.event.data.events, [
      { sequence: "5", id: match.id, type: "nl.example.vergunning.verleend", subject: "perceel-7" },
    ]);
    assert.equal(
      ping!.event.data.url,
      `${svc.url}/v1/feeds/${feed}/events?after=0&type=nl.example.vergunning.&subject=perceel-7`,
    );
    await dispatcherPassed(svc, created.id, 7);
    assert.equal(mine().length, 1, "the non-matching events after it cause no ping");
  });

  it("coalesces: a slow receiver gets far fewer pings than events, the last announcing the head", async () => {
    const feed = await newFeed(svc);
    const created = (await subscribe(svc, { feed, url: receiver.url })).body;
    const mine = () => receiver.pings.filter((p) => p.event.data.subscription === created.id);
    receiver.respond = () => ({ status: 204, delayMs: 300 });
    for (let i = 0; i < 50; i += 1) {
      await publishMany(svc, feed, 10);
      await pause(10);
    }
    await eventually(
      async () => (await subscription(svc, created.id)).acked === "500",
      15_000,
      "acked = 500",
    );
    receiver.respond = () => ({ status: 204 });
    const pings = mine();
    assert.ok(pings.length < 50, `${pings.length} pings for 500 events`);
    assert.equal(pings.at(-1)!.event.data.head, "500");
    for (let i = 1; i < pings.length; i += 1) {
      assert.equal(
        pings[i]!.event.data.after,
        pings[i - 1]!.event.data.head,
        "each ping starts where the last ended",
      );
    }
    const truncated = pings.find((p) => Number(p.event.data.head) - Number(p.event.data.after) > 100);
    if (truncated) {
      assert.equal(truncated.event.data.truncated, true);
      assert.equal(truncated.event.data.events.length, 100);
    }
  });

  it("does not follow redirects", async () => {
    const feed = await newFeed(svc);
    const target = await startReceiver();
    try {
      const created = (await subscribe(svc, { feed, url: receiver.url })).body;
      receiver.respond = (ping) =>
        ping.event.data.subscription === created.id
          ? { status: 307, headers: { Location: target.url } }
          : { status: 204 };
      await publish(svc.url, feed, cloudEvent());
      const shown = await eventually(
        async () => {
          const body = await subscription(svc, created.id);
          return body.lastAttempt ? body : undefined;
        },
        5000,
        "an attempt",
      );
      receiver.respond = () => ({ status: 204 });
      assert.equal(shown.lastAttempt.statusCode, 307);
      assert.match(shown.lastAttempt.error, /redirects are not followed/);
      assert.equal(shown.status, "failing");
      assert.ok(shown.failingSince);
      assert.equal(target.pings.length, 0);
    } finally {
      await target.close();
    }
  });

  it("sends a test ping on request, acknowledging nothing", async () => {
    const feed = await newFeed(svc);
    await publishMany(svc, feed, 1);
    const created = (await subscribe(svc, { feed, url: receiver.url, after: "0" })).body;
    await eventually(async () => (await subscription(svc, created.id)).acked === "1", 5000, "acked = 1");
    const test = await call(`${svc.url}/v1/subscriptions/${created.id}/test`, { method: "POST" });
    assert.equal(test.status, 200, test.text);
    assert.equal(test.body.test, true);
    assert.equal(test.body.statusCode, 204);
    const ping = receiver.pings.find((p) => p.headers["webhook-id"] === test.body.pingId)!;
    assert.equal(ping.event.data.test, true);
    assert.equal(ping.event.data.after, "1");
    assert.deepEqual(
      new Webhook(created.secret).verify(ping.body, ping.headers as Record<string, string>),
      ping.event,
    );
    assert.equal((await subscription(svc, created.id)).acked, "1");
  });

  it("rotates the secret, signing with both for a while", async () => {
    const feed = await newFeed(svc);
    const created = (await subscribe(svc, { feed, url: receiver.url })).body;
    const rotated = await call(`${svc.url}/v1/subscriptions/${created.id}/rotate-secret`, { method: "POST" });
    assert.equal(rotated.status, 200);
    assert.match(rotated.body.secret, /^whsec_/);
    assert.notEqual(rotated.body.secret, created.secret);
    const seen = receiver.pings.length;
    await publish(svc.url, feed, cloudEvent());
    const ping = await pingFor(created.id, seen);
    const headers = ping.headers as Record<string, string>;
    assert.equal(headers["webhook-signature"]!.split(" ").length, 2);
    new Webhook(rotated.body.secret).verify(ping.body, headers);
    new Webhook(created.secret).verify(ping.body, headers);
  });

  it("changes the URL (after a new handshake), filters and description, and deletes", async () => {
    const feed = await newFeed(svc);
    const other = await startReceiver("/other");
    try {
      const created = (await subscribe(svc, { feed, url: receiver.url })).body;
      const changed = await patch(svc, created.id, {
        url: other.url,
        types: ["nl."],
        subject: null,
        description: "x",
      });
      assert.equal(changed.status, 200, changed.text);
      assert.equal(other.handshakes.length, 1);
      assert.deepEqual(
        [changed.body.url, changed.body.types, changed.body.description],
        [other.url, ["nl."], "x"],
      );
      const bad = await patch(svc, created.id, { status: "paused", feed: "x" });
      assert.equal(bad.status, 400);
      assert.deepEqual(
        bad.body.errors.map((e: { pointer: string }) => e.pointer),
        ["/feed", "/status"],
      );
      await publish(svc.url, feed, cloudEvent());
      await other.waitForPings(1);
      const deleted = await call(`${svc.url}/v1/subscriptions/${created.id}`, { method: "DELETE" });
      assert.equal(deleted.status, 204);
      assert.equal((await call(`${svc.url}/v1/subscriptions/${created.id}`)).status, 404);
      const control = (await subscribe(svc, { feed, url: receiver.url })).body;
      await publish(svc.url, feed, cloudEvent());
      await eventually(
        () => receiver.pings.some((p) => p.event.data.subscription === control.id),
        5000,
        "the control subscription's ping: the dispatcher has been past the append",
      );
      assert.equal(other.pings.length, 1, "no ping after deletion");
    } finally {
      await other.close();
    }
  });

  it("shows a caller only its own subscriptions, and checks the subscribe grant on the feed", async () => {
    const feed = await newFeed(svc);
    const alice = await tokenFor(svc.dir, `subscribe:${feed} read:${feed}`, { subject: "alice" });
    const bob = await tokenFor(svc.dir, "subscribe", { subject: "bob" });
    const reader = await tokenFor(svc.dir, `read:${feed}`, { subject: "carol" });
    const as = (token: string) => ({ authorization: `Bearer ${token}` });
    const forbidden = await subscribe(svc, { feed, url: receiver.url }, as(reader));
    assert.equal(forbidden.status, 403);
    const elsewhere = await subscribe(svc, { feed: "zaken", url: receiver.url }, as(alice));
    assert.equal(elsewhere.status, 403, "alice may subscribe to her feed only");
    const created = await subscribe(svc, { feed, url: receiver.url }, as(alice));
    assert.equal(created.status, 201);
    const id = created.body.id;
    assert.equal((await call(`${svc.url}/v1/subscriptions/${id}`, { headers: as(alice) })).status, 200);
    assert.equal((await call(`${svc.url}/v1/subscriptions/${id}`, { headers: as(bob) })).status, 404);
    const bobs = await call(`${svc.url}/v1/subscriptions`, { headers: as(bob) });
    assert.deepEqual(bobs.body.subscriptions, []);
    const alices = await call(`${svc.url}/v1/subscriptions`, { headers: as(alice) });
    assert.deepEqual(
      alices.body.subscriptions.map((s: { id: string }) => s.id),
      [id],
    );
    const deleted = await call(`${svc.url}/v1/subscriptions/${id}`, { method: "DELETE", headers: as(bob) });
    assert.equal(deleted.status, 404);
    assert.equal((await call(`${svc.url}/v1/subscriptions`, { headers: {} })).status, 200, "admin sees all");
    assert.equal((await call(`${svc.url}/v1/subscriptions`, { headers: { authorization: "" } })).status, 401);
  });

  it("pages the list with next", async () => {
    const all = (await call(`${svc.url}/v1/subscriptions?limit=1000`)).body.subscriptions;
    assert.ok(all.length >= 3);
    const first = (await call(`${svc.url}/v1/subscriptions?limit=2`)).body;
    assert.equal(first.subscriptions.length, 2);
    assert.ok(first.next);
    const second = (await call(first.next)).body;
    assert.deepEqual(
      [...first.subscriptions, ...second.subscriptions].map((s: { id: string }) => s.id),
      all.slice(0, 4).map((s: { id: string }) => s.id),
    );
    assert.equal((await call(`${svc.url}/v1/subscriptions?limit=0`)).status, 400);
  });
});

describe("the callback address guard", () => {
  let svc: TestService;
  let feed: string;

  before(async () => {
    svc = await startTestService({ SEINTJE_CALLBACK_HTTP: "true" });
    feed = await newFeed(svc);
  });
  after(() => svc.stop());

  it("refuses internal addresses, literal or resolved, without contacting them", async () => {
    const receiver = await startReceiver();
    try {
      const port = new URL(receiver.url).port;
      for (const host of [
        "127.0.0.1",
        "10.0.0.1",
        "169.254.169.254",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "localhost",
        "0.0.0.0",
      ]) {
        const reply = await subscribe(svc, { feed, url: `http://${host}:${port}/hook` });
        assert.equal(reply.status, 400, host);
        assert.equal(reply.body.type, "urn:seintje:problem:callback-refused", host);
        assert.match(reply.body.detail, /internal address/, host);
      }
      assert.equal(receiver.handshakes.length, 0, "the receiver was never contacted");
    } finally {
      await receiver.close();
    }
  });

  it("refuses plain http unless SEINTJE_CALLBACK_HTTP allows it", async () => {
    const strict = await startTestService({});
    try {
      const name = await newFeed(strict);
      const reply = await subscribe(strict, { feed: name, url: "http://93.184.215.14/hook" });
      assert.equal(reply.status, 400);
      assert.match(reply.body.errors[0].detail, /https/);
    } finally {
      await strict.stop();
    }
  });

  it("checks again at every delivery, on the addresses the name resolves to then", async () => {
    const receiver = await startReceiver();
    const dir = tempDir();
    const open = await startTestService({ ...FAST, SEINTJE_CALLBACK_ALLOW: "127.0.0.1,::1" }, { dir });
    let literal: string;
    let named: string;
    let name: string;
    try {
      name = await newFeed(open);
      literal = (await subscribe(open, { feed: name, url: receiver.url })).body.id;
      const byName = receiver.url.replace("127.0.0.1", "localhost");
      named = (await subscribe(open, { feed: name, url: byName })).body.id;
      assert.ok(named, "registered through the allow-list");
    } finally {
      await open.service.stop(1000);
    }
    // The same data served without the allow-list: the stored callbacks are now refused at delivery.
    const closed = await startTestService(
      { SEINTJE_CALLBACK_HTTP: "true", SEINTJE_PING_RETRY: "0.2" },
      { dir },
    );
    try {
      await publish(closed.url, name, cloudEvent());
      for (const id of [literal, named]) {
        const shown = await eventually(
          async () => {
            const body = await subscription(closed, id);
            return body.lastAttempt ? body : undefined;
          },
          5000,
          "an attempt",
        );
        assert.equal(shown.lastAttempt.statusCode, null);
        assert.match(shown.lastAttempt.error, /internal address/);
        assert.equal(shown.status, "failing");
      }
      assert.equal(receiver.pings.length, 0);
    } finally {
      await closed.stop();
      rmSync(dir, { recursive: true, force: true });
      await receiver.close();
    }
  });
});

describe("pings across a crash", () => {
  it("sends the ping after a restart when the service was killed before it succeeded", async () => {
    const dir = tempDir("seintje-hooks-crash-");
    const receiver = await startReceiver();
    // On PostgreSQL a restarted node cannot tell its old self's lease from a live node's: the ping goes out
    // again when the lease lapses, the ping timeout plus 5 s after it was claimed.
    const timeout = DIALECT === "postgres" ? 3 : 30;
    const env = {
      SEINTJE_DATA_DIR: dir,
      SEINTJE_LOG_LEVEL: "info",
      ...FAST,
      SEINTJE_PING_TIMEOUT: String(timeout),
    };
    try {
      const first = await startServerProcess(env);
      const admin = { authorization: `Bearer ${await tokenFor(dir, "admin")}` };
      const json = { ...admin, "content-type": "application/json" };
      assert.equal(
        (await call(`${first.url}/v1/feeds/crash`, { method: "PUT", headers: admin })).status,
        201,
      );
      const created = await call(`${first.url}/v1/subscriptions`, {
        method: "POST",
        headers: json,
        body: JSON.stringify({ feed: "crash", url: receiver.url }),
      });
      assert.equal(created.status, 201, created.text);
      // The receiver holds the ping; the service dies while it waits for the answer.
      receiver.respond = () => ({ status: 204, delayMs: 60_000 });
      const events = Array.from({ length: 3 }, () => cloudEvent());
      const published = await call(`${first.url}/v1/feeds/crash/events`, {
        method: "POST",
        headers: { ...admin, "content-type": "application/cloudevents-batch+json" },
        body: JSON.stringify(events),
      });
      assert.equal(published.status, 201);
      const [held] = await receiver.waitForPings(1);
      first.child.kill("SIGKILL");
      assert.equal(await first.exited, "SIGKILL");

      receiver.respond = () => ({ status: 204 });
      const second = await startServerProcess(env);
      try {
        const [, again] = await receiver.waitForPings(2, 10_000 + timeout * 1000);
        assert.equal(again!.headers["webhook-id"], held!.headers["webhook-id"], "the same ping, resent");
        assert.equal(again!.body, held!.body);
        assert.equal(again!.event.data.head, "3");
        await eventually(
          async () => {
            const shown = await call(`${second.url}/v1/subscriptions/${created.body.id}`, { headers: admin });
            return shown.body.acked === "3";
          },
          5000,
          "acked = 3 after the restart",
        );
      } finally {
        second.child.kill("SIGTERM");
        await second.exited;
      }
    } finally {
      await receiver.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("pings and the service's lifecycle", () => {
  it("hands a ping in flight back at shutdown, uncounted, and sends it again on the next start", async () => {
    const dir = tempDir();
    const receiver = await startReceiver();
    try {
      const first = await startTestService({ ...FAST, SEINTJE_PING_TIMEOUT: "30" }, { dir });
      const feed = await newFeed(first);
      const created = (await subscribe(first, { feed, url: receiver.url })).body;
      receiver.respond = () => ({ status: 204, delayMs: 30_000 });
      await publish(first.url, feed, cloudEvent());
      const [held] = await receiver.waitForPings(1);
      const started = Date.now();
      await first.service.stop(200);
      assert.ok(Date.now() - started < 5000, "stopping waited for the grace period, not for the receiver");

      receiver.respond = () => ({ status: 204 });
      const second = await startTestService(FAST, { dir });
      try {
        const [, again] = await receiver.waitForPings(2);
        assert.equal(again!.headers["webhook-id"], held!.headers["webhook-id"]);
        await eventually(async () => (await subscription(second, created.id)).acked === "1", 5000, "acked");
        const attempts = (await call(`${second.url}/v1/subscriptions/${created.id}/attempts`)).body.attempts;
        assert.deepEqual(
          attempts.map((attempt: { statusCode: number }) => attempt.statusCode),
          [204],
          "the handed-back ping was not counted as an attempt",
        );
      } finally {
        await second.stop();
      }
    } finally {
      await receiver.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("prunes attempts older than SEINTJE_PING_ATTEMPTS_KEEP", async () => {
    const dir = tempDir();
    const receiver = await startReceiver();
    try {
      const env = { ...FAST, SEINTJE_PING_ATTEMPTS_KEEP: "PT1S" };
      const first = await startTestService(env, { dir });
      const feed = await newFeed(first);
      const created = (await subscribe(first, { feed, url: receiver.url })).body;
      const attempts = `/v1/subscriptions/${created.id}/attempts`;
      await call(`${first.url}/v1/subscriptions/${created.id}/test`, { method: "POST" });
      assert.equal((await call(`${first.url}${attempts}`)).body.attempts.length, 1);
      await first.service.stop(1000);
      await pause(1100);
      // The first look of a new start prunes.
      const second = await startTestService(env, { dir });
      try {
        await eventually(
          async () => (await call(`${second.url}${attempts}`)).body.attempts.length === 0,
          5000,
          "the old attempt pruned",
        );
      } finally {
        await second.stop();
      }
    } finally {
      await receiver.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the cap on pings in flight", () => {
  it("never has more than SEINTJE_PING_CONCURRENCY pings in flight, and still pings every subscription", async () => {
    const receiver = await startReceiver();
    const svc = await startTestService({ ...FAST, SEINTJE_PING_CONCURRENCY: "3" });
    try {
      const feed = await newFeed(svc);
      const ids: string[] = [];
      for (let i = 0; i < 12; i += 1) ids.push((await subscribe(svc, { feed, url: receiver.url })).body.id);
      receiver.respond = () => ({ status: 204, delayMs: 100 });
      await publish(svc.url, feed, cloudEvent());
      await receiver.waitForPings(12);
      assert.equal(receiver.maxConcurrent, 3);
      assert.deepEqual(new Set(receiver.pings.map((ping) => ping.event.data.subscription)), new Set(ids));
    } finally {
      await svc.stop();
      await receiver.close();
    }
  });

  it("sends a ping that waited for a slot once the slot is free, without waiting for a sweep or a lease to lapse", async () => {
    const receiver = await startReceiver();
    // No sweep during the test, and a lease lapses 7 s after its ping (timeout plus margin): a ping that arrives
    // within 5 s of the slot's release was sent because the slot was freed.
    const svc = await startTestService(
      { ...FAST, SEINTJE_PING_CONCURRENCY: "1" },
      { dispatcherSweepMs: 600_000 },
    );
    try {
      const feed = await newFeed(svc);
      const ids: string[] = [];
      for (let i = 0; i < 3; i += 1) ids.push((await subscribe(svc, { feed, url: receiver.url })).body.id);
      const answers: Array<() => void> = [];
      receiver.respond = () => ({
        status: 204,
        after: new Promise<void>((resolve) => answers.push(resolve)),
      });
      await publish(svc.url, feed, cloudEvent());
      for (let count = 1; count <= 3; count += 1) {
        await receiver.waitForPings(count, 5_000);
        assert.equal(receiver.pings.length, count, "one ping at a time");
        answers[count - 1]!();
      }
      assert.equal(receiver.maxConcurrent, 1);
      assert.deepEqual(new Set(receiver.pings.map((ping) => ping.event.data.subscription)), new Set(ids));
    } finally {
      await svc.stop();
      await receiver.close();
    }
  });
});

describe("many pings in flight at once", () => {
  it("sends 30 at a time without a warning from Node that listeners leak", async () => {
    const warnings: Error[] = [];
    const warned = (warning: Error) => warnings.push(warning);
    process.on("warning", warned);
    const receiver = await startReceiver();
    const svc = await startTestService(FAST);
    try {
      const feed = await newFeed(svc);
      for (let i = 0; i < 30; i += 1) await subscribe(svc, { feed, url: receiver.url });
      let allArrived!: () => void;
      const arrived = new Promise<void>((resolve) => {
        allArrived = resolve;
      });
      receiver.respond = () => ({ status: 204, after: arrived });
      await publish(svc.url, feed, cloudEvent());
      await receiver.waitForPings(30);
      assert.equal(receiver.maxConcurrent, 30, "all 30 were in flight together");
      allArrived();
      // Warnings are emitted on the next tick after the listener that crossed the limit was added.
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(
        warnings.map((warning) => `${warning.name}: ${warning.message}`),
        [],
      );
    } finally {
      process.off("warning", warned);
      await svc.stop();
      await receiver.close();
    }
  });
});

describe("the key that seals webhook secrets", () => {
  it("must be the same for every process on one database: another key refuses to start", async () => {
    const dir = tempDir();
    const first = await startTestService(FAST, { dir });
    const other = tempDir();
    try {
      const name = await newFeed(first);
      const receiver = await startReceiver();
      try {
        assert.equal((await subscribe(first, { feed: name, url: receiver.url })).status, 201);
      } finally {
        await receiver.close();
      }
      await first.service.stop(1000);
      // The same database, but a data dir with a fresh key (a second node set up without copying the key).
      const database =
        DIALECT === "postgres"
          ? await databaseEnv(dir)
          : { DATABASE_URL: `sqlite:${join(dir, "seintje.db")}` };
      await assert.rejects(
        startTestService({ ...FAST, ...database }, { dir: other }),
        (error: unknown) =>
          error instanceof ConfigError &&
          error.variable === "SEINTJE_DATA_DIR" &&
          error.message.includes(join(other, "webhook-secrets.key")),
      );
      // With the key copied over, it starts.
      copyFileSync(join(dir, "webhook-secrets.key"), join(other, "webhook-secrets.key"));
      const second = await startTestService({ ...FAST, ...database }, { dir: other });
      await second.service.stop(1000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      rmSync(other, { recursive: true, force: true });
      await dropDatabaseOf(dir);
      await dropDatabaseOf(other);
    }
  });
});

/**
 * The dispatcher looks for due pings after appends only to feeds that a subscription which is not disabled follows
 * (and once a sweep otherwise). This service's sweep is ten minutes, so every ping here was sent because a signal
 * made the dispatcher look: a subscription made or re-enabled must count at once, not at the next sweep.
 */
describe("pings when the dispatcher looks only on signals", () => {
  let svc: TestService;
  let receiver: Receiver;

  before(async () => {
    svc = await startTestService(FAST, { dispatcherSweepMs: 600_000 });
    receiver = await startReceiver();
  });
  after(async () => {
    await svc.stop();
    await receiver.close();
  });

  const pingsOf = (id: string) => receiver.pings.filter((p) => p.event.data.subscription === id);

  async function pinged(id: string, head: string, what: string) {
    await eventually(() => pingsOf(id).some((p) => p.event.data.head === head), 10_000, what);
  }

  it("pings a subscription made after the dispatcher read which feeds are followed", async () => {
    const first = await newFeed(svc);
    const earlier = (await subscribe(svc, { feed: first, url: receiver.url })).body;
    await publish(svc.url, first, cloudEvent());
    // This ping needed a look after the subscription was made, so the followed feeds were read since.
    await pinged(earlier.id, "1", "the earlier subscription's ping");
    const feed = await newFeed(svc);
    await publish(svc.url, feed, cloudEvent());
    const created = (await subscribe(svc, { feed, url: receiver.url })).body;
    await publish(svc.url, feed, cloudEvent());
    await pinged(created.id, "2", "a ping of the subscription made last");
  });

  it("pings a re-enabled subscription on the next append, though its feed was read as followed by none", async () => {
    const { feed, created } = await disabledByItsReceiver(svc, receiver);
    // Another subscription made and pinged: the followed feeds were read while this one was disabled.
    const other = await newFeed(svc);
    const control = (await subscribe(svc, { feed: other, url: receiver.url })).body;
    await publish(svc.url, other, cloudEvent());
    await pinged(control.id, "1", "the control subscription's ping");
    assert.equal(pingsOf(created.id).length, 1, "a disabled subscription gets no pings");
    const enabled = await patch(svc, created.id, { status: "active" });
    assert.equal(enabled.status, 200, enabled.text);
    await eventually(() => pingsOf(created.id).length >= 2, 10_000, "the ping of what it missed");
    await publish(svc.url, feed, cloudEvent());
    await pinged(created.id, "2", "a ping of the append after re-enabling");
  });
});
