import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Webhook } from "standardwebhooks";
import {
  type CloudEventInput,
  CursorGoneError,
  type FeedEvent,
  FileCursorStore,
  PingVerificationError,
  SeintjeClient,
  SeintjeError,
  verifyPing,
} from "../../src/client/index.js";
import { cloudEvent as anyEvent } from "../support/http.js";
import { type ServerProcess, startServerProcess } from "../support/process.js";
import { startReceiver } from "../support/receiver.js";
import { startTestService, type TestService, tempDir, tokenFor } from "../support/service.js";
import { eventually } from "../support/wait.js";

/** The SDK against a real service: publishing, following across restarts, pings, cursors. */

const cloudEvent = (overrides: Record<string, unknown> = {}) => anyEvent(overrides) as CloudEventInput;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Collects what a follower yields until `count` events arrived or `timeoutMs` passed. */
function collect(iterator: AsyncGenerator<FeedEvent>, count: number, stop: AbortController) {
  const events: FeedEvent[] = [];
  const done = (async () => {
    for await (const event of iterator) {
      events.push(event);
      if (events.length >= count) break;
    }
  })();
  return { events, done: done.finally(() => stop.abort()) };
}

for (const mode of ["poll", "stream"] as const) {
  describe(`follow in ${mode} mode`, () => {
    it("survives the service restarting mid-stream and yields every event exactly once, in order", async () => {
      const dir = tempDir();
      const port = await freePort();
      const env = { SEINTJE_DATA_DIR: dir, SEINTJE_PORT: String(port), SEINTJE_SHUTDOWN_TIMEOUT: "1" };
      let server: ServerProcess = await startServerProcess(env);
      try {
        const admin = new SeintjeClient({ url: server.url, token: await tokenFor(dir, "admin") });
        await admin.feeds.put("restarted");
        const published: string[] = [];
        const publishSome = async (count: number) => {
          const batch = Array.from({ length: count }, () => cloudEvent());
          await admin.publish("restarted", batch);
          published.push(...batch.map((event) => event.id as string));
        };
        await publishSome(30);

        const reader = new SeintjeClient({ url: server.url, token: await tokenFor(dir, "read:restarted") });
        const stop = new AbortController();
        const retries: unknown[] = [];
        const following = collect(
          reader.follow("restarted", {
            mode,
            wait: 5,
            limit: 7,
            signal: stop.signal,
            backoff: { initialMs: 50, maxMs: 200 },
            onRetry: (error) => retries.push(error),
          }),
          60,
          stop,
        );
        await eventually(() => following.events.length === 30, 10_000, "the first 30 events");
        server.child.kill("SIGTERM");
        assert.equal(await server.exited, 0);
        server = await startServerProcess(env);
        for (let i = 0; i < 6; i += 1) await publishSome(5);
        await Promise.race([
          following.done,
          new Promise((_, reject) => setTimeout(() => reject(new Error("timed out")), 20_000)),
        ]);
        assert.deepEqual(
          following.events.map((event) => event.sequence),
          Array.from({ length: 60 }, (_, index) => String(index + 1)),
        );
        assert.deepEqual(
          following.events.map((event) => event.id),
          published,
        );
        assert.ok(retries.length >= 1, "it had to recover from the restart");
      } finally {
        server.child.kill("SIGTERM");
        await server.exited;
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}

describe("the SDK", () => {
  let svc: TestService;
  let client: SeintjeClient;
  before(async () => {
    svc = await startTestService({ SEINTJE_CALLBACK_HTTP: "true", SEINTJE_CALLBACK_ALLOW: "127.0.0.1" });
    client = new SeintjeClient({ url: svc.url, token: () => tokenFor(svc.dir, "admin", { subject: "sdk" }) });
  });
  after(() => svc.stop());

  it("publishes one event or a batch, filling in id and specversion, and knows a repeat", async () => {
    await client.feeds.put("published", { description: "SDK" });
    const one = await client.publish("published", {
      source: "urn:nld:oin:1:systeem:sdk",
      type: "nl.example.a",
    });
    assert.equal(one.repeat, false);
    assert.equal(one.events[0]!.sequence, "1");
    const batch = await client.publish("published", [
      { id: "b1", source: "urn:nld:oin:1:systeem:sdk", type: "nl.example.b" },
      { id: "b2", source: "urn:nld:oin:1:systeem:sdk", type: "nl.example.b", data: { n: 2 } },
    ]);
    assert.deepEqual(
      batch.events.map((event) => event.sequence),
      ["2", "3"],
    );
    const again = await client.publish("published", {
      id: "b1",
      source: "urn:nld:oin:1:systeem:sdk",
      type: "nl.example.b",
    });
    assert.equal(again.repeat, true);
    assert.equal(again.events[0]!.sequence, "2");
    const page = await client.readPage("published", { after: 1, types: ["nl.example.b"] });
    assert.deepEqual(
      page.events.map((event) => event.id),
      ["b1", "b2"],
    );
    assert.equal((await client.readEvent("published", 3)).id, "b2");
    const refused = await client.publish("published", { source: "x", type: "" }).catch((error) => error);
    assert.ok(refused instanceof SeintjeError);
    assert.equal(refused.status, 400);
    assert.equal(refused.kind, "validation");
    assert.ok(refused.problem?.errors?.some((error) => error.pointer === "/type"));
  });

  it("manages feeds and subscriptions", async () => {
    const receiver = await startReceiver();
    try {
      const feed = await client.feeds.put("managed", { retention: { maxEvents: 10 } });
      assert.deepEqual(feed.retention, { maxAge: null, maxEvents: 10 });
      assert.ok((await client.feeds.list()).some((item) => item.name === "managed"));
      const created = await client.subscriptions.create({
        feed: "managed",
        url: receiver.url,
        types: ["nl."],
      });
      assert.match(created.secret, /^whsec_/);
      assert.equal((await client.subscriptions.get(created.id)).types[0], "nl.");
      const changed = await client.subscriptions.update(created.id, { description: "changed" });
      assert.equal(changed.description, "changed");
      const listed = [];
      for await (const subscription of client.subscriptions.all()) listed.push(subscription.id);
      assert.ok(listed.includes(created.id));
      const attempt = await client.subscriptions.test(created.id);
      assert.equal(attempt.test, true);
      assert.equal(attempt.statusCode, 204);
      assert.equal((await client.subscriptions.attempts(created.id)).attempts[0]!.id, attempt.id);
      const secret = await client.subscriptions.rotateSecret(created.id);
      assert.notEqual(secret, created.secret);
      await client.subscriptions.delete(created.id);
      const gone = await client.subscriptions.get(created.id).catch((error) => error);
      assert.equal((gone as SeintjeError).status, 404);
      await client.feeds.delete("managed");
      assert.equal(((await client.feeds.get("managed").catch((error) => error)) as SeintjeError).status, 404);
    } finally {
      await receiver.close();
    }
  });

  it("manages a feed's event types, and publishing meets their schemas", async () => {
    await client.feeds.put("typed-sdk", { typePolicy: "declared" });
    const type = "nl.example.sdk.typed";
    const declared = await client.types.put("typed-sdk", type, {
      description: "typed",
      schema: { type: "object", required: ["n"] },
      example: { n: 1 },
    });
    assert.equal(declared.declared, true);
    assert.deepEqual(declared.example, { n: 1 });
    const refused = await client
      .publish("typed-sdk", { type, source: "urn:nld:test", data: { m: 1 } })
      .catch((error) => error as SeintjeError);
    assert.equal((refused as SeintjeError).status, 400);
    assert.equal((refused as SeintjeError).problem?.errors?.[0]?.pointer, "/data/n");
    await client.publish("typed-sdk", { type, source: "urn:nld:test", data: { n: 2 } });
    assert.equal((await client.types.get("typed-sdk", type)).count, 1);
    assert.deepEqual(
      (await client.types.list("typed-sdk")).map((entry) => entry.type),
      [type],
    );
    const document = await client.types.asyncApi("typed-sdk");
    assert.equal(document.asyncapi, "3.0.0");
    await client.types.delete("typed-sdk", type);
    assert.equal((await client.types.get("typed-sdk", type)).declared, false, "seen, no longer declared");
  });

  for (const mode of ["poll", "stream"] as const) {
    it(`throws CursorGoneError with oldest when retention passed the cursor (${mode})`, async () => {
      const feed = `pruned-${mode}`;
      await client.feeds.put(feed, { retention: { maxEvents: 2 } });
      await client.publish(
        feed,
        Array.from({ length: 5 }, () => cloudEvent()),
      );
      await svc.service.retention.pass();
      const error = await (async () => {
        for await (const _ of client.follow(feed, { after: "1", mode })) assert.fail("nothing is yielded");
      })().catch((caught) => caught);
      assert.ok(error instanceof CursorGoneError, String(error));
      assert.equal(error.oldest, "4");
    });

    it(`throws at once, without retrying, what retrying cannot mend (${mode})`, async () => {
      const retries: unknown[] = [];
      const missing = await (async () => {
        for await (const _ of client.follow("no-such-feed", { mode, onRetry: (e) => retries.push(e) })) {
          assert.fail("nothing is yielded");
        }
      })().catch((caught) => caught);
      assert.equal((missing as SeintjeError).status, 404);
      const stranger = new SeintjeClient({ url: svc.url, token: await tokenFor(svc.dir, "read:other") });
      const forbidden = await (async () => {
        for await (const _ of stranger.follow("published", { mode })) assert.fail("nothing is yielded");
      })().catch((caught) => caught);
      assert.equal((forbidden as SeintjeError).status, 403);
      assert.deepEqual(retries, []);
    });
  }

  it("keeps a slow consumer's stream bounded and still yields every event once (maxBuffered)", async () => {
    await client.feeds.put("slow");
    for (let i = 0; i < 4; i += 1) {
      await client.publish(
        "slow",
        Array.from({ length: 50 }, () => cloudEvent()),
      );
    }
    const stop = new AbortController();
    const sequences: string[] = [];
    for await (const event of client.follow("slow", {
      mode: "stream",
      maxBuffered: 10,
      signal: stop.signal,
    })) {
      sequences.push(event.sequence);
      await new Promise((resolve) => setTimeout(resolve, 1));
      if (sequences.length === 200) break;
    }
    assert.deepEqual(
      sequences,
      Array.from({ length: 200 }, (_, index) => String(index + 1)),
    );
  });

  it("follows with filters, and stops when its signal aborts", async () => {
    await client.feeds.put("filtered");
    await client.publish("filtered", [
      cloudEvent({ type: "nl.example.kept" }),
      cloudEvent({ type: "nl.example.skipped" }),
      cloudEvent({ type: "nl.example.kept" }),
    ]);
    for (const mode of ["poll", "stream"] as const) {
      const stop = new AbortController();
      const seen: string[] = [];
      setTimeout(() => stop.abort(), 1500);
      for await (const event of client.follow("filtered", {
        mode,
        types: ["nl.example.kept"],
        wait: 1,
        signal: stop.signal,
      })) {
        seen.push(event.sequence);
      }
      assert.deepEqual(seen, ["1", "3"], mode);
    }
  });
});

describe("verifyPing", () => {
  it("accepts a real ping and refuses a tampered body, a wrong secret and an old timestamp", async () => {
    const receiver = await startReceiver();
    const svc = await startTestService({
      SEINTJE_CALLBACK_HTTP: "true",
      SEINTJE_CALLBACK_ALLOW: "127.0.0.1",
    });
    try {
      const client = new SeintjeClient({ url: svc.url, token: await tokenFor(svc.dir, "admin") });
      await client.feeds.put("verified");
      const { secret, id } = await client.subscriptions.create({ feed: "verified", url: receiver.url });
      await client.publish("verified", cloudEvent());
      const [ping] = await receiver.waitForPings(1);
      const headers = ping!.headers as Record<string, string>;

      const verified = verifyPing(headers, ping!.body, secret);
      assert.equal(verified.data.feed, "verified");
      assert.equal(verified.data.subscription, id);
      assert.equal(verified.id, headers["webhook-id"]);
      assert.equal(verifyPing(new Headers(headers), Buffer.from(ping!.body), secret).id, verified.id);

      const refusal = (run: () => unknown) => {
        try {
          run();
        } catch (error) {
          assert.ok(error instanceof PingVerificationError, String(error));
          return error.reason;
        }
        assert.fail("the ping was accepted");
      };
      assert.equal(
        refusal(() => verifyPing(headers, ping!.body.replace('"head":"1"', '"head":"9"'), secret)),
        "bad-signature",
      );
      const wrong = `whsec_${Buffer.alloc(32, 7).toString("base64")}`;
      assert.equal(
        refusal(() => verifyPing(headers, ping!.body, wrong)),
        "bad-signature",
      );
      const old = new Date(Date.now() - 10 * 60 * 1000);
      const oldHeaders = {
        ...headers,
        "webhook-timestamp": String(Math.floor(old.getTime() / 1000)),
        "webhook-signature": new Webhook(secret).sign(headers["webhook-id"]!, old, ping!.body),
      };
      assert.equal(
        refusal(() => verifyPing(oldHeaders, ping!.body, secret)),
        "timestamp-too-old",
      );
      const { "webhook-signature": _, ...unsigned } = headers;
      assert.equal(
        refusal(() => verifyPing(unsigned, ping!.body, secret)),
        "missing-headers",
      );
      assert.equal(
        verifyPing(headers, ping!.body, [wrong, secret]).id,
        verified.id,
        "either secret of a rotation",
      );
    } finally {
      await svc.stop();
      await receiver.close();
    }
  });
});

describe("FileCursorStore", () => {
  it("saves and loads a cursor atomically, leaving no temporary files, and refuses what is not a cursor", async () => {
    const dir = mkdtempSync(join(tmpdir(), "seintje-cursor-"));
    try {
      const store = new FileCursorStore(join(dir, "nested", "brk.cursor"));
      assert.equal(await store.load(), undefined);
      await store.save("41");
      await store.save(42);
      assert.equal(await store.load(), "42");
      assert.equal(await new FileCursorStore(store.path).load(), "42", "another process reads the same");
      assert.deepEqual(readdirSync(join(dir, "nested")), ["brk.cursor"]);
      await assert.rejects(store.save("-1"), /not a cursor/);
      writeFileSync(store.path, "garbage");
      await assert.rejects(store.load(), /does not hold a cursor/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
