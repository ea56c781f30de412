import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { call, cloudEvent, publish, publishBatch, putFeed, readPage } from "../support/http.js";
import { sampleValue, scrape } from "../support/metrics.js";
import { type Receiver, startReceiver } from "../support/receiver.js";
import { startTestService, type TestService, tokenFor } from "../support/service.js";
import { openStream } from "../support/sse.js";
import { eventually } from "../support/wait.js";

/** `/metrics`: Prometheus text that moves with the traffic it describes. */

describe("metrics", () => {
  let svc: TestService;
  let receiver: Receiver;
  before(async () => {
    svc = await startTestService({
      SEINTJE_CALLBACK_HTTP: "true",
      SEINTJE_CALLBACK_ALLOW: "127.0.0.1",
      SEINTJE_PING_RETRY: "0.2",
    });
    receiver = await startReceiver();
  });
  after(async () => {
    await svc.stop();
    await receiver.close();
  });

  it("is open by default and holds the contract's metrics and the default process metrics", async () => {
    const reply = await fetch(`${svc.url}/metrics`);
    assert.equal(reply.status, 200);
    assert.match(reply.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const text = await reply.text();
    for (const name of [
      "seintje_events_appended_total",
      "seintje_events_rejected_total",
      "seintje_streams_open",
      "seintje_longpolls_waiting",
      "seintje_pings_total",
      "seintje_ping_duration_seconds",
      "seintje_publish_duration_seconds",
      "seintje_pages_served_total",
      "seintje_subscriptions",
      "seintje_retention_deleted_events_total",
      "seintje_db_query_duration_seconds",
      "process_cpu_user_seconds_total",
      "process_resident_memory_bytes",
      "nodejs_eventloop_lag_seconds",
    ]) {
      assert.match(text, new RegExp(`^# TYPE ${name} `, "m"), `${name} is exposed`);
    }
  });

  it("passes promtool check metrics, the Prometheus project's own linter", async () => {
    const promtool = process.env.PROMTOOL_PATH ?? "/usr/bin/promtool";
    assert.ok(existsSync(promtool), `promtool is needed at ${promtool} (apt-get install prometheus)`);
    await publish(svc.url, "linted", cloudEvent()).catch(() => undefined);
    const text = await (await fetch(`${svc.url}/metrics`)).text();
    const checked = spawnSync(promtool, ["check", "metrics"], {
      input: text,
      encoding: "utf8",
      timeout: 30_000,
    });
    assert.equal(checked.status, 0, `promtool: ${checked.stdout}${checked.stderr}`);
  });

  it("counts appended events per feed, repeats not included, and rejected events per feed and reason", async () => {
    assert.equal((await putFeed(svc.url, "counted")).status, 201);
    const before = await scrape(svc.url);
    const events = [cloudEvent(), cloudEvent(), cloudEvent()];
    assert.equal((await publishBatch(svc.url, "counted", events)).status, 201);
    assert.equal((await publish(svc.url, "counted", events[0])).status, 200, "a repeat");
    const invalid = await publishBatch(svc.url, "counted", [cloudEvent(), cloudEvent({ type: "" })]);
    assert.equal(invalid.status, 400);
    assert.equal((await publish(svc.url, "counted", { ...events[1]!, data: { other: 1 } })).status, 409);
    assert.equal((await publish(svc.url, "no-such-feed", cloudEvent())).status, 404);

    const after = await scrape(svc.url);
    const delta = (name: string, labels: Record<string, string>) =>
      sampleValue(after, name, labels) - sampleValue(before, name, labels);
    assert.equal(delta("seintje_events_appended_total", { feed: "counted" }), 3);
    assert.equal(delta("seintje_events_rejected_total", { feed: "counted", reason: "validation" }), 1);
    assert.equal(delta("seintje_events_rejected_total", { feed: "counted", reason: "conflict" }), 1);
    assert.equal(
      delta("seintje_events_rejected_total", { feed: "", reason: "feed-not-found" }),
      1,
      "a feed that does not exist is not a label value",
    );
    assert.ok(!after.some((sample) => sample.labels.feed === "no-such-feed"));
    assert.equal(delta("seintje_publish_duration_seconds_count", {}), 2, "two requests acknowledged");
    assert.ok(delta("seintje_group_commit_requests_count", {}) >= 1);
    assert.equal(
      delta("seintje_http_requests_total", {
        method: "POST",
        route: "/v1/feeds/:feed/events",
        status: "201",
      }),
      1,
    );
    // SQLite has a writer and a reader connection; PostgreSQL one pool for both.
    const sqlite = svc.service.storage.dialect === "sqlite";
    const inserts = { role: sqlite ? "writer" : "pool", operation: "insert" };
    const selects = { role: sqlite ? "reader" : "pool", operation: "select" };
    assert.ok(delta("seintje_db_query_duration_seconds_count", inserts) >= 1);
    assert.ok(delta("seintje_db_query_duration_seconds_count", selects) >= 1);
  });

  it("counts pages and the events they served, long-polls apart, and shows long-polls while they wait", async () => {
    await putFeed(svc.url, "paged");
    await publishBatch(svc.url, "paged", [cloudEvent(), cloudEvent()]);
    const before = await scrape(svc.url);
    assert.equal((await readPage(svc.url, "paged", "after=0")).status, 200);
    const waiting = readPage(svc.url, "paged", "after=2&wait=10");
    const during = await eventually(async () => {
      const samples = await scrape(svc.url);
      return sampleValue(samples, "seintje_longpolls_waiting") === 1 ? samples : undefined;
    });
    assert.equal(sampleValue(during, "seintje_longpolls_waiting"), 1);
    await publish(svc.url, "paged", cloudEvent());
    assert.equal((await waiting).body.events.length, 1);
    const after = await scrape(svc.url);
    const delta = (name: string, labels: Record<string, string>) =>
      sampleValue(after, name, labels) - sampleValue(before, name, labels);
    assert.equal(delta("seintje_pages_served_total", { waited: "false" }), 1);
    assert.equal(delta("seintje_pages_served_total", { waited: "true" }), 1);
    assert.equal(delta("seintje_events_served_total", { channel: "pull" }), 3);
    assert.equal(sampleValue(after, "seintje_longpolls_waiting"), 0);
  });

  it("shows open streams and the events they carried", async () => {
    await putFeed(svc.url, "streamed");
    await publish(svc.url, "streamed", cloudEvent());
    const before = await scrape(svc.url);
    const token = await tokenFor(svc.dir, "read");
    const stream = await openStream(`${svc.url}/v1/feeds/streamed/events?after=0`, {
      authorization: `Bearer ${token}`,
    });
    try {
      await stream.waitFor((text) => text.includes("id: 1\n"));
      const during = await scrape(svc.url);
      assert.equal(sampleValue(during, "seintje_streams_open"), 1);
      assert.equal(
        sampleValue(during, "seintje_events_served_total", { channel: "stream" }) -
          sampleValue(before, "seintje_events_served_total", { channel: "stream" }),
        1,
      );
      // Live events are pushed by the hub, which counts them for all its streams at once.
      await publish(svc.url, "streamed", cloudEvent());
      await publish(svc.url, "streamed", cloudEvent());
      await stream.waitFor((text) => text.includes("id: 3\n"));
      assert.equal(
        sampleValue(await scrape(svc.url), "seintje_events_served_total", { channel: "stream" }) -
          sampleValue(before, "seintje_events_served_total", { channel: "stream" }),
        3,
      );
    } finally {
      stream.close();
    }
    await eventually(async () => sampleValue(await scrape(svc.url), "seintje_streams_open") === 0);
  });

  it("counts pings by outcome with their latency, and subscriptions by status", async () => {
    await putFeed(svc.url, "pinged");
    const created = await call(`${svc.url}/v1/subscriptions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ feed: "pinged", url: receiver.url }),
    });
    assert.equal(created.status, 201, created.text);
    const before = await scrape(svc.url);
    assert.equal(sampleValue(before, "seintje_subscriptions", { status: "active" }), 1);
    receiver.respond = (_ping, index) => ({ status: index === 0 ? 500 : 204 });
    await publish(svc.url, "pinged", cloudEvent());
    await receiver.waitForPings(2);
    await eventually(async () => {
      const after = await scrape(svc.url);
      return (
        sampleValue(after, "seintje_pings_total", { outcome: "failed" }) === 1 &&
        sampleValue(after, "seintje_pings_total", { outcome: "delivered" }) === 1 &&
        sampleValue(after, "seintje_ping_duration_seconds_count") === 2
      );
    }, 5000);
  });

  it("counts what retention removed, and forgets a deleted feed's series", async () => {
    await putFeed(svc.url, "pruned", { retention: { maxEvents: 2 } });
    await publishBatch(svc.url, "pruned", [
      cloudEvent(),
      cloudEvent(),
      cloudEvent(),
      cloudEvent(),
      cloudEvent(),
    ]);
    await svc.service.retention.pass();
    const pruned = await scrape(svc.url);
    assert.equal(sampleValue(pruned, "seintje_retention_deleted_events_total", { feed: "pruned" }), 3);
    assert.equal(sampleValue(pruned, "seintje_events_appended_total", { feed: "pruned" }), 5);

    assert.equal((await call(`${svc.url}/v1/feeds/pruned`, { method: "DELETE" })).status, 204);
    const deleted = await scrape(svc.url);
    assert.ok(!deleted.some((sample) => sample.labels.feed === "pruned"), "no series of a deleted feed");
  });
});

describe("access to metrics", () => {
  it("with SEINTJE_METRICS=token takes only a token with the admin grant on every feed", async () => {
    const svc = await startTestService({ SEINTJE_METRICS: "token" });
    try {
      const bare = await fetch(`${svc.url}/metrics`);
      assert.equal(bare.status, 401);
      assert.match(bare.headers.get("www-authenticate") ?? "", /^Bearer/);
      for (const scope of ["read", "admin:brk-*"]) {
        const token = await tokenFor(svc.dir, scope);
        const refused = await call(`${svc.url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
        assert.equal(refused.status, 403, scope);
        assert.equal(refused.headers.get("content-type"), "application/problem+json");
      }
      for (const scope of ["admin", "admin:*"]) {
        const token = await tokenFor(svc.dir, scope);
        const allowed = await call(`${svc.url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
        assert.equal(allowed.status, 200, scope);
        assert.match(allowed.text, /seintje_streams_open/);
      }
    } finally {
      await svc.stop();
    }
  });

  it("with SEINTJE_METRICS=off has no /metrics", async () => {
    const svc = await startTestService({ SEINTJE_METRICS: "off" });
    try {
      const reply = await call(`${svc.url}/metrics`);
      assert.equal(reply.status, 404);
      assert.equal(reply.headers.get("content-type"), "application/problem+json");
    } finally {
      await svc.stop();
    }
  });
});
