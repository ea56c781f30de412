import assert from "node:assert/strict";
import { request } from "node:http";
import { after, before, describe, it } from "node:test";
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import { call, cloudEvent, publishBatch, putFeed } from "../support/http.js";
import { heldLongPolls } from "../support/metrics.js";
import { startTestService, type TestService, tokenFor } from "../support/service.js";
import { openStream } from "../support/sse.js";
import { eventually } from "../support/wait.js";

/**
 * Version 1.1 "Caching, public feeds and compression": public feeds read without a token, strong ETags and 304s,
 * Cache-Control by what can change, canonical Link URLs, and compressed JSON that decodes to the same JSON.
 */

const ANONYMOUS = { authorization: "" };
const YEAR = "max-age=31536000, immutable";

/** A GET over node:http, which (unlike fetch) hands over the bytes as sent, compressed or not. */
function rawGet(
  url: string,
  headers: Record<string, string>,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; bytes: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () =>
        resolve({ status: res.statusCode!, headers: res.headers, bytes: Buffer.concat(chunks) }),
      );
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

describe("public feeds", () => {
  let svc: TestService;
  before(async () => {
    svc = await startTestService();
    assert.equal(
      (await putFeed(svc.url, "open-data", { public: true, description: "open" })).body.public,
      true,
    );
    await putFeed(svc.url, "closed");
    await publishBatch(svc.url, "open-data", [cloudEvent(), cloudEvent()]);
    await publishBatch(svc.url, "closed", [cloudEvent()]);
    await call(`${svc.url}/v1/feeds/open-data/types/nl.example.zaak.aangemaakt`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
  });
  after(() => svc.stop());

  it("lets anyone read a public feed's GET paths, the stream included", async () => {
    for (const path of [
      "/v1/feeds/open-data",
      "/v1/feeds/open-data/events?after=0",
      "/v1/feeds/open-data/events/1",
      "/v1/feeds/open-data/types",
      "/v1/feeds/open-data/types/nl.example.zaak.aangemaakt",
      "/v1/feeds/open-data/asyncapi.json",
    ]) {
      const reply = await call(`${svc.url}${path}`, { headers: ANONYMOUS });
      assert.equal(reply.status, 200, `${path}: ${reply.text}`);
    }
    const stream = await openStream(`${svc.url}/v1/feeds/open-data/events?after=0`, {});
    try {
      assert.equal(stream.status, 200);
      await stream.waitFor((text) => text.includes("id: 2\n"), 5000);
    } finally {
      stream.close();
    }
  });

  it("keeps everything else closed, and a private or unknown feed looks the same without a token", async () => {
    for (const path of [
      "/v1/feeds/closed",
      "/v1/feeds/closed/events",
      "/v1/feeds/no-such-feed/events",
      "/v1/feeds",
    ]) {
      const reply = await call(`${svc.url}${path}`, { headers: ANONYMOUS });
      assert.equal(reply.status, 401, path);
      assert.equal(reply.headers.get("cache-control"), "no-store");
    }
    const publish = await call(`${svc.url}/v1/feeds/open-data/events`, {
      method: "POST",
      headers: { ...ANONYMOUS, "content-type": "application/cloudevents+json" },
      body: JSON.stringify(cloudEvent()),
    });
    assert.equal(publish.status, 401, "publishing to a public feed still needs a grant");
    const declare = await call(`${svc.url}/v1/feeds/open-data/types/nl.example.x`, {
      method: "PUT",
      headers: { ...ANONYMOUS, "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(declare.status, 401);
    const subscribe = await call(`${svc.url}/v1/subscriptions`, {
      method: "POST",
      headers: { ...ANONYMOUS, "content-type": "application/json" },
      body: JSON.stringify({ feed: "open-data", url: "https://example.com/" }),
    });
    assert.equal(subscribe.status, 401);
    const streamClosed = await openStream(`${svc.url}/v1/feeds/closed/events`, {});
    assert.equal(streamClosed.status, 401);
    streamClosed.close();
  });

  it("still verifies a token that is sent, and lets one without a grant here read a public feed", async () => {
    const bad = await call(`${svc.url}/v1/feeds/open-data/events`, {
      headers: { authorization: "Bearer nonsense" },
    });
    assert.equal(bad.status, 401);
    const other = { authorization: `Bearer ${await tokenFor(svc.dir, "read:closed")}` };
    assert.equal((await call(`${svc.url}/v1/feeds/open-data/events`, { headers: other })).status, 200);
    assert.equal((await call(`${svc.url}/v1/feeds/closed/events`, { headers: other })).status, 200);
    const elsewhere = { authorization: `Bearer ${await tokenFor(svc.dir, "read:elsewhere")}` };
    assert.equal((await call(`${svc.url}/v1/feeds/closed/events`, { headers: elsewhere })).status, 403);
  });

  it("closes a feed again when public is set back to false", async () => {
    await putFeed(svc.url, "toggled", { public: true });
    assert.equal((await call(`${svc.url}/v1/feeds/toggled/events`, { headers: ANONYMOUS })).status, 200);
    assert.equal((await putFeed(svc.url, "toggled", {})).body.public, false, "absent means not public");
    assert.equal((await call(`${svc.url}/v1/feeds/toggled/events`, { headers: ANONYMOUS })).status, 401);
    assert.equal((await putFeed(svc.url, "toggled", { public: "yes" })).status, 400);
  });
});

describe("validators and Cache-Control", () => {
  let svc: TestService;
  before(async () => {
    svc = await startTestService();
    await putFeed(svc.url, "public-log", { public: true });
    await putFeed(svc.url, "private-log");
    await putFeed(svc.url, "retained", { public: true, retention: { maxEvents: 100 } });
    for (const feed of ["public-log", "private-log", "retained"]) {
      await publishBatch(
        svc.url,
        feed,
        [1, 2, 3, 4, 5].map(() => cloudEvent()),
      );
    }
  });
  after(() => svc.stop());

  const page = (feed: string, query: string, headers: Record<string, string> = {}) =>
    call(`${svc.url}/v1/feeds/${feed}/events?${query}`, { headers });

  it("gives a page a strong ETag and answers If-None-Match with 304, the same ETag and Cache-Control", async () => {
    const first = await page("public-log", "after=1&limit=2");
    assert.equal(first.status, 200);
    const tag = first.headers.get("etag")!;
    assert.match(tag, /^"[^"]+"$/, "strong: no W/");
    const again = await page("public-log", "after=1&limit=2");
    assert.equal(again.headers.get("etag"), tag, "the same page has the same tag");
    assert.equal(again.text, first.text);
    const revalidated = await page("public-log", "after=1&limit=2", { "if-none-match": tag });
    assert.equal(revalidated.status, 304);
    assert.equal(revalidated.text, "");
    assert.equal(revalidated.headers.get("etag"), tag);
    assert.equal(revalidated.headers.get("cache-control"), first.headers.get("cache-control"));
    const listed = await page("public-log", "after=1&limit=2", { "if-none-match": `"other", W/${tag}` });
    assert.equal(listed.status, 304, "a list, and a weak form of the tag, match too");
    const changed = await page("public-log", "after=1&limit=2", { "if-none-match": '"other"' });
    assert.equal(changed.status, 200);
    assert.notEqual((await page("public-log", "after=2&limit=2")).headers.get("etag"), tag);
  });

  it("gives a single event a strong ETag, a 304, and a year", async () => {
    const event = await call(`${svc.url}/v1/feeds/private-log/events/3`);
    const tag = event.headers.get("etag")!;
    assert.match(tag, /^"[^"]+"$/);
    assert.equal(event.headers.get("cache-control"), `private, ${YEAR}`);
    const revalidated = await call(`${svc.url}/v1/feeds/private-log/events/3`, {
      headers: { "if-none-match": tag },
    });
    assert.equal(revalidated.status, 304);
    assert.equal(revalidated.headers.get("cache-control"), `private, ${YEAR}`);
    const shared = await call(`${svc.url}/v1/feeds/public-log/events/3`);
    assert.equal(shared.headers.get("cache-control"), `public, ${YEAR}`);
  });

  it("makes a complete page immutable, the page at the head short-lived or no-cache, and varies on Accept and Accept-Encoding", async () => {
    const complete = await page("public-log", "after=1&limit=2");
    assert.equal(complete.body.next, "3");
    assert.equal(complete.headers.get("cache-control"), `public, ${YEAR}`);
    const vary = (complete.headers.get("vary") ?? "").toLowerCase();
    assert.match(vary, /\baccept\b/);
    assert.match(vary, /\baccept-encoding\b/);
    assert.equal(
      (await page("private-log", "after=1&limit=2")).headers.get("cache-control"),
      `private, ${YEAR}`,
    );

    const atHead = await page("public-log", "after=3");
    assert.equal(atHead.body.next, atHead.body.head);
    assert.equal(atHead.headers.get("cache-control"), "public, max-age=2");
    assert.equal((await page("private-log", "after=3")).headers.get("cache-control"), "private, no-cache");
    const empty = await page("public-log", "after=5");
    assert.deepEqual(empty.body.events, []);
    assert.equal(empty.headers.get("cache-control"), "public, max-age=0, must-revalidate");

    const fromStart = await page("retained", "limit=2");
    assert.equal(fromStart.body.next, "2");
    assert.equal(
      fromStart.headers.get("cache-control"),
      "public, max-age=2",
      "from the start of a feed with retention, a page changes as retention removes events",
    );
    assert.equal((await page("retained", "after=1&limit=2")).headers.get("cache-control"), `public, ${YEAR}`);
  });

  it("marks every error no-store", async () => {
    for (const [path, status] of [
      ["/v1/feeds/public-log/events?after=x", 400],
      ["/v1/feeds/public-log/events?after=99", 400],
      ["/v1/feeds/public-log/events/99", 404],
      ["/v1/feeds/missing/events", 404],
    ] as const) {
      const reply = await call(`${svc.url}${path}`);
      assert.equal(reply.status, status, path);
      assert.equal(reply.headers.get("cache-control"), "no-store", path);
    }
  });

  it("writes Link URLs with their parameters in one order, so one page has one URL", async () => {
    const a = await page("public-log", "type=nl.b&subject=s&limit=2&type=nl.a&after=1&wait=0");
    const b = await page("public-log", "after=1&wait=0&subject=s&type=nl.a&limit=2&type=nl.b&type=nl.a");
    const link = a.headers.get("link");
    assert.equal(link, b.headers.get("link"));
    assert.match(
      link!,
      /\/v1\/feeds\/public-log\/events\?after=\d+&limit=2&type=nl\.a&type=nl\.b&subject=s&wait=0>; rel="next"$/,
    );
  });

  it("compresses JSON of 1 KiB or more with brotli or gzip, to the same JSON, and never a stream", async () => {
    await putFeed(svc.url, "big", { public: true });
    await publishBatch(
      svc.url,
      "big",
      Array.from({ length: 50 }, () => cloudEvent({ data: { text: "x".repeat(200) } })),
    );
    const url = `${svc.url}/v1/feeds/big/events?after=0&limit=50`;
    const plain = await rawGet(url, {});
    assert.equal(plain.headers["content-encoding"], undefined);
    const expected = JSON.parse(plain.bytes.toString("utf8"));
    const gzip = await rawGet(url, { "accept-encoding": "gzip" });
    assert.equal(gzip.headers["content-encoding"], "gzip");
    assert.deepEqual(JSON.parse(gunzipSync(gzip.bytes).toString("utf8")), expected);
    assert.ok(
      gzip.bytes.length < plain.bytes.length / 4,
      `${gzip.bytes.length} of ${plain.bytes.length} bytes`,
    );
    const br = await rawGet(url, { "accept-encoding": "gzip, br" });
    assert.equal(br.headers["content-encoding"], "br");
    assert.deepEqual(JSON.parse(brotliDecompressSync(br.bytes).toString("utf8")), expected);
    // These two alone, whatever the runtime's zlib offers (Node 22.15 and later have zstd, which koa-compress
    // prefers to both): what Chromium asks for gets brotli, and zstd alone the bytes as they are.
    const browser = await rawGet(url, { "accept-encoding": "gzip, deflate, br, zstd" });
    assert.equal(browser.headers["content-encoding"], "br");
    const zstd = await rawGet(url, { "accept-encoding": "zstd" });
    assert.equal(zstd.headers["content-encoding"], undefined);

    // One tag per representation; revalidating with the compressed one's tag works.
    assert.notEqual(gzip.headers.etag, plain.headers.etag);
    assert.match(String(gzip.headers.etag), /-gzip"$/);
    const revalidated = await rawGet(url, {
      "accept-encoding": "gzip",
      "if-none-match": String(gzip.headers.etag),
    });
    assert.equal(revalidated.status, 304);

    const small = await rawGet(`${svc.url}/v1/feeds/big`, { "accept-encoding": "gzip" });
    assert.equal(small.headers["content-encoding"], undefined, "under 1 KiB stays as it is");

    const stream = await openStream(`${svc.url}/v1/feeds/big/events?after=0`, {
      "accept-encoding": "gzip, br",
    });
    try {
      assert.equal(stream.headers.get("content-encoding"), null);
      await stream.waitFor((text) => text.includes("id: 50\n"), 5000);
    } finally {
      stream.close();
    }
  });

  it("compresses a JSON answer the same when the request's Accept names text/event-stream too", async () => {
    // Any GET that names text/event-stream takes the stream path through the middleware (app.ts); one that is not
    // a stream was answered there with the compressor's internals serialized as JSON.
    await putFeed(svc.url, "negotiated", { public: true });
    for (const path of ["/v1/openapi.json", "/v1/feeds/negotiated/asyncapi.json"]) {
      const expected = JSON.parse((await rawGet(`${svc.url}${path}`, {})).bytes.toString("utf8"));
      for (const accept of ["text/event-stream", "text/event-stream, application/json"]) {
        const gzip = await rawGet(`${svc.url}${path}`, { accept, "accept-encoding": "gzip" });
        assert.equal(gzip.status, 200);
        assert.equal(gzip.headers["content-encoding"], "gzip");
        assert.deepEqual(JSON.parse(gunzipSync(gzip.bytes).toString("utf8")), expected, `${path}, ${accept}`);
      }
    }
  });
});

describe("woken long-polls", () => {
  let svc: TestService;
  before(async () => {
    svc = await startTestService();
    await putFeed(svc.url, "woken", { public: true });
    await publishBatch(svc.url, "woken", [cloudEvent()]);
  });
  after(() => svc.stop());

  /** What must be the same whichever way a page was answered. */
  const answer = (reply: Awaited<ReturnType<typeof rawGet>>) => ({
    status: reply.status,
    type: reply.headers["content-type"],
    encoding: reply.headers["content-encoding"],
    etag: reply.headers.etag,
    cacheControl: reply.headers["cache-control"],
    link: reply.headers.link,
    vary: reply.headers.vary,
    apiVersion: reply.headers["api-version"],
    bytes: reply.bytes.length,
  });

  it("answers as a read through the middleware does: the same headers and bytes, compressed once per encoding", async () => {
    const url = `${svc.url}/v1/feeds/woken/events?after=1&limit=20&wait=30`;
    const encodings = ["", "gzip", "gzip, deflate, br", "br;q=0.1, gzip", "zstd, gzip"];
    const waiting = encodings.map((encoding) =>
      rawGet(url, { "accept-encoding": encoding, origin: "https://console.example" }),
    );
    assert.equal(await heldLongPolls(svc.url, encodings.length), encodings.length, "every long-poll waits");
    await eventually(() => svc.service.bus.waiting === 1, 5000, "one wait: they ask for the same page");
    // Twenty events of about 300 bytes: a page well over the 1 KiB from which answers are compressed.
    await publishBatch(
      svc.url,
      "woken",
      Array.from({ length: 20 }, () => cloudEvent({ data: { text: "y".repeat(200) } })),
    );
    const woken = await Promise.all(waiting);
    // The same URL again: the events are there, so it is answered at once, through Koa.
    const direct = await Promise.all(
      encodings.map((encoding) =>
        rawGet(url, { "accept-encoding": encoding, origin: "https://console.example" }),
      ),
    );
    const expected = [undefined, "gzip", "br", "gzip", "gzip"];
    woken.forEach((reply, index) => {
      assert.deepEqual(answer(reply), answer(direct[index]!), `Accept-Encoding: ${encodings[index]}`);
      assert.equal(reply.headers["content-encoding"], expected[index]);
      // Koa streams what it compresses; a woken long-poll's answer was compressed before, so its length is known.
      assert.equal(Number(reply.headers["content-length"]), reply.bytes.length);
      const json = (bytes: Buffer, encoding: string | string[] | undefined) =>
        JSON.parse(
          (encoding === "br"
            ? brotliDecompressSync(bytes)
            : encoding === "gzip"
              ? gunzipSync(bytes)
              : bytes
          ).toString("utf8"),
        );
      const page = json(reply.bytes, reply.headers["content-encoding"]);
      assert.deepEqual(page, json(direct[index]!.bytes, direct[index]!.headers["content-encoding"]));
      assert.equal(page.events.length, 20);
      assert.equal(page.next, "21");
    });
    assert.ok(woken[2]!.bytes.length < woken[0]!.bytes.length / 4, "brotli made the page smaller");
  });

  it("answers a long-poll whose feed is deleted while it waits with the problem, as the middleware would", async () => {
    await putFeed(svc.url, "revalidated", { public: true });
    await publishBatch(svc.url, "revalidated", [cloudEvent(), cloudEvent()]);
    const waiting = rawGet(`${svc.url}/v1/feeds/revalidated/events?after=2&wait=30`, {});
    for (let i = 0; i < 250 && svc.service.bus.waiting < 1; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(svc.service.bus.waiting, 1);
    assert.equal((await call(`${svc.url}/v1/feeds/revalidated`, { method: "DELETE" })).status, 204);
    const gone = await waiting;
    assert.equal(gone.status, 404);
    assert.equal(gone.headers["content-type"], "application/problem+json");
    assert.equal(gone.headers["cache-control"], "no-store");
    assert.ok(gone.headers["api-version"]);
    assert.equal(JSON.parse(gone.bytes.toString("utf8")).status, 404);
  });
});
