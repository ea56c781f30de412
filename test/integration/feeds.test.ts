import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { MIGRATIONS } from "../../migrations/index.js";
import { call, cloudEvent, publish, putFeed, readPage } from "../support/http.js";
import { startTestService, type TestService } from "../support/service.js";

describe("feeds", () => {
  let svc: TestService;
  before(async () => {
    svc = await startTestService();
  });
  after(() => svc.stop());

  it("creates a feed with 201, then replaces its settings with 200", async () => {
    const created = await putFeed(svc.url, "brk-a", {
      description: "Kadaster",
      retention: { maxAge: "P30D" },
    });
    assert.equal(created.status, 201);
    assert.equal(created.headers.get("location"), `${svc.url}/v1/feeds/brk-a`);
    assert.equal(created.headers.get("api-version"), "1.1.0");
    assert.deepEqual(
      { ...created.body, createdAt: undefined },
      {
        name: "brk-a",
        description: "Kadaster",
        head: "0",
        oldest: null,
        retention: { maxAge: "P30D", maxEvents: null },
        typePolicy: "open",
        public: false,
        createdAt: undefined,
      },
    );
    assert.ok(!Number.isNaN(Date.parse(created.body.createdAt)));

    const replaced = await putFeed(svc.url, "brk-a", { retention: { maxEvents: 500 } });
    assert.equal(replaced.status, 200);
    assert.equal(replaced.body.description, null, "an absent field means none");
    assert.deepEqual(replaced.body.retention, { maxAge: null, maxEvents: 500 });
    assert.equal(replaced.body.createdAt, created.body.createdAt);

    const read = await call(`${svc.url}/v1/feeds/brk-a`);
    assert.equal(read.status, 200);
    assert.deepEqual(read.body, replaced.body);
  });

  it("accepts an empty body as no settings", async () => {
    const reply = await call(`${svc.url}/v1/feeds/empty-body`, { method: "PUT" });
    assert.equal(reply.status, 201);
    assert.equal(reply.body.description, null);
  });

  it("shows head and oldest as events arrive", async () => {
    await putFeed(svc.url, "counted");
    for (let i = 0; i < 3; i += 1)
      assert.equal((await publish(svc.url, "counted", cloudEvent())).status, 201);
    const feed = await call(`${svc.url}/v1/feeds/counted`);
    assert.equal(feed.body.head, "3");
    assert.equal(feed.body.oldest, "1");
  });

  it("lists feeds by name", async () => {
    await putFeed(svc.url, "zzz-last");
    const reply = await call(`${svc.url}/v1/feeds`);
    assert.equal(reply.status, 200);
    const names = reply.body.feeds.map((feed: { name: string }) => feed.name);
    assert.deepEqual(names, [...names].sort());
    assert.ok(names.includes("brk-a") && names.includes("zzz-last"));
  });

  it("refuses invalid names with 400 on every feed path", async () => {
    for (const name of ["Upper", "-dash-first", "a".repeat(64), "has%20space", "ünï"]) {
      const encoded = encodeURIComponent(name);
      for (const [method, path] of [
        ["PUT", `/v1/feeds/${encoded}`],
        ["GET", `/v1/feeds/${encoded}`],
        ["DELETE", `/v1/feeds/${encoded}`],
        ["GET", `/v1/feeds/${encoded}/events`],
        ["POST", `/v1/feeds/${encoded}/events`],
      ] as const) {
        const reply = await call(`${svc.url}${path}`, { method });
        assert.equal(reply.status, 400, `${method} ${path}`);
        assert.equal(reply.headers.get("content-type"), "application/problem+json");
        assert.equal(reply.body.type, "urn:seintje:problem:invalid-feed-name");
      }
    }
    assert.equal((await putFeed(svc.url, "a".repeat(63))).status, 201);
    assert.equal((await putFeed(svc.url, "0.a_b-c")).status, 201);
  });

  it("refuses bad settings with errors that point at them, and stores nothing", async () => {
    const cases: Array<[unknown, string[]]> = [
      [{ retention: { maxAge: "30 days" } }, ["/retention/maxAge"]],
      [{ retention: { maxAge: "PT0S" } }, ["/retention/maxAge"]],
      [{ retention: { maxEvents: 0 } }, ["/retention/maxEvents"]],
      [{ retention: { maxEvents: 1.5 } }, ["/retention/maxEvents"]],
      [{ retention: "P1D" }, ["/retention"]],
      [{ description: 42, colour: "red" }, ["/colour", "/description"]],
      [[], [""]],
    ];
    for (const [body, pointers] of cases) {
      const reply = await putFeed(svc.url, "bad-settings", body);
      assert.equal(reply.status, 400, JSON.stringify(body));
      assert.equal(reply.body.type, "urn:seintje:problem:validation");
      assert.deepEqual(reply.body.errors.map((error: { pointer: string }) => error.pointer).sort(), pointers);
    }
    const broken = await call(`${svc.url}/v1/feeds/bad-settings`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: "{not json",
    });
    assert.equal(broken.status, 400);
    const wrongType = await call(`${svc.url}/v1/feeds/bad-settings`, {
      method: "PUT",
      headers: { "content-type": "text/plain" },
      body: "hello",
    });
    assert.equal(wrongType.status, 415);
    assert.equal((await call(`${svc.url}/v1/feeds/bad-settings`)).status, 404);
  });

  it("answers 404 for a feed that does not exist", async () => {
    for (const [method, path] of [
      ["GET", "/v1/feeds/nope"],
      ["DELETE", "/v1/feeds/nope"],
      ["GET", "/v1/feeds/nope/events"],
      ["GET", "/v1/feeds/nope/events/1"],
    ] as const) {
      const reply = await call(`${svc.url}${path}`, { method });
      assert.equal(reply.status, 404, `${method} ${path}`);
      assert.equal(reply.body.type, "urn:seintje:problem:feed-not-found");
    }
    const published = await publish(svc.url, "nope", cloudEvent());
    assert.equal(published.status, 404);
  });

  it("deletes a feed with its events; created again, it starts at sequence 1", async () => {
    await putFeed(svc.url, "short-lived");
    await publish(svc.url, "short-lived", cloudEvent());
    await publish(svc.url, "short-lived", cloudEvent());
    const deleted = await call(`${svc.url}/v1/feeds/short-lived`, { method: "DELETE" });
    assert.equal(deleted.status, 204);
    assert.equal(deleted.text, "");
    assert.equal((await call(`${svc.url}/v1/feeds/short-lived`)).status, 404);
    assert.equal((await call(`${svc.url}/v1/feeds/short-lived`, { method: "DELETE" })).status, 404);

    await putFeed(svc.url, "short-lived");
    const again = await publish(svc.url, "short-lived", cloudEvent());
    assert.equal(again.body.events[0].sequence, "1");
    const page = await readPage(svc.url, "short-lived");
    assert.equal(page.body.events.length, 1);
  });

  it("answers unknown paths and methods with problem documents and API-Version", async () => {
    const missing = await call(`${svc.url}/v1/unknown`);
    assert.equal(missing.status, 404);
    assert.equal(missing.headers.get("content-type"), "application/problem+json");
    assert.equal(missing.headers.get("api-version"), "1.1.0");
    assert.deepEqual(Object.keys(missing.body).sort(), ["detail", "status", "title", "type"]);

    const wrongMethod = await call(`${svc.url}/v1/feeds/brk-a`, { method: "PATCH" });
    assert.equal(wrongMethod.status, 405);
    assert.match(wrongMethod.headers.get("allow") ?? "", /PUT/);
    assert.equal(wrongMethod.headers.get("content-type"), "application/problem+json");
    assert.equal(wrongMethod.body.type, "urn:seintje:problem:method-not-allowed");

    // A method nothing here knows (RFC 9110 §15.6.2), not one that is known but not allowed on the resource.
    const unknownMethod = await call(`${svc.url}/v1/feeds/brk-a`, { method: "PROPFIND" });
    assert.equal(unknownMethod.status, 501);
    assert.equal(unknownMethod.headers.get("content-type"), "application/problem+json");
    assert.equal(unknownMethod.body.type, "urn:seintje:problem:not-implemented");
    assert.equal(unknownMethod.body.title, "Method not implemented");
  });

  it("reports liveness and readiness", async () => {
    const health = await call(`${svc.url}/healthz`);
    assert.equal(health.status, 200);
    assert.equal(health.headers.get("api-version"), "1.1.0");
    const ready = await call(`${svc.url}/readyz`);
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.body, { status: "ready" });
  });
});

describe("readiness with an outdated schema", () => {
  it("answers 503 while migrations are pending", async () => {
    const svc = await startTestService({}, { migrate: false });
    try {
      const ready = await call(`${svc.url}/readyz`);
      assert.equal(ready.status, 503);
      assert.equal(ready.headers.get("content-type"), "application/problem+json");
      assert.deepEqual(
        ready.body.pending,
        MIGRATIONS.map(([name]) => name),
      );
      assert.ok(ready.body.pending.length >= 3);
      assert.equal((await call(`${svc.url}/healthz`)).status, 200);
    } finally {
      await svc.stop();
    }
  });
});

describe("readiness without a database", () => {
  it("answers 503 when the database does not answer, while /healthz still answers", async () => {
    const svc = await startTestService();
    try {
      assert.equal((await call(`${svc.url}/readyz`)).status, 200);
      // The database goes away under the running service (as when its server stops).
      await svc.service.storage.close();
      const ready = await call(`${svc.url}/readyz`);
      assert.equal(ready.status, 503);
      assert.equal(ready.headers.get("content-type"), "application/problem+json");
      assert.match(ready.body.detail, /database does not answer/);
      assert.equal((await call(`${svc.url}/healthz`)).status, 200);
    } finally {
      await svc.stop();
    }
  });
});
