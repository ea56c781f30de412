import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { CloudEvent, HTTP } from "cloudevents";
import { dropDatabaseOf } from "../support/database.js";
import { call, cloudEvent, publish, publishBatch, putFeed, readAll } from "../support/http.js";
import { startServerProcess } from "../support/process.js";
import { startTestService, type TestService, tempDir } from "../support/service.js";

function pointersOf(body: { errors?: Array<{ pointer: string }> }): string[] {
  return (body.errors ?? []).map((error) => error.pointer);
}

describe("publishing", () => {
  let svc: TestService;
  before(async () => {
    svc = await startTestService();
    for (const feed of ["modes", "validation", "idem", "limits", "slices", "atomic", "warn"])
      await putFeed(svc.url, feed);
  });
  after(() => svc.stop());

  it("takes a structured event and assigns sequence 1, then 2", async () => {
    const first = await publish(svc.url, "modes", cloudEvent({ id: "s-1" }));
    assert.equal(first.status, 201);
    assert.equal(first.headers.get("content-type"), "application/json; charset=utf-8");
    assert.deepEqual(first.body, {
      events: [{ id: "s-1", source: "urn:nld:oin:00000001823288444000:systeem:test", sequence: "1" }],
    });
    const second = await publish(svc.url, "modes", cloudEvent({ id: "s-2" }), {
      "content-type": "application/cloudevents+json; charset=utf-8",
    });
    assert.equal(second.body.events[0].sequence, "2");
  });

  it("takes a batch in order", async () => {
    const reply = await publishBatch(svc.url, "modes", [
      cloudEvent({ id: "b-1" }),
      cloudEvent({ id: "b-2" }),
      cloudEvent({ id: "b-3" }),
    ]);
    assert.equal(reply.status, 201);
    assert.deepEqual(
      reply.body.events.map((event: { id: string; sequence: string }) => [event.id, event.sequence]),
      [
        ["b-1", "3"],
        ["b-2", "4"],
        ["b-3", "5"],
      ],
    );
  });

  it("takes binary mode as the cloudevents SDK sends it", async () => {
    const event = new CloudEvent({
      id: "bin-1",
      source: "urn:nld:oin:00000001823288444000:systeem:test",
      type: "nl.example.zaak.gesloten",
      subject: "zaak-7",
      datacontenttype: "application/json",
      data: { zaak: 7, naam: "Zaak met ü" },
      nlzaaktype: "bezwaar",
    });
    const message = HTTP.binary(event);
    const reply = await call(`${svc.url}/v1/feeds/modes/events`, {
      method: "POST",
      headers: message.headers as Record<string, string>,
      body: message.body as string,
    });
    assert.equal(reply.status, 201, reply.text);
    const stored = await call(`${svc.url}/v1/feeds/modes/events/${reply.body.events[0].sequence}`);
    assert.equal(stored.status, 200);
    assert.equal(stored.body.id, "bin-1");
    assert.equal(stored.body.subject, "zaak-7");
    assert.equal(stored.body.nlzaaktype, "bezwaar");
    assert.deepEqual(stored.body.data, { zaak: 7, naam: "Zaak met ü" });
    assert.equal(stored.body.sequencetype, "Integer");
  });

  it("takes binary mode with text and with opaque bytes, percent-decoding ce- headers", async () => {
    const base = {
      "ce-specversion": "1.0",
      "ce-source": "urn:nld:oin:00000001823288444000:systeem:test",
      "ce-type": "nl.example.document.toegevoegd",
    };
    const text = await call(`${svc.url}/v1/feeds/modes/events`, {
      method: "POST",
      headers: {
        ...base,
        "ce-id": "bin-text",
        "ce-subject": "caf%C3%A9",
        "content-type": "text/plain; charset=utf-8",
      },
      body: "hallo",
    });
    assert.equal(text.status, 201, text.text);
    const storedText = await call(`${svc.url}/v1/feeds/modes/events/${text.body.events[0].sequence}`);
    assert.equal(storedText.body.data, "hallo");
    assert.equal(storedText.body.subject, "café");

    const bytes = Buffer.from([0, 1, 2, 250, 255]);
    const opaque = await call(`${svc.url}/v1/feeds/modes/events`, {
      method: "POST",
      headers: { ...base, "ce-id": "bin-bytes", "content-type": "application/octet-stream" },
      body: bytes,
    });
    assert.equal(opaque.status, 201);
    const storedBytes = await call(`${svc.url}/v1/feeds/modes/events/${opaque.body.events[0].sequence}`);
    assert.equal(storedBytes.body.data_base64, bytes.toString("base64"));
    assert.equal(storedBytes.body.data, undefined);
  });

  it("points binary-mode errors at the attribute's structured path", async () => {
    const reply = await call(`${svc.url}/v1/feeds/validation/events`, {
      method: "POST",
      headers: {
        "ce-specversion": "1.0",
        "ce-id": "x",
        "ce-source": "/s",
        "ce-type": "Bad",
        "ce-time": "noon",
      },
      body: "",
    });
    assert.equal(reply.status, 400);
    assert.deepEqual(pointersOf(reply.body).sort(), ["/time", "/type"]);
    const badJson = await call(`${svc.url}/v1/feeds/validation/events`, {
      method: "POST",
      headers: {
        "ce-specversion": "1.0",
        "ce-id": "x",
        "ce-source": "/s",
        "ce-type": "nl.a.b",
        "content-type": "application/json",
      },
      body: "{broken",
    });
    assert.equal(badJson.status, 400);
    assert.deepEqual(pointersOf(badJson.body), ["/data"]);
  });

  it("refuses invalid events with errors pointing into the request, storing nothing", async () => {
    const single = await publish(svc.url, "validation", cloudEvent({ type: "Created", sequence: "9" }));
    assert.equal(single.status, 400);
    assert.equal(single.headers.get("content-type"), "application/problem+json");
    assert.equal(single.body.type, "urn:seintje:problem:validation");
    assert.equal(single.body.status, 400);
    assert.deepEqual(pointersOf(single.body).sort(), ["/sequence", "/type"]);

    const batch = await publishBatch(svc.url, "validation", [
      cloudEvent(),
      cloudEvent(),
      cloudEvent(),
      cloudEvent({ type: undefined }),
      cloudEvent({ sequencetype: "Integer" }),
    ]);
    assert.equal(batch.status, 400);
    assert.deepEqual(pointersOf(batch.body), ["/3/type", "/4/sequencetype"]);

    const notJson = await call(`${svc.url}/v1/feeds/validation/events`, {
      method: "POST",
      headers: { "content-type": "application/cloudevents+json" },
      body: "{",
    });
    assert.equal(notJson.status, 400);
    const notArray = await publishBatch(svc.url, "validation", {} as unknown[]);
    assert.equal(notArray.status, 400);

    const feed = await call(`${svc.url}/v1/feeds/validation`);
    assert.equal(feed.body.head, "0");
  });

  it("answers 415 for a body in no CloudEvents mode", async () => {
    const reply = await call(`${svc.url}/v1/feeds/validation/events`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(cloudEvent()),
    });
    assert.equal(reply.status, 415);
    assert.equal(reply.headers.get("content-type"), "application/problem+json");
    const gzip = await call(`${svc.url}/v1/feeds/validation/events`, {
      method: "POST",
      headers: { "content-type": "application/cloudevents+json", "content-encoding": "gzip" },
      body: "xx",
    });
    assert.equal(gzip.status, 415);
  });

  it("returns an identical repeat with its original sequence and 200, storing nothing", async () => {
    const event = cloudEvent({ id: "idem-1", data: { a: 1, b: [1, 2] } });
    const first = await publish(svc.url, "idem", event);
    assert.equal(first.status, 201);
    // The same content with its keys in another order is the same event.
    const reordered = Object.fromEntries(Object.entries(event).reverse());
    const again = await publish(svc.url, "idem", reordered);
    assert.equal(again.status, 200);
    assert.deepEqual(again.body, first.body);
    const feed = await call(`${svc.url}/v1/feeds/idem`);
    assert.equal(feed.body.head, "1");

    // A batch of a repeat and a new event: 201, the repeat keeps its sequence.
    const mixed = await publishBatch(svc.url, "idem", [event, cloudEvent({ id: "idem-2" })]);
    assert.equal(mixed.status, 201);
    assert.deepEqual(
      mixed.body.events.map((e: { sequence: string }) => e.sequence),
      ["1", "2"],
    );
    // The same id from another source is another event.
    const otherSource = await publish(svc.url, "idem", { ...event, source: "urn:nld:oin:1:systeem:ander" });
    assert.equal(otherSource.status, 201);
    assert.equal(otherSource.body.events[0].sequence, "3");
  });

  it("answers 409 for the same (source, id) with other content, storing nothing", async () => {
    const event = cloudEvent({ id: "idem-conflict" });
    assert.equal((await publish(svc.url, "idem", event)).status, 201);
    const head = (await call(`${svc.url}/v1/feeds/idem`)).body.head;
    const conflict = await publish(svc.url, "idem", { ...event, data: { changed: true } });
    assert.equal(conflict.status, 409);
    assert.equal(conflict.body.type, "urn:seintje:problem:idempotency-conflict");
    assert.deepEqual(pointersOf(conflict.body), ["/id"]);

    const batch = await publishBatch(svc.url, "idem", [
      cloudEvent({ id: "idem-new" }),
      { ...event, subject: "x" },
    ]);
    assert.equal(batch.status, 409);
    assert.deepEqual(pointersOf(batch.body), ["/1/id"]);
    assert.equal((await call(`${svc.url}/v1/feeds/idem`)).body.head, head, "the batch is all or nothing");

    const twiceInOneBatch = await publishBatch(svc.url, "idem", [
      cloudEvent({ id: "dup-in-batch" }),
      cloudEvent({ id: "dup-in-batch", data: { other: 1 } }),
    ]);
    assert.equal(twiceInOneBatch.status, 409);
    assert.deepEqual(pointersOf(twiceInOneBatch.body), ["/1/id"]);
  });

  it("enforces the size limits with 413", async () => {
    const big = await publish(svc.url, "limits", cloudEvent({ data: { blob: "x".repeat(64 * 1024) } }));
    assert.equal(big.status, 413);
    assert.equal(big.body.type, "urn:seintje:problem:payload-too-large");

    const inBatch = await publishBatch(svc.url, "limits", [
      cloudEvent(),
      cloudEvent({ data: { blob: "x".repeat(64 * 1024) } }),
    ]);
    assert.equal(inBatch.status, 413);
    assert.deepEqual(pointersOf(inBatch.body), ["/1"]);

    const tooMany = await publishBatch(
      svc.url,
      "limits",
      Array.from({ length: 1001 }, () => cloudEvent({ data: null })),
    );
    assert.equal(tooMany.status, 413);

    const tooBig = await publishBatch(
      svc.url,
      "limits",
      Array.from({ length: 20 }, () => cloudEvent({ data: { blob: "y".repeat(60 * 1024) } })),
    );
    assert.equal(tooBig.status, 413);

    const exactlyAtLimit = await publishBatch(
      svc.url,
      "limits",
      Array.from({ length: 1000 }, () => cloudEvent({ data: null })),
    );
    assert.equal(exactlyAtLimit.status, 201);
    assert.equal((await call(`${svc.url}/v1/feeds/limits`)).body.head, "1000");
  });

  it("finds repeats and conflicts anywhere in a batch of 1,000 (stored and looked up in slices)", async () => {
    const events = Array.from({ length: 1000 }, (_, index) =>
      cloudEvent({ id: `slice-${index}`, data: { index } }),
    );
    const first = await publishBatch(svc.url, "slices", events);
    assert.equal(first.status, 201);
    assert.deepEqual(
      first.body.events.map((event: { sequence: string }) => event.sequence),
      events.map((_, index) => String(index + 1)),
    );
    // Every event again: each is a repeat at its own sequence, nothing is stored.
    const again = await publishBatch(svc.url, "slices", events);
    assert.equal(again.status, 200);
    assert.deepEqual(again.body, first.body);
    // 998 repeats, one new event and, last, one stored event with other content: 409 for it alone, nothing stored.
    const mixed = [
      ...events.slice(0, 998),
      cloudEvent({ id: "slice-new" }),
      { ...events[999], data: { index: -1 } },
    ];
    const conflict = await publishBatch(svc.url, "slices", mixed);
    assert.equal(conflict.status, 409);
    assert.deepEqual(pointersOf(conflict.body), ["/999/id"]);
    assert.equal((await call(`${svc.url}/v1/feeds/slices`)).body.head, "1000");
    const page = await call(`${svc.url}/v1/feeds/slices/events?after=744&limit=20`);
    assert.deepEqual(
      page.body.events.map((event: { id: string }) => event.id),
      Array.from({ length: 20 }, (_, index) => `slice-${744 + index}`),
    );
  });

  it("reports NL GOV profile warnings without refusing", async () => {
    const reply = await publish(svc.url, "warn", cloudEvent({ source: "https://example.org/zaken" }));
    assert.equal(reply.status, 201);
    assert.deepEqual(reply.body.warnings, [{ pointer: "/source", detail: reply.body.warnings[0].detail }]);
    assert.match(reply.body.warnings[0].detail, /urn:nld/);
    const clean = await publish(svc.url, "warn", cloudEvent());
    assert.equal(clean.body.warnings, undefined);
  });

  it("stores events as published, with sequence and sequencetype added", async () => {
    const event = cloudEvent({
      id: "as-published",
      comexampleext: 5,
      data: { nested: { deep: [1, "2", null] } },
    });
    await putFeed(svc.url, "as-is");
    await publish(svc.url, "as-is", event);
    const [stored] = await readAll(svc.url, "as-is");
    assert.deepEqual(stored, { ...event, sequence: "1", sequencetype: "Integer" });
  });
});

describe("publishing with SEINTJE_AUTO_CREATE_FEEDS", () => {
  it("creates the feed on its first publish", async () => {
    const svc = await startTestService({ SEINTJE_AUTO_CREATE_FEEDS: "true" });
    try {
      const reply = await publish(svc.url, "brand-new", cloudEvent());
      assert.equal(reply.status, 201);
      assert.equal(reply.body.events[0].sequence, "1");
      const feed = await call(`${svc.url}/v1/feeds/brand-new`);
      assert.equal(feed.body.head, "1");
    } finally {
      await svc.stop();
    }
  });
});

/** Sends `bodies` as publish requests over as many connections, written in one go once all are connected. */
async function publishAtOnce(
  base: string,
  feed: string,
  bodies: string[],
): Promise<Array<{ status: number; body: any }>> {
  const { hostname, port } = new URL(base);
  const sockets = await Promise.all(
    bodies.map(
      () =>
        new Promise<Socket>((resolve, reject) => {
          const socket = connect(Number(port), hostname, () => resolve(socket));
          socket.once("error", reject);
        }),
    ),
  );
  const replies = sockets.map(
    (socket) =>
      new Promise<{ status: number; body: any }>((resolve, reject) => {
        const chunks: Buffer[] = [];
        socket.on("data", (chunk: Buffer) => chunks.push(chunk));
        socket.once("error", reject);
        socket.once("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          const [head, body] = text.split("\r\n\r\n");
          resolve({ status: Number(head!.split(" ")[1]), body: JSON.parse(body!) });
        });
      }),
  );
  bodies.forEach((body, index) => {
    sockets[index]!.write(
      `POST /v1/feeds/${feed}/events HTTP/1.1\r\nHost: ${hostname}\r\nConnection: close\r\n` +
        `Content-Type: application/cloudevents+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  });
  return Promise.all(replies);
}

describe("group commit", () => {
  it("commits requests that arrive together in one transaction, each still answered with its own sequence", async () => {
    // A process of its own, as in production: in this process the test's client would share the event loop
    // with the server and could not send while a commit blocks it.
    const dir = tempDir();
    const server = await startServerProcess({
      SEINTJE_DATA_DIR: dir,
      SEINTJE_LOG_LEVEL: "debug",
      SEINTJE_AUTH: "off",
    });
    try {
      assert.equal((await putFeed(server.url, "grouped")).status, 201);
      // Requests sent at once reach a freshly started server over a few turns of its event loop; a hundred make
      // it all but certain that some of them arrive in one turn, also on a loaded machine (with forty, once in
      // many runs every request came alone).
      const count = 100;
      const bodies = Array.from({ length: count }, () => JSON.stringify(cloudEvent()));
      const replies = await publishAtOnce(server.url, "grouped", bodies);
      assert.deepEqual(
        replies.map((reply) => reply.status),
        replies.map(() => 201),
      );
      const sequences = replies.map((reply) => Number(reply.body.events[0].sequence));
      assert.deepEqual(
        [...sequences].sort((x, y) => x - y),
        Array.from({ length: count }, (_, index) => index + 1),
      );
      const groups = server.lines
        .filter((line) => line.includes('"group committed"'))
        .map((line) => JSON.parse(line) as { requests: number });
      const requests = groups.map((line) => line.requests);
      assert.equal(
        requests.reduce((sum, requested) => sum + requested, 0),
        count,
      );
      // At least some requests shared a commit. (Measured: on PostgreSQL 7 commits of 100; on SQLite, whose commit
      // blocks the event loop while it syncs, 21 to 69 of 100 in a freshly started process.)
      console.log(`${count} requests sent at once took ${groups.length} commits`);
      assert.ok(groups.length < count, `${count} requests sent at once took ${groups.length} commits`);
      assert.ok(Math.max(...requests) > 1);
    } finally {
      server.child.kill("SIGTERM");
      await server.exited;
      rmSync(dir, { recursive: true, force: true });
      await dropDatabaseOf(dir);
    }
  });
});
