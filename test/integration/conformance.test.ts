import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, describe, it } from "node:test";
import { call, cloudEvent, publish, publishBatch, putFeed, readPage } from "../support/http.js";
import { sampleValue, scrape } from "../support/metrics.js";
import { startReceiver } from "../support/receiver.js";
import { startTestService, type TestService, tokenFor } from "../support/service.js";
import { openStream } from "../support/sse.js";

/**
 * The conformance details of API version 1.1 (issue #16): CORS, HEAD, the CloudEvents JSON format's nulls and
 * empty batches, no-store on secrets, Expect: 100-continue and the parser's own refusals.
 */

const ORIGIN = "https://console.example.nl";

/** Sends raw bytes on a new connection and collects what comes back until the server closes or `until` holds. */
function rawExchange(
  port: number,
  request: string,
  until: (received: string) => boolean = () => false,
  timeoutMs = 5000,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let received = "";
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms; got: ${JSON.stringify(received)}`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(received);
    };
    socket.on("data", (chunk) => {
      received += chunk.toString("latin1");
      if (until(received)) done();
    });
    socket.on("close", done);
    socket.on("error", done);
    socket.write(request);
  });
}

describe("conformance details", () => {
  let svc: TestService;
  let port: number;
  let token: string;
  before(async () => {
    svc = await startTestService({
      SEINTJE_CORS_ORIGINS: ORIGIN,
      SEINTJE_MAX_STREAMS: "1",
      SEINTJE_CALLBACK_HTTP: "true",
      SEINTJE_CALLBACK_ALLOW: "127.0.0.1",
    });
    port = Number(new URL(svc.url).port);
    token = await tokenFor(svc.dir, "admin");
    await putFeed(svc.url, "conf");
  });
  after(() => svc.stop());

  it("answers a CORS preflight from an allowed origin without a token", async () => {
    const preflight = await call(`${svc.url}/v1/feeds/conf/events`, {
      method: "OPTIONS",
      headers: {
        authorization: "",
        origin: ORIGIN,
        "access-control-request-method": "GET",
        "access-control-request-headers": "authorization, last-event-id",
      },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get("access-control-allow-origin"), ORIGIN);
    const allowed = (preflight.headers.get("access-control-allow-headers") ?? "").toLowerCase();
    for (const header of ["authorization", "content-type", "last-event-id", "if-none-match"]) {
      assert.ok(allowed.includes(header), `${header} in ${allowed}`);
    }
    const methods = preflight.headers.get("access-control-allow-methods") ?? "";
    for (const method of ["GET", "POST"]) assert.ok(methods.includes(method), `${method} in ${methods}`);
    assert.ok(preflight.headers.get("access-control-max-age"));
  });

  it("puts CORS headers on answers to allowed origins only, errors included", async () => {
    const exposed = ["Link", "ETag", "API-Version", "Retry-After", "Location"];
    const asked: Array<Record<string, string>> = [{ origin: ORIGIN }, { origin: ORIGIN, authorization: "" }];
    for (const headers of asked) {
      const reply = await call(`${svc.url}/v1/feeds/conf/events?after=0`, { headers });
      assert.equal(reply.headers.get("access-control-allow-origin"), ORIGIN, `status ${reply.status}`);
      assert.match(reply.headers.get("vary") ?? "", /Origin/);
      const names = (reply.headers.get("access-control-expose-headers") ?? "").toLowerCase();
      for (const name of exposed) assert.ok(names.includes(name.toLowerCase()), `${name} in ${names}`);
    }
    const stranger = await call(`${svc.url}/v1/feeds`, { headers: { origin: "https://elsewhere.example" } });
    assert.equal(stranger.status, 200);
    assert.equal(stranger.headers.get("access-control-allow-origin"), null);
    const strangerPreflight = await call(`${svc.url}/v1/feeds`, {
      method: "OPTIONS",
      headers: {
        authorization: "",
        origin: "https://elsewhere.example",
        "access-control-request-method": "GET",
      },
    });
    assert.equal(strangerPreflight.headers.get("access-control-allow-origin"), null);
    assert.notEqual(strangerPreflight.status, 204);
  });

  it("lets any origin read the OpenAPI document", async () => {
    const reply = await call(`${svc.url}/v1/openapi.json`, {
      headers: { origin: "https://elsewhere.example", authorization: "" },
    });
    assert.equal(reply.status, 200);
    assert.equal(reply.headers.get("access-control-allow-origin"), "*");
  });

  it("answers HEAD on the stream at once with its headers, holding no stream open", async () => {
    for (let round = 0; round < 3; round += 1) {
      const reply = await call(`${svc.url}/v1/feeds/conf/events`, {
        method: "HEAD",
        headers: { accept: "text/event-stream" },
        signal: AbortSignal.timeout(3000),
      });
      assert.equal(reply.status, 200);
      assert.match(reply.headers.get("content-type") ?? "", /^text\/event-stream/);
      assert.equal(reply.text, "");
    }
    assert.equal(sampleValue(await scrape(svc.url), "seintje_streams_open"), 0);
    const missing = await call(`${svc.url}/v1/feeds/nope/events`, {
      method: "HEAD",
      headers: { accept: "text/event-stream" },
      signal: AbortSignal.timeout(3000),
    });
    assert.equal(missing.status, 404, "the same checks as GET");
    // SEINTJE_MAX_STREAMS is 1: the HEADs took no place, so a stream opens.
    const stream = await openStream(`${svc.url}/v1/feeds/conf/events`, { authorization: `Bearer ${token}` });
    try {
      assert.equal(stream.status, 200);
    } finally {
      stream.close();
    }
  });

  it("treats attributes that are null as absent, and stores none of them", async () => {
    const reply = await publish(
      svc.url,
      "conf",
      cloudEvent({ id: "nulls", subject: null, time: null, ext: null }),
    );
    assert.equal(reply.status, 201, reply.text);
    const stored = await call(`${svc.url}/v1/feeds/conf/events/${reply.body.events[0].sequence}`);
    for (const name of ["subject", "time", "ext"]) assert.equal(name in stored.body, false, name);
    const missing = await publish(svc.url, "conf", cloudEvent({ id: null }));
    assert.equal(missing.status, 400);
    assert.deepEqual(
      missing.body.errors.map((error: { pointer: string }) => error.pointer),
      ["/id"],
    );
  });

  it("takes an empty batch as a valid batch that stores nothing", async () => {
    const head = (await call(`${svc.url}/v1/feeds/conf`)).body.head;
    const reply = await publishBatch(svc.url, "conf", []);
    assert.equal(reply.status, 200, reply.text);
    assert.deepEqual(reply.body, { events: [] });
    assert.equal((await call(`${svc.url}/v1/feeds/conf`)).body.head, head);
    assert.equal((await publishBatch(svc.url, "no-such-feed", [])).status, 404);
  });

  it("marks the answers that carry a secret no-store", async () => {
    const receiver = await startReceiver();
    try {
      const created = await call(`${svc.url}/v1/subscriptions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ feed: "conf", url: receiver.url }),
      });
      assert.equal(created.status, 201, created.text);
      assert.equal(created.headers.get("cache-control"), "no-store");
      const rotated = await call(`${svc.url}/v1/subscriptions/${created.body.id}/rotate-secret`, {
        method: "POST",
      });
      assert.equal(rotated.status, 200);
      assert.equal(rotated.headers.get("cache-control"), "no-store");
    } finally {
      await receiver.close();
    }
  });

  it("refuses a request that expects 100-continue before its body is sent, and continues a good one", async () => {
    const request = (path: string, headers: string) =>
      `POST ${path} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Type: application/cloudevents+json\r\n${headers}\r\n`;
    const statusLine = (text: string) => text.split("\r\n")[0];
    const answered = (text: string) => text.includes("\r\n\r\n") && !text.startsWith("HTTP/1.1 100");
    for (const [path, headers, status] of [
      ["/v1/feeds/conf/events", "Content-Length: 100\r\n", "401"],
      ["/v1/feeds/conf/events", `Authorization: Bearer ${token}\r\nContent-Length: 99999999\r\n`, "413"],
      ["/v1/feeds/no-such-feed/events", `Authorization: Bearer ${token}\r\nContent-Length: 100\r\n`, "404"],
    ] as const) {
      const received = await rawExchange(port, request(path, headers), answered);
      assert.equal(
        statusLine(received),
        `HTTP/1.1 ${status} ${status === "401" ? "Unauthorized" : status === "413" ? "Payload Too Large" : "Not Found"}`,
      );
      assert.match(received, /content-type: application\/problem\+json/i);
    }
    const declaration = `PUT /v1/feeds/no-such-feed/types/nl.example.t HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nContent-Length: 100\r\n\r\n`;
    assert.equal(statusLine(await rawExchange(port, declaration, answered)), "HTTP/1.1 404 Not Found");
    const body = JSON.stringify(cloudEvent({ id: "continued" }));
    const waiting = await rawExchange(
      port,
      request(
        "/v1/feeds/conf/events",
        `Authorization: Bearer ${token}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n`,
      ),
      (text) => text.includes("\r\n\r\n"),
    );
    assert.equal(statusLine(waiting), "HTTP/1.1 100 Continue");
    const socket = connect(port, "127.0.0.1");
    try {
      const final = await new Promise<string>((resolve, reject) => {
        let received = "";
        const timer = setTimeout(() => reject(new Error(received)), 5000);
        let sent = false;
        socket.on("data", (chunk) => {
          received += chunk;
          // The body follows the 100, on a connection the client keeps open both ways: a half-closed one would
          // make Node's server abort the request it is still answering.
          if (!sent && received.startsWith("HTTP/1.1 100 Continue\r\n\r\n")) {
            sent = true;
            socket.write(body);
          }
          if (/HTTP\/1\.1 201[\s\S]*\r\n\r\n\{.*\}$/.test(received)) {
            clearTimeout(timer);
            resolve(received);
          }
        });
        socket.write(
          request(
            "/v1/feeds/conf/events",
            `Authorization: Bearer ${token}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n`,
          ),
        );
      });
      assert.match(final, /"id":"continued"/);
    } finally {
      socket.destroy();
    }
  });

  it("answers what the HTTP parser refuses as problem documents with API-Version", async () => {
    const huge = await rawExchange(
      port,
      `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`,
    );
    assert.match(huge, /^HTTP\/1\.1 431 /);
    assert.match(huge, /content-type: application\/problem\+json/i);
    assert.match(huge, /api-version: \d+\.\d+\.\d+/i);
    assert.match(huge, /"type":"urn:seintje:problem:request-headers-too-large"/);
    const malformed = await rawExchange(port, "NOT A REQUEST\r\n\r\n");
    assert.match(malformed, /^HTTP\/1\.1 400 /);
    assert.match(malformed, /content-type: application\/problem\+json/i);
    assert.match(malformed, /api-version: /i);
    // The answer to HEAD has its headers and no content, also when the parser refused the request.
    const headRefused = await rawExchange(port, "HEAD /v1/feeds/\xe4 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.match(headRefused, /^HTTP\/1\.1 400 /);
    assert.match(headRefused, /content-type: application\/problem\+json/i);
    assert.ok(headRefused.endsWith("\r\n\r\n"), headRefused);
    assert.equal((await readPage(svc.url, "conf")).status, 200, "the service goes on");
  });
});
