import assert from "node:assert/strict";
import { copyFileSync, existsSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { describe, it } from "node:test";
import { EventSource } from "eventsource";
import { DIALECT, databaseEnv } from "../support/database.js";
import { call, cloudEvent, publish, publishBatch, putFeed, readAll, readPage } from "../support/http.js";
import { scrape } from "../support/metrics.js";
import { runToEnd, type ServerProcess, startServerProcess } from "../support/process.js";
import { startReceiver } from "../support/receiver.js";
import { startTestService, tempDir, tokenFor } from "../support/service.js";
import { openStream } from "../support/sse.js";
import { eventually } from "../support/wait.js";

/** Running the service: logs, retention in the background, shutdown, backup. */

const HOOKS = {
  SEINTJE_CALLBACK_HTTP: "true",
  SEINTJE_CALLBACK_ALLOW: "127.0.0.1",
  SEINTJE_PING_RETRY: "0.2",
};

/** Writes `head` on a raw connection (the caller may write more) and collects the whole response. */
function rawRequest(base: string, head: string) {
  const { port } = new URL(base);
  const socket = connect(Number(port), "127.0.0.1");
  socket.write(head);
  let received = "";
  socket.on("data", (chunk) => {
    received += chunk;
  });
  const response = new Promise<string>((resolve) => {
    socket.once("close", () => resolve(received));
  });
  return { socket, response };
}

function json(token: string) {
  return { authorization: `Bearer ${token}`, "content-type": "application/json" };
}

describe("structured logs", () => {
  it("log each request as one JSON line with its route template, and never a token or a secret", async () => {
    const receiver = await startReceiver();
    const svc = await startTestService({ ...HOOKS, SEINTJE_LOG_LEVEL: "trace" });
    try {
      const admin = await tokenFor(svc.dir, "admin", { subject: "ops" });
      const reader = await tokenFor(svc.dir, "read");
      await putFeed(svc.url, "logged");
      await publish(svc.url, "logged", cloudEvent(), { authorization: `Bearer ${admin}` });
      const created = await call(`${svc.url}/v1/subscriptions`, {
        method: "POST",
        headers: json(admin),
        body: JSON.stringify({ feed: "logged", url: receiver.url, after: "0" }),
      });
      assert.equal(created.status, 201, created.text);
      const rotated = await call(`${svc.url}/v1/subscriptions/${created.body.id}/rotate-secret`, {
        method: "POST",
        headers: json(admin),
      });
      await receiver.waitForPings(1);
      const source = new EventSource(`${svc.url}/v1/feeds/logged/events?after=0&access_token=${reader}`);
      await new Promise<void>((resolve) => {
        source.onmessage = () => resolve();
      });
      source.close();
      await readPage(svc.url, "logged", "after=0");
      await eventually(() => svc.logs.some((line) => line.msg === "request" && line.status === 200));

      const requests = svc.logs.filter((line) => line.msg === "request");
      assert.ok(requests.length >= 5);
      for (const line of requests) {
        assert.equal(typeof line.method, "string");
        assert.equal(typeof line.status, "number");
        assert.equal(typeof line.durationMs, "number");
        assert.equal(typeof line.time, "string");
        assert.ok(!String(line.path).includes("?"), "the path is logged without its query");
      }
      assert.ok(requests.some((line) => line.route === "/v1/feeds/:feed/events" && line.method === "POST"));
      assert.ok(requests.some((line) => line.route === "/v1/subscriptions/:id/rotate-secret"));

      const text = svc.logs.map((line) => JSON.stringify(line)).join("\n");
      for (const [what, secret] of [
        ["admin token", admin],
        ["access_token", reader],
        ["subscription secret", created.body.secret],
        ["rotated secret", rotated.body.secret],
      ] as const) {
        assert.ok(!text.includes(secret), `the ${what} is not in the logs`);
        assert.ok(!text.includes(secret.split(".").at(-1)!), `no part of the ${what} is in the logs`);
      }
      assert.ok(!text.includes("whsec_"));
    } finally {
      await svc.stop();
      await receiver.close();
    }
  });

  it("follow SEINTJE_LOG_LEVEL", async () => {
    const svc = await startTestService({ SEINTJE_LOG_LEVEL: "warn" });
    try {
      await call(`${svc.url}/healthz`);
      await call(`${svc.url}/v1/feeds/missing`);
      assert.deepEqual(
        svc.logs.filter((line) => (line.level as number) < 40),
        [],
        "nothing below warn",
      );
    } finally {
      await svc.stop();
    }
  });
});

describe("retention in the background", () => {
  it("prunes every SEINTJE_RETENTION_INTERVAL: oldest moves, old cursors get 410 and streams a reset", async () => {
    const svc = await startTestService({ SEINTJE_RETENTION_INTERVAL: "1" });
    try {
      await putFeed(svc.url, "rolling", { retention: { maxEvents: 3 } });
      await publishBatch(
        svc.url,
        "rolling",
        Array.from({ length: 10 }, () => cloudEvent()),
      );
      await eventually(
        async () => (await call(`${svc.url}/v1/feeds/rolling`)).body.oldest === "8",
        5000,
        "oldest = 8 without a manual pass",
      );
      const gone = await readPage(svc.url, "rolling", "after=2");
      assert.equal(gone.status, 410);
      assert.equal(gone.body.oldest, "8");
      assert.deepEqual(
        (await readAll(svc.url, "rolling")).map((event) => event.sequence),
        ["8", "9", "10"],
      );
      const token = await tokenFor(svc.dir, "read");
      const stream = await openStream(`${svc.url}/v1/feeds/rolling/events?after=2`, {
        authorization: `Bearer ${token}`,
      });
      await stream.closed;
      assert.match(stream.text(), /event: reset\ndata: \{.*"oldest":"8"/);
    } finally {
      await svc.stop();
    }
  });

  it("deletes in batches of at most 1,000 events, each a short transaction of its own", async () => {
    const svc = await startTestService();
    try {
      await putFeed(svc.url, "batched", { retention: { maxEvents: 1 } });
      for (let i = 0; i < 3; i += 1) {
        await publishBatch(
          svc.url,
          "batched",
          Array.from({ length: 1000 }, () => cloudEvent()),
        );
      }
      const deletes = async () =>
        (await scrape(svc.url))
          .filter((sample) => sample.name === "seintje_db_query_duration_seconds_count")
          .filter((sample) => sample.labels.operation === "delete")
          .reduce((sum, sample) => sum + sample.value, 0);
      const before = await deletes();
      assert.equal(await svc.service.retention.pass(), 2999);
      assert.equal((await deletes()) - before, 3, "2,999 events in three batches");
      assert.equal((await call(`${svc.url}/v1/feeds/batched`)).body.oldest, "3000");
    } finally {
      await svc.stop();
    }
  });

  it("tells a subscription whose cursor retention passed, in its next ping", async () => {
    const receiver = await startReceiver();
    const svc = await startTestService(HOOKS);
    try {
      await putFeed(svc.url, "lapsed", { retention: { maxEvents: 2 } });
      const created = await call(`${svc.url}/v1/subscriptions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ feed: "lapsed", url: receiver.url }),
      });
      assert.equal(created.status, 201, created.text);
      await publish(svc.url, "lapsed", cloudEvent());
      await eventually(
        async () => (await call(`${svc.url}/v1/subscriptions/${created.body.id}`)).body.acked === "1",
      );
      // The subscriber is down while five more events arrive and retention keeps only the last two.
      receiver.respond = () => ({ status: 503 });
      await publishBatch(
        svc.url,
        "lapsed",
        Array.from({ length: 5 }, () => cloudEvent()),
      );
      const failed = await receiver.waitForPings(2);
      assert.equal(failed[1]!.event.data.cursorGone, undefined, "nothing was removed yet");
      await svc.service.retention.pass();
      receiver.respond = () => ({ status: 204 });
      await publish(svc.url, "lapsed", cloudEvent());
      const told = await eventually(
        () => receiver.pings.find((ping) => ping.event.data.head === "7"),
        5000,
        "a ping announcing 7",
      );
      assert.equal(told.event.data.after, "1");
      assert.equal(told.event.data.cursorGone, true);
      assert.equal(told.event.data.oldest, "5");
      assert.deepEqual(
        told.event.data.events.map((event: { sequence: string }) => event.sequence),
        ["5", "6", "7"],
      );
      const followed = await call(told.event.data.url);
      assert.equal(followed.status, 410, "the ping's url answers 410, as the pull feed does");
      assert.equal(followed.body.oldest, "5");
    } finally {
      await svc.stop();
      await receiver.close();
    }
  });
});

describe("graceful shutdown", () => {
  it("on SIGTERM finishes a publish in flight, ends streams with a retry hint, answers long-polls, hands back a ping, exits in time", async () => {
    const dir = tempDir();
    const receiver = await startReceiver();
    const env = {
      ...HOOKS,
      SEINTJE_DATA_DIR: dir,
      SEINTJE_PING_TIMEOUT: "30",
      SEINTJE_SHUTDOWN_TIMEOUT: "1",
      SEINTJE_STREAM_RETRY: "1234",
    };
    let second: ServerProcess | undefined;
    try {
      const first = await startServerProcess(env);
      const admin = await tokenFor(dir, "admin");
      const headers = json(admin);
      assert.equal((await call(`${first.url}/v1/feeds/drain`, { method: "PUT", headers })).status, 201);
      assert.equal((await call(`${first.url}/v1/feeds/other`, { method: "PUT", headers })).status, 201);
      const created = await call(`${first.url}/v1/subscriptions`, {
        method: "POST",
        headers,
        body: JSON.stringify({ feed: "drain", url: receiver.url }),
      });
      assert.equal(created.status, 201, created.text);
      receiver.respond = () => ({ status: 204, delayMs: 60_000 });
      await publish(first.url, "drain", cloudEvent(), { authorization: `Bearer ${admin}` });
      const [held] = await receiver.waitForPings(1);

      const stream = await openStream(`${first.url}/v1/feeds/drain/events?after=0`, {
        authorization: `Bearer ${admin}`,
      });
      await stream.waitFor((text) => text.includes("id: 1\n"));
      const longPoll = call(`${first.url}/v1/feeds/drain/events?after=1&wait=30`, { headers });
      // A publish in flight (to another feed, so the held ping stays current): its headers and half its body
      // are sent before the signal, the rest after.
      const body = JSON.stringify(cloudEvent({ id: "in-flight" }));
      const publishing = rawRequest(
        first.url,
        [
          "POST /v1/feeds/other/events HTTP/1.1",
          "Host: 127.0.0.1",
          `Authorization: Bearer ${admin}`,
          "Content-Type: application/cloudevents+json",
          `Content-Length: ${Buffer.byteLength(body)}`,
          "",
          body.slice(0, 20),
        ].join("\r\n"),
      );
      await new Promise((resolve) => setTimeout(resolve, 200));

      const signalled = Date.now();
      first.child.kill("SIGTERM");
      await new Promise((resolve) => setTimeout(resolve, 100));
      publishing.socket.write(body.slice(20));
      const code = await first.exited;
      const took = Date.now() - signalled;
      assert.equal(code, 0);
      assert.ok(took < 1000 + 5000, `exited ${took} ms after SIGTERM; the bound is the 1 s timeout + 5 s`);
      await stream.closed;
      assert.match(stream.text(), /id: 1\n[\s\S]*retry: 1234\n\n$/, "the stream ends with a retry hint");
      const answered = await longPoll;
      assert.equal(answered.status, 200);
      assert.deepEqual(answered.body.events, []);
      const response = await publishing.response;
      assert.match(response, /^HTTP\/1\.1 201 /, "the publish in flight was acknowledged");
      assert.match(response, /\r\nConnection: close\r\n/i, "and told not to send more on that connection");

      receiver.respond = () => ({ status: 204 });
      second = await startServerProcess(env);
      const again = await eventually(
        () => receiver.pings.find((ping, index) => index > 0 && ping.event.data.head === "1"),
        10_000,
        "the handed-back ping, sent again",
      );
      assert.equal(again.headers["webhook-id"], held!.headers["webhook-id"]);
      const url = second.url;
      const stored = await call(`${url}/v1/feeds/other/events?after=0`, { headers });
      assert.deepEqual(
        stored.body.events.map((event: { id: string }) => event.id),
        ["in-flight"],
        "the acknowledged event is there after the restart",
      );
      await eventually(
        async () =>
          (await call(`${url}/v1/subscriptions/${created.body.id}`, { headers })).body.acked === "1",
        5000,
        "acked = 1",
      );
    } finally {
      if (second) {
        second.child.kill("SIGTERM");
        await second.exited;
      }
      await receiver.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("exits at once with code 1 on a second signal", async () => {
    const dir = tempDir();
    const receiver = await startReceiver();
    try {
      const env = {
        ...HOOKS,
        SEINTJE_DATA_DIR: dir,
        SEINTJE_PING_TIMEOUT: "60",
        SEINTJE_SHUTDOWN_TIMEOUT: "60",
      };
      const server = await startServerProcess(env);
      const headers = json(await tokenFor(dir, "admin"));
      await call(`${server.url}/v1/feeds/stuck`, { method: "PUT", headers });
      await call(`${server.url}/v1/subscriptions`, {
        method: "POST",
        headers,
        body: JSON.stringify({ feed: "stuck", url: receiver.url }),
      });
      receiver.respond = () => ({ status: 204, delayMs: 60_000 });
      await publish(server.url, "stuck", cloudEvent(), { authorization: headers.authorization });
      await receiver.waitForPings(1);
      server.child.kill("SIGTERM");
      await eventually(
        () => server.lines.some((line) => line.includes('"msg":"stopping"')),
        5000,
        "stopping",
      );
      const signalled = Date.now();
      server.child.kill("SIGINT");
      assert.equal(await server.exited, 1);
      assert.ok(Date.now() - signalled < 3000, "it did not wait for the 60 s grace period");
      assert.ok(server.lines.some((line) => line.includes("second signal")));
    } finally {
      await receiver.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("seintje backup", () => {
  if (DIALECT === "postgres") {
    it("points to pg_dump on PostgreSQL", async () => {
      const dir = tempDir();
      try {
        const result = await runToEnd(["backup", join(dir, "copy.db")], {
          SEINTJE_DATA_DIR: dir,
          ...(await databaseEnv(dir)),
        });
        assert.equal(result.code, 2);
        assert.match(result.stderr, /pg_dump/);
        assert.ok(!existsSync(join(dir, "copy.db")));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
    return;
  }

  it("copies the SQLite database while the service publishes, and a service runs on the copy", async () => {
    const dir = tempDir();
    const copyDir = tempDir();
    const target = join(copyDir, "backup.db");
    const server = await startServerProcess({ SEINTJE_DATA_DIR: dir });
    try {
      const admin = { authorization: `Bearer ${await tokenFor(dir, "admin")}` };
      await call(`${server.url}/v1/feeds/kept`, { method: "PUT", headers: admin });
      let publishing = true;
      const publisher = (async () => {
        let published = 0;
        while (publishing && published < 2000) {
          const reply = await publish(server.url, "kept", cloudEvent(), admin);
          assert.equal(reply.status, 201);
          published += 1;
        }
        return published;
      })();
      await new Promise((resolve) => setTimeout(resolve, 300));
      const result = await runToEnd(["backup", target], { SEINTJE_DATA_DIR: dir });
      publishing = false;
      const published = await publisher;
      assert.equal(result.code, 0, result.stderr);
      const counted = /backed up 1 feed\(s\) and (\d+) event\(s\)/.exec(result.stdout);
      assert.ok(counted, result.stdout);
      const copied = Number(counted[1]);
      assert.ok(copied > 0 && copied <= published, `${copied} of ${published} events in the copy`);
      assert.match(result.stdout, /signing-key\.jwk and webhook-secrets\.key/);

      const again = await runToEnd(["backup", target], { SEINTJE_DATA_DIR: dir });
      assert.equal(again.code, 1);
      assert.match(again.stderr, /exists already/);

      // Restore: the copy as the database of a fresh data dir, with the keys the backup does not hold.
      const restoredDir = tempDir();
      copyFileSync(target, join(restoredDir, "seintje.db"));
      for (const key of ["signing-key.jwk", "webhook-secrets.key"]) {
        copyFileSync(join(dir, key), join(restoredDir, key));
      }
      const restored = await startTestService({}, { dir: restoredDir });
      try {
        const events = await readAll(restored.url, "kept");
        assert.deepEqual(
          events.map((event) => Number(event.sequence)),
          Array.from({ length: copied }, (_, index) => index + 1),
          "a consistent prefix of the log, without gaps",
        );
      } finally {
        await restored.stop();
        rmSync(restoredDir, { recursive: true, force: true });
      }
    } finally {
      server.child.kill("SIGTERM");
      await server.exited;
      rmSync(dir, { recursive: true, force: true });
      rmSync(copyDir, { recursive: true, force: true });
    }
  });
});
