import assert from "node:assert/strict";
import { connect } from "node:net";
import { describe, it } from "node:test";
import { call, cloudEvent, publish, publishBatch, putFeed, readAll, readPage } from "../support/http.js";
import { sampleValue, scrape } from "../support/metrics.js";
import { startTestService, tokenFor } from "../support/service.js";
import { openStream } from "../support/sse.js";
import { eventually, pause } from "../support/wait.js";

/** The limits a process keeps: streams, long-polls, publish rate, body size, slow clients. */

function assertRefused(reply: { status: number; headers: Headers; body: any }, status: number, type: string) {
  assert.equal(reply.status, status);
  assert.equal(reply.headers.get("content-type"), "application/problem+json");
  assert.equal(reply.body.type, `urn:seintje:problem:${type}`);
  const retryAfter = Number(reply.headers.get("retry-after"));
  assert.ok(
    Number.isInteger(retryAfter) && retryAfter >= 1,
    `Retry-After: ${reply.headers.get("retry-after")}`,
  );
}

describe("the cap on open streams", () => {
  it("answers 503 with Retry-After beyond SEINTJE_MAX_STREAMS, and admits again once one closes", async () => {
    const svc = await startTestService({ SEINTJE_MAX_STREAMS: "2" });
    try {
      await putFeed(svc.url, "capped");
      const auth = { authorization: `Bearer ${await tokenFor(svc.dir, "read")}` };
      const url = `${svc.url}/v1/feeds/capped/events`;
      const first = await openStream(url, auth);
      const second = await openStream(url, auth);
      await first.waitFor((text) => text.startsWith("retry:"));
      await second.waitFor((text) => text.startsWith("retry:"));
      const third = await call(url, { headers: { ...auth, accept: "text/event-stream" } });
      assertRefused(third, 503, "service-unavailable");
      assert.equal((await readPage(svc.url, "capped")).status, 200, "pages are not streams");
      assert.equal(
        sampleValue(await scrape(svc.url), "seintje_requests_refused_total", { limit: "streams" }),
        1,
      );

      first.close();
      const admitted = await eventually(async () => {
        const attempt = await openStream(url, auth);
        if (attempt.status === 200) return attempt;
        attempt.close();
        return undefined;
      }, 5000);
      admitted.close();
      second.close();
    } finally {
      await svc.stop();
    }
  });
});

describe("the cap on long-polls", () => {
  it("answers 503 beyond SEINTJE_MAX_LONGPOLLS while reads that do not wait go on", async () => {
    const svc = await startTestService({ SEINTJE_MAX_LONGPOLLS: "1" });
    try {
      await putFeed(svc.url, "polled");
      const waiting = readPage(svc.url, "polled", "after=0&wait=20");
      await eventually(async () => sampleValue(await scrape(svc.url), "seintje_longpolls_waiting") === 1);
      assertRefused(await readPage(svc.url, "polled", "after=0&wait=5"), 503, "service-unavailable");
      assert.equal((await readPage(svc.url, "polled", "after=0")).status, 200, "wait=0 does not hold");
      await publish(svc.url, "polled", cloudEvent());
      assert.equal((await waiting).body.events.length, 1);
      const again = await readPage(svc.url, "polled", "after=0&wait=5");
      assert.equal(again.status, 200, "the place was given back");
    } finally {
      await svc.stop();
    }
  });
});

describe("the publish rate per token", () => {
  it("answers 429 with Retry-After over SEINTJE_PUBLISH_RATE, stores nothing then, and counts per subject", async () => {
    const svc = await startTestService({ SEINTJE_PUBLISH_RATE: "3" });
    try {
      await putFeed(svc.url, "rated");
      const alice = { authorization: `Bearer ${await tokenFor(svc.dir, "publish", { subject: "alice" })}` };
      const bob = { authorization: `Bearer ${await tokenFor(svc.dir, "publish", { subject: "bob" })}` };
      // A subject's one-second window opens at its first request; four requests take far less than that.
      const replies = [];
      for (let i = 0; i < 4; i += 1) replies.push(await publish(svc.url, "rated", cloudEvent(), alice));
      assert.deepEqual(
        replies.map((reply) => reply.status),
        [201, 201, 201, 429],
      );
      assertRefused(replies[3]!, 429, "rate-limited");
      assert.equal(
        (await publish(svc.url, "rated", cloudEvent(), bob)).status,
        201,
        "bob has his own budget",
      );
      assert.equal((await readAll(svc.url, "rated")).length, 4, "the refused event was not stored");
      const samples = await scrape(svc.url);
      assert.equal(
        sampleValue(samples, "seintje_events_rejected_total", { feed: "rated", reason: "rate-limited" }),
        1,
      );

      await pause(Number(replies[3]!.headers.get("retry-after")) * 1000);
      assert.equal((await publish(svc.url, "rated", cloudEvent(), alice)).status, 201, "after Retry-After");
    } finally {
      await svc.stop();
    }
  });
});

describe("the request body limit", () => {
  it("answers 413 beyond SEINTJE_MAX_REQUEST_BYTES and stores nothing", async () => {
    const svc = await startTestService({ SEINTJE_MAX_REQUEST_BYTES: "65536" });
    try {
      await putFeed(svc.url, "bounded");
      const events = Array.from({ length: 10 }, () => cloudEvent({ data: { text: "x".repeat(8000) } }));
      const tooLarge = await publishBatch(svc.url, "bounded", events);
      assert.equal(tooLarge.status, 413);
      assert.equal(tooLarge.body.type, "urn:seintje:problem:payload-too-large");
      assert.equal((await readAll(svc.url, "bounded")).length, 0);
      assert.equal((await publishBatch(svc.url, "bounded", events.slice(0, 5))).status, 201);
    } finally {
      await svc.stop();
    }
  });
});

describe("slow clients", () => {
  it("closes a connection whose headers do not arrive within SEINTJE_HEADERS_TIMEOUT", async () => {
    const svc = await startTestService({ SEINTJE_HEADERS_TIMEOUT: "0.5", SEINTJE_REQUEST_TIMEOUT: "1" });
    try {
      const { port } = new URL(svc.url);
      const socket = connect(Number(port), "127.0.0.1");
      let received = "";
      socket.on("data", (chunk) => {
        received += chunk;
      });
      const closed = new Promise<number>((resolve) => socket.once("close", () => resolve(Date.now())));
      socket.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n");
      const started = Date.now();
      const timeout = setTimeout(() => socket.destroy(), 10_000);
      const at = await closed;
      clearTimeout(timeout);
      assert.ok(at - started < 5000, `closed after ${at - started} ms`);
      assert.match(received, /^HTTP\/1\.1 408 /);
    } finally {
      await svc.stop();
    }
  });

  it("does not count a long-poll's wait against SEINTJE_REQUEST_TIMEOUT", async () => {
    const svc = await startTestService({ SEINTJE_HEADERS_TIMEOUT: "0.5", SEINTJE_REQUEST_TIMEOUT: "1" });
    try {
      await putFeed(svc.url, "patient");
      const started = Date.now();
      const page = await readPage(svc.url, "patient", "after=0&wait=2.5");
      assert.equal(page.status, 200);
      assert.ok(Date.now() - started >= 2400, "it waited the whole 2.5 s");
    } finally {
      await svc.stop();
    }
  });
});
