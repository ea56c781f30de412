import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { MAX_PAGE_BYTES } from "../../src/log/bounds.js";
import { call, cloudEvent, publish, publishBatch, putFeed, readAll, readPage } from "../support/http.js";
import { heldLongPolls, scrape } from "../support/metrics.js";
import { startTestService, type TestService } from "../support/service.js";
import { eventually, pause, watched } from "../support/wait.js";

const sequences = (events: any[]) => events.map((event) => Number(event.sequence));

describe("reading the pull feed", () => {
  let svc: TestService;
  before(async () => {
    svc = await startTestService();
    await putFeed(svc.url, "pages");
    await publishBatch(
      svc.url,
      "pages",
      Array.from({ length: 25 }, (_, i) =>
        cloudEvent({
          type:
            i % 5 === 0
              ? "nl.example.zaak.gesloten"
              : i % 2 === 0
                ? "nl.example.document.toegevoegd"
                : "nl.example.zaak.aangemaakt",
          subject: i % 3 === 0 ? "zaak-3" : `zaak-${i}`,
        }),
      ),
    );
    await putFeed(svc.url, "empty");
  });
  after(() => svc.stop());

  it("pages after a cursor with next, head and a Link to the next page", async () => {
    const first = await readPage(svc.url, "pages", "limit=10");
    assert.equal(first.status, 200);
    assert.match(first.headers.get("content-type")!, /^application\/json(;|$)/);
    assert.deepEqual(sequences(first.body.events), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.equal(first.body.next, "10");
    assert.equal(first.body.head, "25");
    assert.equal(
      first.headers.get("link"),
      `<${svc.url}/v1/feeds/pages/events?after=10&limit=10>; rel="next"`,
    );

    const linked = first.headers.get("link")!.match(/^<([^>]+)>/)![1]!;
    const second = await call(linked);
    assert.deepEqual(sequences(second.body.events), [11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
    const last = await readPage(svc.url, "pages", "after=20&limit=10");
    assert.deepEqual(sequences(last.body.events), [21, 22, 23, 24, 25]);
    assert.equal(last.body.next, "25");
    const beyond = await readPage(svc.url, "pages", "after=25");
    assert.deepEqual(beyond.body, { events: [], next: "25", head: "25" });
  });

  it("uses a default limit of 100 and reads from the oldest when after is absent or 0", async () => {
    const all = await readPage(svc.url, "pages");
    assert.equal(all.body.events.length, 25);
    const zero = await readPage(svc.url, "pages", "after=0");
    assert.deepEqual(zero.body, all.body);
    const empty = await readPage(svc.url, "empty");
    assert.deepEqual(empty.body, { events: [], next: "0", head: "0" });
  });

  it("filters by type prefix (repeatable) and subject, with next past what it skipped", async () => {
    const closed = await readPage(svc.url, "pages", "type=nl.example.zaak.gesloten");
    assert.deepEqual(sequences(closed.body.events), [1, 6, 11, 16, 21]);
    assert.ok(closed.body.events.every((e: { type: string }) => e.type === "nl.example.zaak.gesloten"));
    assert.equal(closed.body.next, "25", "next covers everything scanned");

    const zaak = await readPage(svc.url, "pages", "type=nl.example.zaak.&limit=3");
    assert.deepEqual(sequences(zaak.body.events), [1, 2, 4]);
    assert.equal(zaak.body.next, "4", "a full page ends at its last event");
    assert.match(zaak.headers.get("link")!, /after=4&limit=3&type=nl.example.zaak./);

    const two = await readPage(svc.url, "pages", "type=nl.example.zaak.gesloten&type=nl.example.document");
    assert.deepEqual(sequences(two.body.events), [1, 3, 5, 6, 7, 9, 11, 13, 15, 16, 17, 19, 21, 23, 25]);

    const subject = await readPage(svc.url, "pages", "subject=zaak-3");
    assert.deepEqual(sequences(subject.body.events), [1, 4, 7, 10, 13, 16, 19, 22, 25]);
    const both = await readPage(svc.url, "pages", "subject=zaak-3&type=nl.example.zaak.gesloten");
    assert.deepEqual(sequences(both.body.events), [1, 16]);
    const none = await readPage(svc.url, "pages", "type=nl.other");
    assert.deepEqual(none.body, { events: [], next: "25", head: "25" });
    // Prefix match is exact in case; no LIKE wildcards.
    assert.equal((await readPage(svc.url, "pages", "type=NL.example")).body.events.length, 0);
    assert.equal((await readPage(svc.url, "pages", "type=nl_example")).body.events.length, 0);
    assert.equal((await readPage(svc.url, "pages", "type=nl%25")).body.events.length, 0);
  });

  it("stops a page at its byte budget counted in UTF-8, where a character may take three bytes", async () => {
    // 60 events of 10,000 euro signs each: 600,000 characters in all, under the 1 MiB budget, but 1.8 MB of
    // UTF-8, over it. The page must stop where the bytes reach the budget, not the characters.
    await putFeed(svc.url, "wide");
    const text = "\u20ac".repeat(10_000);
    for (let batch = 0; batch < 3; batch += 1) {
      await publishBatch(
        svc.url,
        "wide",
        Array.from({ length: 20 }, () => cloudEvent({ data: { text } })),
      );
    }
    const page = await readPage(svc.url, "wide", "limit=1000");
    assert.equal(page.status, 200);
    const events = page.body.events as unknown[];
    const bytes = Buffer.byteLength(page.text);
    const eventBytes = Buffer.byteLength(JSON.stringify(events[0]));
    assert.ok(events.length > 1 && events.length < 60, `${events.length} events`);
    assert.ok(bytes <= MAX_PAGE_BYTES + 100, `${bytes} bytes`);
    assert.ok(bytes > MAX_PAGE_BYTES - 2 * eventBytes, `${bytes} bytes: the page stopped before its budget`);
    assert.equal(page.body.next, String(events.length));
  });

  it("refuses malformed parameters with 400", async () => {
    for (const query of [
      "after=-1",
      "after=abc",
      "after=01",
      "after=1.5",
      "after=1&after=2",
      "after=99999999999999999999",
    ]) {
      const reply = await readPage(svc.url, "pages", query);
      assert.equal(reply.status, 400, query);
      assert.equal(reply.body.type, "urn:seintje:problem:invalid-cursor", query);
    }
    for (const query of [
      "limit=0",
      "limit=1001",
      "limit=ten",
      "wait=61",
      "wait=-1",
      "wait=soon",
      "subject=",
      "type=",
    ]) {
      const reply = await readPage(svc.url, "pages", query);
      assert.equal(reply.status, 400, query);
      assert.equal(reply.headers.get("content-type"), "application/problem+json");
    }
    assert.equal((await readPage(svc.url, "pages", "unknown=ignored&limit=1")).status, 200);
  });

  it("answers 400 of its own type for a cursor ahead of head", async () => {
    const reply = await readPage(svc.url, "pages", "after=26");
    assert.equal(reply.status, 400);
    assert.equal(reply.body.type, "urn:seintje:problem:cursor-ahead");
    assert.equal(reply.body.head, "25");
  });

  it("returns one event by sequence, and 404 for one it does not hold", async () => {
    const one = await call(`${svc.url}/v1/feeds/pages/events/7`);
    assert.equal(one.status, 200);
    assert.equal(one.body.sequence, "7");
    for (const sequence of ["26", "0", "abc", "-1"]) {
      const missing = await call(`${svc.url}/v1/feeds/pages/events/${sequence}`);
      assert.equal(missing.status, 404, sequence);
      assert.equal(missing.body.type, "urn:seintje:problem:event-not-found");
    }
  });
});

describe("long-polling", () => {
  let svc: TestService;
  before(async () => {
    svc = await startTestService();
    await putFeed(svc.url, "live");
    await publish(svc.url, "live", cloudEvent());
  });
  after(() => svc.stop());

  it("answers at once when events are newer than the cursor", async () => {
    const started = Date.now();
    const reply = await readPage(svc.url, "live", "after=0&wait=30");
    assert.equal(reply.body.events.length, 1);
    assert.ok(Date.now() - started < 5000);
  });

  it("holds the request until an event is appended, then answers with it", async () => {
    const started = Date.now();
    const waiting = readPage(svc.url, "live", "after=1&wait=30");
    await new Promise((resolve) => setTimeout(resolve, 300));
    await publish(svc.url, "live", cloudEvent({ id: "wakes-the-poll" }));
    const reply = await waiting;
    const elapsed = Date.now() - started;
    assert.equal(reply.status, 200);
    assert.deepEqual(
      reply.body.events.map((e: { id: string }) => e.id),
      ["wakes-the-poll"],
    );
    assert.equal(reply.body.next, "2");
    assert.ok(elapsed >= 300 && elapsed < 10_000, `answered after ${elapsed} ms, woken by the append`);
  });

  it("answers with an empty page when the time is up", async () => {
    const started = Date.now();
    const reply = await readPage(svc.url, "live", "after=2&wait=0.5");
    const elapsed = Date.now() - started;
    assert.equal(reply.status, 200);
    assert.deepEqual(reply.body, { events: [], next: "2", head: "2" });
    assert.ok(elapsed >= 450, `waited ${elapsed} ms`);
  });

  it("with filters, keeps waiting past events that do not match", async () => {
    const waiting = readPage(svc.url, "live", "after=2&wait=30&type=nl.example.match");
    await new Promise((resolve) => setTimeout(resolve, 200));
    await publish(svc.url, "live", cloudEvent({ type: "nl.example.other" }));
    await new Promise((resolve) => setTimeout(resolve, 200));
    await publish(svc.url, "live", cloudEvent({ type: "nl.example.match.found", id: "matching" }));
    const reply = await waiting;
    assert.deepEqual(
      reply.body.events.map((e: { id: string }) => e.id),
      ["matching"],
    );
    assert.equal(reply.body.next, "4");
  });

  it("wakes many long-polls at one cursor with one shared read, each answered with the new event", async () => {
    const selects = async () => {
      const samples = await scrape(svc.url);
      return samples
        .filter(
          (sample) =>
            sample.name === "seintje_db_query_duration_seconds_count" && sample.labels.operation === "select",
        )
        .reduce((sum, sample) => sum + sample.value, 0);
    };
    await putFeed(svc.url, "herd");
    const polls = Array.from({ length: 50 }, () => readPage(svc.url, "herd", "after=0&wait=30"));
    assert.equal(await heldLongPolls(svc.url, 50), 50);
    await eventually(() => svc.service.bus.waiting === 1, 5000, "fifty long-polls for one page wait as one");
    const before = await selects();
    await publish(svc.url, "herd", cloudEvent({ id: "wakes-fifty" }));
    const replies = await Promise.all(polls);
    for (const reply of replies) {
      assert.deepEqual(
        reply.body.events.map((e: { id: string }) => e.id),
        ["wakes-fifty"],
      );
    }
    // A read is two selects (the feed, its events); fifty reads of their own would be a hundred. The scrape itself
    // and the append's own lookups add a few.
    const used = (await selects()) - before;
    assert.ok(used < 20, `${used} selects for 50 woken long-polls`);
  });

  /** A GET its client can give up on: `outcome` is the name of the error it then ends with. */
  function abortable(path: string) {
    const controller = new AbortController();
    const outcome = call(`${svc.url}${path}`, { signal: controller.signal }).then(
      () => "answered",
      (error: Error) => error.name,
    );
    return { abort: () => controller.abort(), outcome };
  }

  it("answers each long-poll of a herd at its own deadline or departure, and the rest when an event comes", async () => {
    await putFeed(svc.url, "deadlines");
    await publish(svc.url, "deadlines", cloudEvent());
    const started = Date.now();
    const short = readPage(svc.url, "deadlines", "after=1&wait=1");
    const long = readPage(svc.url, "deadlines", "after=1&wait=30");
    const leaving = abortable("/v1/feeds/deadlines/events?after=1&wait=30");
    // Held, and past their first read: then the three wait in one herd.
    assert.equal(await heldLongPolls(svc.url, 3), 3);
    await eventually(() => svc.service.bus.waiting === 1, 5000, "one wait for the three");
    leaving.abort();
    assert.equal(await leaving.outcome, "AbortError");
    assert.equal(await heldLongPolls(svc.url, 2), 2, "the one whose client left is let go");
    const timedOut = await short;
    assert.equal(timedOut.status, 200);
    assert.deepEqual(timedOut.body.events, []);
    assert.equal(timedOut.body.next, "1");
    assert.ok(Date.now() - started >= 900, "answered at its own deadline of one second");
    assert.equal(await heldLongPolls(svc.url, 1), 1);
    assert.equal(svc.service.bus.waiting, 1, "the other still waits");
    await publish(svc.url, "deadlines", cloudEvent({ id: "late" }));
    const woken = await long;
    assert.deepEqual(
      woken.body.events.map((e: { id: string }) => e.id),
      ["late"],
    );
    assert.equal(await heldLongPolls(svc.url, 0), 0);
    assert.equal(svc.service.bus.waiting, 0);
  });

  it("stops waiting when the client goes away", async () => {
    const waiting = abortable("/v1/feeds/live/events?after=4&wait=30");
    assert.equal(await heldLongPolls(svc.url, 1), 1);
    await eventually(() => svc.service.bus.waiting === 1, 5000, "the long-poll waits");
    waiting.abort();
    assert.equal(await waiting.outcome, "AbortError");
    await eventually(() => svc.service.bus.waiting === 0, 1000, "the wait ended");
    assert.equal(await heldLongPolls(svc.url, 0), 0);
  });
});

describe("retention and old cursors", () => {
  let svc: TestService;
  before(async () => {
    svc = await startTestService();
  });
  after(() => svc.stop());

  it("answers 410 with oldest for a cursor retention has passed", async () => {
    await putFeed(svc.url, "kept", { retention: { maxEvents: 10 } });
    await publishBatch(
      svc.url,
      "kept",
      Array.from({ length: 25 }, () => cloudEvent()),
    );
    assert.equal(await svc.service.retention.pass(), 15);

    const feed = await call(`${svc.url}/v1/feeds/kept`);
    assert.equal(feed.body.oldest, "16");
    assert.equal(feed.body.head, "25");

    const gone = await readPage(svc.url, "kept", "after=5");
    assert.equal(gone.status, 410);
    assert.equal(gone.headers.get("content-type"), "application/problem+json");
    assert.equal(gone.body.type, "urn:seintje:problem:cursor-gone");
    assert.equal(gone.body.oldest, "16");

    // oldest - 1 is still a valid cursor: nothing after it was removed.
    const edge = await readPage(svc.url, "kept", "after=15&limit=2");
    assert.deepEqual(sequences(edge.body.events), [16, 17]);
    const fromOldest = await readPage(svc.url, "kept");
    assert.equal(fromOldest.body.events[0].sequence, "16");
    assert.equal(fromOldest.body.events.length, 10);
    assert.equal((await call(`${svc.url}/v1/feeds/kept/events/15`)).status, 404);
    assert.equal((await call(`${svc.url}/v1/feeds/kept/events/16`)).status, 200);
  });

  it("answers a read that races the pass removing what follows its cursor with those events or with 410, never a skip", async () => {
    await putFeed(svc.url, "edge", { retention: { maxEvents: 20 } });
    const twenty = () => Array.from({ length: 20 }, () => cloudEvent());
    await publishBatch(svc.url, "edge", [...twenty(), ...twenty()]);
    assert.equal(await svc.service.retention.pass(), 20);
    const outcomes = { read: 0, gone: 0 };
    const deadline = Date.now() + 10_000;
    for (let round = 0; round < 150 && Date.now() < deadline; round += 1) {
      // The cursor just below the oldest kept event; the pass removes the 20 events after it.
      const after = 20 * (round + 1);
      assert.equal((await publishBatch(svc.url, "edge", twenty())).status, 201);
      // Every other round the pass starts first, the others the reads; the other side starts 0 to 5 ms later, a
      // different offset each time. So reads are served before the pass, after it and while it runs, on either
      // database (a pass takes a few ms on PostgreSQL and less than one on SQLite).
      const offset = () => pause(Math.floor(round / 2) % 6);
      const reading = () =>
        Array.from({ length: 4 }, () => readPage(svc.url, "edge", `after=${after}&limit=5`));
      let replies: Array<Awaited<ReturnType<typeof readPage>>>;
      if (round % 2 === 0) {
        const pass = svc.service.retention.pass();
        await offset();
        [, ...replies] = await Promise.all([pass, ...reading()]);
      } else {
        const reads = reading();
        await offset();
        [, ...replies] = await Promise.all([svc.service.retention.pass(), ...reads]);
      }
      for (const reply of replies) {
        if (reply.status === 410) {
          outcomes.gone += 1;
          continue;
        }
        assert.equal(reply.status, 200, JSON.stringify(reply.body));
        assert.equal(reply.body.events[0].sequence, String(after + 1), `a read after ${after} skipped`);
        outcomes.read += 1;
      }
    }
    // Both sides of the race were met: reads that came before the pass and reads that came after it.
    assert.ok(outcomes.read > 0 && outcomes.gone > 0, JSON.stringify(outcomes));
  });

  it("removes by age, and a fully pruned feed keeps its head", async () => {
    await putFeed(svc.url, "aged", { retention: { maxAge: "PT1S" } });
    await publishBatch(
      svc.url,
      "aged",
      Array.from({ length: 5 }, () => cloudEvent()),
    );
    assert.equal(await svc.service.retention.pass(), 0, "nothing is a second old yet");
    assert.equal(await svc.service.retention.pass(Date.now() + 2000), 5);
    const feed = await call(`${svc.url}/v1/feeds/aged`);
    assert.equal(feed.body.head, "5");
    assert.equal(feed.body.oldest, null);
    assert.equal((await readPage(svc.url, "aged", "after=2")).status, 410);
    assert.deepEqual((await readPage(svc.url, "aged", "after=5")).body, { events: [], next: "5", head: "5" });
    await publish(svc.url, "aged", cloudEvent());
    assert.deepEqual(sequences(await readAll(svc.url, "aged")), [6]);
  });
});

describe("readers following `after` while publishers append", () => {
  let svc: TestService;
  before(async () => {
    svc = await startTestService();
    await putFeed(svc.url, "race");
  });
  after(() => svc.stop());

  it("never skip an event, with and without filters", async () => {
    const publishers = 8;
    const rounds = 30;
    const total = publishers * rounds * 2;
    // Each batch holds one event of each type, so a reader of one type expects half of them.
    const batch = () => [
      cloudEvent({ type: "nl.example.race.a" }),
      cloudEvent({ type: "nl.example.race.b" }),
    ];
    const follow = async (filter: string) => {
      const seen: number[] = [];
      let cursor = 0;
      const deadline = Date.now() + 60_000;
      // Until publishing has ended and the reader has everything (or at once, when publishing failed).
      while (publishing.goOn(cursor >= total) && Date.now() < deadline) {
        const reply = await readPage(svc.url, "race", `after=${cursor}&limit=1000&wait=1${filter}`);
        assert.equal(reply.status, 200, JSON.stringify(reply.body));
        for (const event of reply.body.events) seen.push(Number(event.sequence));
        cursor = Number(reply.body.next);
      }
      return seen;
    };
    const publishing = watched(
      Promise.all(
        Array.from({ length: publishers }, async () => {
          for (let round = 0; round < rounds; round += 1) {
            const reply = await publishBatch(svc.url, "race", batch());
            assert.equal(reply.status, 201, JSON.stringify(reply.body));
          }
        }),
      ),
    );
    const readers = [follow(""), follow(""), follow("&type=nl.example.race.b")];
    const [outcome, all, again, filtered] = await Promise.allSettled([publishing.done, ...readers]);
    if (outcome.status === "rejected") throw outcome.reason;
    const every = Array.from({ length: total }, (_, index) => index + 1);
    for (const result of [all, again]) {
      if (result?.status === "rejected") throw result.reason;
      assert.deepEqual(result?.value, every);
    }
    if (filtered?.status === "rejected") throw filtered.reason;
    const types = new Map(
      (await readAll(svc.url, "race")).map((event) => [Number(event.sequence), event.type as string]),
    );
    const expected = every.filter((sequence) => types.get(sequence) === "nl.example.race.b");
    assert.equal(expected.length, total / 2);
    assert.deepEqual(filtered?.value, expected);
  });
});

describe("a read after an acknowledged publish", () => {
  let svc: TestService;
  before(async () => {
    svc = await startTestService();
    await putFeed(svc.url, "acked");
    // Pages of 1,000 events of about 1 KiB: a read of one takes a while on PostgreSQL, long enough for a
    // publish to commit while it is in flight.
    for (let batch = 0; batch < 10; batch += 1) {
      const events = Array.from({ length: 100 }, () => cloudEvent({ data: { text: "x".repeat(1000) } }));
      assert.equal((await publishBatch(svc.url, "acked", events)).status, 201);
    }
  });
  after(() => svc.stop());

  it("sees the event, though a read of the same page began before the publish and is still in flight", async () => {
    // Requests reading the same page at once share one read; one that asks after its client was told of an
    // append must not take a read begun before that append. Without that, on PostgreSQL about half of these
    // rounds answered a head older than the event just acknowledged.
    const query = "after=0&limit=1000";
    for (let round = 0; round < 40; round += 1) {
      const earlier = readPage(svc.url, "acked", query);
      const published = await publish(svc.url, "acked", cloudEvent());
      assert.equal(published.status, 201);
      const sequence = Number(published.body.events[0].sequence);
      // A long-poll whose page is not empty answers at once, from the same kind of read.
      const later = await readPage(svc.url, "acked", round % 2 === 0 ? query : `${query}&wait=5`);
      assert.equal(later.status, 200);
      assert.ok(Number(later.body.head) >= sequence, `round ${round}: head ${later.body.head} < ${sequence}`);
      assert.equal((await earlier).status, 200);
    }
  });

  it("answers a long-poll that joined an earlier one's wait with what it read itself, when its time is up", async () => {
    await putFeed(svc.url, "filtered-wait");
    await publish(svc.url, "filtered-wait", cloudEvent());
    const query = "after=1&type=nl.example.wanted";
    const first = readPage(svc.url, "filtered-wait", `${query}&wait=30`);
    assert.equal(await heldLongPolls(svc.url, 1), 1);
    await eventually(() => svc.service.bus.waiting === 1, 5000, "the first long-poll waits");
    const other = await publish(svc.url, "filtered-wait", cloudEvent({ type: "nl.example.other" }));
    assert.equal(other.body.events[0].sequence, "2");
    // It reads past event 2 (not wanted), then waits beside the first; its deadline comes first.
    const second = await readPage(svc.url, "filtered-wait", `${query}&wait=1`);
    assert.equal(second.status, 200);
    assert.deepEqual(second.body, { events: [], next: "2", head: "2" });
    await publish(svc.url, "filtered-wait", cloudEvent({ id: "wanted", type: "nl.example.wanted" }));
    const woken = await first;
    assert.deepEqual(
      woken.body.events.map((event: { id: string }) => event.id),
      ["wanted"],
    );
  });
});
