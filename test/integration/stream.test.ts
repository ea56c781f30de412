import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, describe, it } from "node:test";
import { EventSource } from "eventsource";
import { call, cloudEvent, publish, publishBatch, putFeed } from "../support/http.js";
import { startTestService, type TestService, tokenFor } from "../support/service.js";
import { dataIds, openStream } from "../support/sse.js";
import { eventually, pause } from "../support/wait.js";

/** An `eventsource` client that sends the token in a header, collecting every message. */
function follow(url: string, token: string) {
  const received: Array<{ id: string; data: any }> = [];
  let opened = 0;
  const source = new EventSource(url, {
    fetch: (input, init) =>
      fetch(input, { ...init, headers: { ...(init?.headers ?? {}), authorization: `Bearer ${token}` } }),
  });
  source.onopen = () => {
    opened += 1;
  };
  source.onmessage = (event) => received.push({ id: event.lastEventId, data: JSON.parse(event.data) });
  return {
    source,
    received,
    opened: () => opened,
    async until(count: number, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (received.length < count && Date.now() < deadline) await pause(20);
      assert.ok(received.length >= count, `received ${received.length} of ${count}`);
    },
  };
}

describe("the SSE stream", () => {
  let svc: TestService;
  let token: string;
  before(async () => {
    svc = await startTestService({
      SEINTJE_KEEPALIVE: "1",
      SEINTJE_STREAM_RETRY: "100",
      SEINTJE_CORS_ORIGINS: "http://app.example",
    });
    token = await tokenFor(svc.dir, "admin");
  });
  after(() => svc.stop());

  it("sends history then live events, ids equal to sequences, as EventSource messages", async () => {
    await putFeed(svc.url, "history");
    await publishBatch(svc.url, "history", [
      cloudEvent({ id: "h1" }),
      cloudEvent({ id: "h2" }),
      cloudEvent({ id: "h3" }),
    ]);
    const client = follow(`${svc.url}/v1/feeds/history/events?after=1`, token);
    try {
      await client.until(2);
      await publish(svc.url, "history", cloudEvent({ id: "live-1" }));
      await publish(svc.url, "history", cloudEvent({ id: "live-2" }));
      await client.until(4);
      assert.deepEqual(
        client.received.map((message) => message.id),
        ["2", "3", "4", "5"],
      );
      assert.deepEqual(
        client.received.map((message) => message.data.id),
        ["h2", "h3", "live-1", "live-2"],
      );
      assert.deepEqual(
        client.received.map((message) => message.data.sequence),
        ["2", "3", "4", "5"],
      );
    } finally {
      client.source.close();
    }
  });

  it("starts with retry, names no event, and sets the streaming headers", async () => {
    await putFeed(svc.url, "framing");
    await publish(svc.url, "framing", cloudEvent());
    const stream = await openStream(`${svc.url}/v1/feeds/framing/events`, {
      authorization: `Bearer ${token}`,
      origin: "http://app.example",
    });
    try {
      assert.equal(stream.status, 200);
      assert.equal(stream.headers.get("content-type"), "text/event-stream; charset=utf-8");
      assert.equal(stream.headers.get("x-accel-buffering"), "no");
      assert.equal(stream.headers.get("cache-control"), "no-store");
      assert.equal(stream.headers.get("access-control-allow-origin"), "http://app.example");
      const text = await stream.waitFor((received) => received.includes("id: 1\n"));
      assert.match(text, /^retry: 100\n\n/);
      assert.doesNotMatch(text, /^event:/m);
    } finally {
      stream.close();
    }
    const otherOrigin = await openStream(`${svc.url}/v1/feeds/framing/events`, {
      authorization: `Bearer ${token}`,
      origin: "http://evil.example",
    });
    assert.equal(otherOrigin.headers.get("access-control-allow-origin"), null);
    otherOrigin.close();
  });

  it("resumes with Last-Event-ID after the server drops the connection: every event once, in order", async () => {
    await putFeed(svc.url, "resume");
    const client = follow(`${svc.url}/v1/feeds/resume/events`, token);
    try {
      for (let i = 0; i < 5; i += 1) await publish(svc.url, "resume", cloudEvent());
      await client.until(5);
      // Drop every connection from the server side, then publish while the client is away.
      svc.service.server.closeAllConnections();
      await pause(100); // let this test's own pooled HTTP connections notice they were closed too
      for (let i = 0; i < 5; i += 1) await publish(svc.url, "resume", cloudEvent());
      await client.until(10);
      // One more, and when it has come nothing else came before it: each event once, in order.
      await publish(svc.url, "resume", cloudEvent());
      await client.until(11);
      assert.ok(client.opened() >= 2, "the client reconnected");
      assert.deepEqual(
        client.received.map((message) => Number(message.id)),
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
      );
    } finally {
      client.source.close();
    }
  });

  it("sends keep-alive comments in silence", async () => {
    await putFeed(svc.url, "quiet");
    const stream = await openStream(`${svc.url}/v1/feeds/quiet/events`, { authorization: `Bearer ${token}` });
    try {
      await stream.waitFor((text) => text.includes(": keep-alive\n\n"), 5000);
    } finally {
      stream.close();
    }
  });

  it("with filters, moves the id past skipped events so a reconnect resumes after them", async () => {
    await putFeed(svc.url, "filtered");
    await publish(svc.url, "filtered", cloudEvent({ type: "nl.example.wanted" }));
    const stream = await openStream(`${svc.url}/v1/feeds/filtered/events?type=nl.example.wanted`, {
      authorization: `Bearer ${token}`,
    });
    try {
      await stream.waitFor((text) => text.includes("id: 1\ndata:"));
      for (let i = 0; i < 3; i += 1)
        await publish(svc.url, "filtered", cloudEvent({ type: "nl.example.other" }));
      const text = await stream.waitFor((received) => received.includes("id: 4\n\n"), 5000);
      assert.deepEqual(dataIds(text), [1], "skipped events are not sent");
    } finally {
      stream.close();
    }
    await publish(svc.url, "filtered", cloudEvent({ type: "nl.example.wanted" }));
    const resumed = await openStream(`${svc.url}/v1/feeds/filtered/events?type=nl.example.wanted`, {
      authorization: `Bearer ${token}`,
      "last-event-id": "4",
    });
    try {
      const text = await resumed.waitFor((received) => received.includes("id: 5\ndata:"));
      assert.deepEqual(dataIds(text), [5]);
    } finally {
      resumed.close();
    }
  });

  it("lets Last-Event-ID win over after", async () => {
    await putFeed(svc.url, "precedence");
    await publishBatch(svc.url, "precedence", [cloudEvent(), cloudEvent(), cloudEvent()]);
    const stream = await openStream(`${svc.url}/v1/feeds/precedence/events?after=0`, {
      authorization: `Bearer ${token}`,
      "last-event-id": "2",
    });
    try {
      const text = await stream.waitFor((received) => received.includes("id: 3\n"));
      assert.deepEqual(dataIds(text), [3]);
    } finally {
      stream.close();
    }
  });

  it("sends event: reset with the problem when retention passed the cursor, then closes", async () => {
    await putFeed(svc.url, "pruned", { retention: { maxEvents: 2 } });
    await publishBatch(
      svc.url,
      "pruned",
      Array.from({ length: 6 }, () => cloudEvent()),
    );
    await svc.service.retention.pass();
    const stream = await openStream(`${svc.url}/v1/feeds/pruned/events?after=1`, {
      authorization: `Bearer ${token}`,
    });
    await stream.closed;
    const text = stream.text();
    const reset = /event: reset\ndata: (.*)\n\n/.exec(text);
    assert.ok(reset, text);
    const problem = JSON.parse(reset[1]!);
    assert.equal(problem.status, 410);
    assert.equal(problem.type, "urn:seintje:problem:cursor-gone");
    assert.equal(problem.oldest, "5");
  });

  it("answers plain problems before a stream starts", async () => {
    await putFeed(svc.url, "plain");
    const headers = { authorization: `Bearer ${token}`, accept: "text/event-stream" };
    const missing = await call(`${svc.url}/v1/feeds/no-such/events`, { headers });
    assert.equal(missing.status, 404);
    const ahead = await call(`${svc.url}/v1/feeds/plain/events?after=9`, { headers });
    assert.equal(ahead.status, 400);
    assert.equal(ahead.body.type, "urn:seintje:problem:cursor-ahead");
    const badId = await call(`${svc.url}/v1/feeds/plain/events`, {
      headers: { ...headers, "last-event-id": "not-a-sequence" },
    });
    assert.equal(badId.status, 400);
    const noToken = await call(`${svc.url}/v1/feeds/plain/events`, {
      headers: { accept: "text/event-stream", authorization: "" },
    });
    assert.equal(noToken.status, 401);
  });

  it("accepts ?access_token= on the stream only, and never logs it", async () => {
    await putFeed(svc.url, "browser");
    await publish(svc.url, "browser", cloudEvent());
    const reader = await tokenFor(svc.dir, "read:browser");
    const stream = await openStream(`${svc.url}/v1/feeds/browser/events?access_token=${reader}`, {
      authorization: "",
    });
    try {
      assert.equal(stream.status, 200);
      await stream.waitFor((text) => text.includes("id: 1\n"));
    } finally {
      stream.close();
    }
    const json = await call(`${svc.url}/v1/feeds/browser/events?access_token=${reader}`, {
      headers: { authorization: "" },
    });
    assert.equal(json.status, 401, "not on the JSON feed");
    assert.match(
      json.body.detail,
      /access_token is taken on streams only/,
      "says why, not 'header malformed'",
    );
    const elsewhere = await call(`${svc.url}/v1/feeds/browser?access_token=${reader}`, {
      headers: { authorization: "" },
    });
    assert.equal(elsewhere.status, 401);
    const forbidden = await openStream(`${svc.url}/v1/feeds/history/events?access_token=${reader}`, {
      authorization: "",
    });
    assert.equal(forbidden.status, 403);
    forbidden.close();
    // The refused stream's request is logged once it is answered: wait for that line before reading the log.
    await eventually(() =>
      svc.logs.some((line) => line.status === 403 && line.path === "/v1/feeds/history/events"),
    );
    const logText = svc.logs.map((line) => JSON.stringify(line)).join("\n");
    assert.ok(!logText.includes(reader.split(".")[1]!), "the token is not in the log");
    assert.ok(!logText.includes("access_token"), "nor the parameter");
  });

  it("ends shortly before the token expires, after event: token-expiring", async () => {
    await putFeed(svc.url, "expiring");
    const shortLived = await tokenFor(svc.dir, "read:expiring", { ttlSeconds: 7 });
    const started = Date.now();
    const stream = await openStream(`${svc.url}/v1/feeds/expiring/events`, {
      authorization: `Bearer ${shortLived}`,
    });
    await stream.closed;
    const elapsed = Date.now() - started;
    assert.match(stream.text(), /event: token-expiring\ndata: \{"expiresAt":"[^"]+"\}\n\n$/);
    assert.ok(elapsed >= 1000 && elapsed < 6500, `ended after ${elapsed} ms`);
  });

  it("writes its body as exact HTTP/1.1 chunks, and unchunked to an HTTP/1.0 client", async () => {
    await putFeed(svc.url, "framed");
    await publish(svc.url, "framed", cloudEvent({ id: "framed-1" }));
    const port = Number(new URL(svc.url).port);
    /** A raw connection: answers the bytes after the head once `done` holds for the body so far. */
    const rawStream = async (version: string, done: (body: Buffer) => boolean) => {
      const socket = connect(port, "127.0.0.1");
      const chunks: Buffer[] = [];
      socket.on("data", (chunk: Buffer) => chunks.push(chunk));
      socket.write(
        `GET /v1/feeds/framed/events HTTP/${version}\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n` +
          `Authorization: Bearer ${token}\r\n\r\n`,
      );
      const split = () => {
        const all = Buffer.concat(chunks);
        const end = all.indexOf("\r\n\r\n");
        return end === -1
          ? undefined
          : { head: all.subarray(0, end).toString(), body: all.subarray(end + 4) };
      };
      const deadline = Date.now() + 10_000;
      let published = false;
      for (;;) {
        const answer = split();
        if (answer && done(answer.body)) {
          socket.destroy();
          return answer;
        }
        assert.ok(Date.now() < deadline, `no complete answer: ${Buffer.concat(chunks).toString()}`);
        // The live event follows once the stored one is through, so that both ways of writing are seen.
        if (answer && !published && answer.body.includes("framed-1")) {
          published = true;
          await publish(svc.url, "framed", cloudEvent({ id: "framed-live" }));
        }
        await pause(20);
      }
    };
    /** Decodes a chunked body strictly (RFC 9112, 7.1): every size matches its bytes, every chunk ends in CRLF. */
    const dechunk = (body: Buffer) => {
      const messages: string[] = [];
      let at = 0;
      while (at < body.length) {
        const line = body.indexOf("\r\n", at);
        if (line === -1) break;
        const size = Number.parseInt(body.subarray(at, line).toString(), 16);
        assert.ok(Number.isInteger(size), `a chunk size at byte ${at}`);
        if (line + 2 + size + 2 > body.length) break;
        messages.push(body.subarray(line + 2, line + 2 + size).toString());
        assert.equal(body.subarray(line + 2 + size, line + 4 + size).toString(), "\r\n");
        at = line + 4 + size;
      }
      return messages.join("");
    };
    const ids = /^id: 1\ndata: .*"framed-1".*\n\nid: 2\ndata: .*"framed-live".*\n\n/m;

    const http11 = await rawStream("1.1", (body) => /framed-live/.test(dechunk(body)));
    assert.match(http11.head, /^transfer-encoding: chunked$/im);
    assert.match(dechunk(http11.body), /^retry: 100\n\n/);
    assert.match(dechunk(http11.body), ids);
    assert.ok(!dechunk(http11.body).includes("\r"), "no chunk framing inside the messages");

    const http10 = await rawStream("1.0", (body) => /framed-live.*\n\n/.test(body.toString()));
    assert.doesNotMatch(http10.head, /transfer-encoding/i);
    assert.match(http10.body.toString(), /^retry: 100\n\n/);
    assert.match(http10.body.toString(), ids);
    assert.ok(!http10.body.includes("\r"), "no chunk framing in an HTTP/1.0 body");
  });

  it("keeps a reader that stops reading bounded, and delivers all 5,000 events once, in order", async (t) => {
    await putFeed(svc.url, "slow");
    const port = Number(new URL(svc.url).port);
    const socket = connect(port, "127.0.0.1");
    await new Promise((resolve) => socket.once("connect", resolve));
    let raw = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      raw += chunk;
    });
    socket.write(
      `GET /v1/feeds/slow/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nAuthorization: Bearer ${token}\r\n\r\n`,
    );
    for (let i = 0; i < 100 && !raw.includes("retry:"); i += 1) await pause(10);
    socket.pause();

    // 5,000 events of about 4 KiB: 20 MB, far more than socket buffers and the hub's tail hold.
    const filler = "x".repeat(4000);
    for (let batch = 0; batch < 50; batch += 1) {
      const reply = await publishBatch(
        svc.url,
        "slow",
        Array.from({ length: 100 }, (_, i) =>
          cloudEvent({ id: `slow-${batch * 100 + i}`, data: { filler } }),
        ),
      );
      assert.equal(reply.status, 201);
    }
    const stats = await eventually(
      () => {
        const [open] = [...svc.service.streams];
        return open && open.maxBuffered > 16 * 1024 ? open : undefined;
      },
      5000,
      "the paused connection's buffer filling",
    );
    assert.ok(stats, "the stream is open");
    t.diagnostic(`most bytes buffered for the paused connection: ${stats.maxBuffered}`);
    assert.ok(stats.maxBuffered > 16 * 1024, "the socket pushed back: the test exercised backpressure");
    // The bound: one chunk (64 KiB) plus one event (at most 64 KiB) plus the socket's own 16 KiB buffer.
    assert.ok(stats.maxBuffered <= 160 * 1024, `buffered ${stats.maxBuffered} bytes for one connection`);

    socket.resume();
    const deadline = Date.now() + 30_000;
    while (!raw.includes("id: 5000\n") && Date.now() < deadline) await pause(50);
    socket.destroy();
    const ids = [...raw.matchAll(/^id: (\d+)$/gm)].map((match) => Number(match[1]));
    assert.equal(ids.length, 5000);
    assert.deepEqual(
      ids,
      Array.from({ length: 5000 }, (_, i) => i + 1),
    );
  });
});

describe("shutdown with open streams", () => {
  it("ends every stream with a retry hint", async () => {
    const svc = await startTestService({ SEINTJE_STREAM_RETRY: "1500" });
    const token = await tokenFor(svc.dir, "read");
    await putFeed(svc.url, "closing");
    const streams = await Promise.all(
      [1, 2, 3].map(() =>
        openStream(`${svc.url}/v1/feeds/closing/events`, { authorization: `Bearer ${token}` }),
      ),
    );
    for (const stream of streams) await stream.waitFor((text) => text.startsWith("retry: 1500\n\n"));
    await svc.stop();
    for (const stream of streams) {
      await stream.closed;
      assert.match(stream.text(), /retry: 1500\n\n$/);
      assert.equal(stream.text().match(/retry:/g)?.length, 2);
    }
  });
});
