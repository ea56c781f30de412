import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DIALECT } from "../support/database.js";
import { authorizationFor, call, cloudEvent, type Reply } from "../support/http.js";
import { startReceiver } from "../support/receiver.js";
import { startTestService, type TestService } from "../support/service.js";

/**
 * Many clients at once, each sending its own seeded random sequence of requests of every kind: publishes (single
 * and batches, with repeated ids), page reads, long-polls, streams, single events, feeds created, changed and
 * deleted, types declared and removed, and subscriptions created, changed, rotated, tested, retried and deleted,
 * while retention runs every second and pings go out to a real receiver, two at a time per node. On PostgreSQL
 * the clients talk to two nodes of one database. Races between requests (a delete between another request's read
 * and its write, two writers taking their locks in different orders) showed here as 500s, 503s from deadlocks and
 * logged errors:
 *
 * - no answer is a 5xx, and every 4xx is a problem document;
 * - every page holds exactly the sequences after its cursor, one after another, every stream sends one event
 *   after another, and every event has its own sequence;
 * - nothing is logged at error level, and no deadlock at any level;
 * - afterwards every feed still holds an unbroken run of sequences from `oldest` to `head`, and every
 *   subscription's feed exists.
 *
 * Which request a client sends next comes from the seed; how they interleave does not, so a failure may not repeat
 * itself. `hardening.test.ts` holds each race found here at the proxy in front of PostgreSQL, so that it does.
 * `SEINTJE_CONTENTION_SEED`, `SEINTJE_CONTENTION_SECONDS` and `SEINTJE_CONTENTION_CLIENTS` run others.
 */

const SEED = Number(process.env.SEINTJE_CONTENTION_SEED ?? 20261203);
const SECONDS = Number(process.env.SEINTJE_CONTENTION_SECONDS ?? 8);
const CLIENTS = Number(process.env.SEINTJE_CONTENTION_CLIENTS ?? 16);

const FEEDS = ["a", "b", "c"];
const TYPES = ["nl.example.a", "nl.example.b"];

/** A small deterministic generator (a linear congruential one), one per client. */
function generator(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0;
    return state / 2 ** 32;
  };
  return {
    below: (n: number) => Math.floor(next() * n),
    pick: <T>(values: readonly T[]): T => values[Math.floor(next() * values.length)]!,
  };
}

type Random = ReturnType<typeof generator>;
type Answer = Pick<Reply, "status" | "text"> & { type: string };

describe("many clients at once", () => {
  it(`answers ${CLIENTS} clients sending random requests for ${SECONDS} s without a 5xx, an error or a broken log`, {
    timeout: 120_000,
  }, async (t) => {
    const receiver = await startReceiver();
    let answers = 0;
    receiver.respond = () => ({ status: [204, 204, 500, 410, 429][answers++ % 5]!, delayMs: answers % 7 });
    const env = {
      SEINTJE_CALLBACK_HTTP: "true",
      SEINTJE_CALLBACK_ALLOW: "127.0.0.1",
      SEINTJE_PING_RETRY: "0.2",
      SEINTJE_PING_TIMEOUT: "2",
      SEINTJE_RETENTION_INTERVAL: "1",
      // Two pings in flight per node, so that pings wait for a slot and the transactions that record outcomes
      // claim for it too (a deadlock of those with a feed's delete was found so).
      SEINTJE_PING_CONCURRENCY: "2",
    };
    const nodes: TestService[] = [await startTestService(env)];
    if (DIALECT === "postgres") nodes.push(await startTestService(env, { dir: nodes[0]!.dir }));
    try {
      const subscriptions: string[] = [];
      const json = (method: string, body: unknown): RequestInit => ({
        method,
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      const event = (random: Random) =>
        cloudEvent({
          id: `event-${random.below(30)}`,
          type: random.pick(TYPES),
          data: { n: random.below(3) },
        });
      let streamed = 0;
      /** Pages that break what an unfiltered page promises, whatever else runs at the time. */
      const broken: string[] = [];
      /**
       * Reads the page after `after`: its events are exactly the sequences after it, one after another (retention
       * answers 410 instead of a page with a hole; from 0 it starts at the oldest kept), `next` is the last of them
       * (or, with none, not below `after`), and `head` is not below `next`.
       */
      const page = async (url: string, after: number, options: string): Promise<Answer> => {
        const answer = await send(`${url}?after=${after}${options}`);
        if (answer.status !== 200) return answer;
        const { events, next, head } = JSON.parse(answer.text);
        const sequences = events.map((stored: { sequence: string }) => Number(stored.sequence));
        // From 0 a page starts at the oldest event retention kept.
        const first = after === 0 && sequences.length > 0 ? sequences[0] : after + 1;
        const expected = sequences.map((_: number, index: number) => first + index);
        const nextRight = sequences.length > 0 ? Number(next) === sequences.at(-1) : Number(next) >= after;
        if (
          JSON.stringify(sequences) !== JSON.stringify(expected) ||
          !nextRight ||
          Number(head) < Number(next)
        ) {
          broken.push(`a page after ${after}: ${sequences.join(",")}, next ${next}, head ${head}`);
        }
        return answer;
      };
      const subscription = (random: Random) =>
        random.pick(subscriptions.length > 0 ? subscriptions : ["none"]);

      const requests: Array<[string, (base: string, random: Random) => Promise<Answer>]> = [
        [
          "put feed",
          (base, random) =>
            send(
              `${base}/v1/feeds/${random.pick(FEEDS)}`,
              json("PUT", {
                description: random.pick(["x", "y"]),
                retention: { maxEvents: random.pick([null, 3, 10]) },
                typePolicy: random.pick(["open", "open", "declared"]),
              }),
            ),
        ],
        [
          "publish",
          (base, random) =>
            send(`${base}/v1/feeds/${random.pick(FEEDS)}/events`, {
              method: "POST",
              headers: { "content-type": "application/cloudevents+json" },
              body: JSON.stringify(event(random)),
            }),
        ],
        [
          "publish batch",
          (base, random) =>
            send(`${base}/v1/feeds/${random.pick(FEEDS)}/events`, {
              method: "POST",
              headers: { "content-type": "application/cloudevents-batch+json" },
              body: JSON.stringify([event(random), event(random), event(random)]),
            }),
        ],
        [
          "read",
          (base, random) => page(`${base}/v1/feeds/${random.pick(FEEDS)}/events`, random.below(10), ""),
        ],
        [
          "long-poll",
          (base, random) => page(`${base}/v1/feeds/${random.pick(FEEDS)}/events`, random.below(8), "&wait=1"),
        ],
        [
          "stream",
          async (base, random) => {
            const answer = await stream(`${base}/v1/feeds/${random.pick(FEEDS)}/events?after=0`);
            // From the oldest kept event on, one after another.
            const ids = [...answer.text.matchAll(/^id: ?(\d+)$/gm)].map((match) => Number(match[1]));
            streamed += ids.length;
            if (ids.some((id, index) => index > 0 && id !== ids[index - 1]! + 1)) {
              broken.push(`a stream from 0 sent ${ids.join(",")}`);
            }
            return answer;
          },
        ],
        [
          "event",
          async (base, random) => {
            const sequence = 1 + random.below(8);
            const answer = await send(`${base}/v1/feeds/${random.pick(FEEDS)}/events/${sequence}`);
            if (answer.status === 200 && JSON.parse(answer.text).sequence !== String(sequence)) {
              broken.push(`event ${sequence} answered ${answer.text.slice(0, 200)}`);
            }
            return answer;
          },
        ],
        [
          "put type",
          (base, random) =>
            send(
              `${base}/v1/feeds/${random.pick(FEEDS)}/types/${random.pick(TYPES)}`,
              json("PUT", { schema: random.pick([{ type: "object" }, { type: "string" }]) }),
            ),
        ],
        [
          "delete type",
          (base, random) =>
            send(`${base}/v1/feeds/${random.pick(FEEDS)}/types/${random.pick(TYPES)}`, { method: "DELETE" }),
        ],
        ["types", (base, random) => send(`${base}/v1/feeds/${random.pick(FEEDS)}/types`)],
        ["asyncapi", (base, random) => send(`${base}/v1/feeds/${random.pick(FEEDS)}/asyncapi.json`)],
        ["feeds", (base) => send(`${base}/v1/feeds`)],
        [
          "subscribe",
          async (base, random) => {
            const answer = await send(
              `${base}/v1/subscriptions`,
              json("POST", { feed: random.pick(FEEDS), url: receiver.url }),
            );
            if (answer.status === 201) subscriptions.push(JSON.parse(answer.text).id);
            return answer;
          },
        ],
        [
          "change",
          (base, random) =>
            send(
              `${base}/v1/subscriptions/${subscription(random)}`,
              json(
                "PATCH",
                random.pick([
                  { description: "d" },
                  { status: "active" },
                  { status: "disabled" },
                  { types: [random.pick(TYPES)] },
                  { signature: random.pick(["v1", "v1a"]) },
                  { url: `${receiver.url}?v=${random.below(3)}` },
                ]),
              ),
            ),
        ],
        [
          "rotate",
          (base, random) =>
            send(`${base}/v1/subscriptions/${subscription(random)}/rotate-secret`, { method: "POST" }),
        ],
        [
          "test",
          (base, random) => send(`${base}/v1/subscriptions/${subscription(random)}/test`, { method: "POST" }),
        ],
        [
          "retry",
          (base, random) =>
            send(`${base}/v1/subscriptions/${subscription(random)}/retry`, { method: "POST" }),
        ],
        ["subscription", (base, random) => send(`${base}/v1/subscriptions/${subscription(random)}`)],
        ["attempts", (base, random) => send(`${base}/v1/subscriptions/${subscription(random)}/attempts`)],
        ["subscriptions", (base) => send(`${base}/v1/subscriptions`)],
        [
          "unsubscribe",
          (base, random) => send(`${base}/v1/subscriptions/${subscription(random)}`, { method: "DELETE" }),
        ],
      ];
      // A feed's delete takes everything of it along: a third as often as the rest, so that the others find it.
      const deleteFeed: (typeof requests)[number] = [
        "delete feed",
        (base, random) => send(`${base}/v1/feeds/${random.pick(FEEDS)}`, { method: "DELETE" }),
      ];
      const weighted = [...requests, ...requests, ...requests, deleteFeed];

      const tally = new Map<string, number>();
      const wrong: string[] = [];
      const deadline = Date.now() + SECONDS * 1000;
      await Promise.all(
        Array.from({ length: CLIENTS }, async (_, client) => {
          const random = generator(SEED + client);
          // Bounded in time, and in count for a service that answers faster than expected.
          for (let sent = 0; sent < 100_000 && Date.now() < deadline; sent += 1) {
            const [what, request] = random.pick(weighted);
            const answer = await request(random.pick(nodes).url, random);
            const key = `${what} ${answer.status}`;
            tally.set(key, (tally.get(key) ?? 0) + 1);
            if (answer.status >= 500) wrong.push(`${key}: ${answer.text.slice(0, 300)}`);
            else if (answer.status >= 400 && answer.type !== "application/problem+json") {
              wrong.push(`${key} is ${answer.type}, not a problem document`);
            }
          }
        }),
      );
      t.diagnostic([...tally].map(([key, count]) => `${key} x${count}`).join(", "));
      t.diagnostic(`streams sent ${streamed} events`);
      assert.deepEqual(wrong, [], "every answer below 500, every 4xx a problem document");
      assert.deepEqual(broken, [], "every page and event as the contract says");

      for (const node of nodes) {
        assert.deepEqual(
          node.logs.filter((line) => Number(line.level) >= 50 || JSON.stringify(line).includes("deadlock")),
          [],
          "no error and no deadlock logged",
        );
      }

      // Retention goes on every second: one pass to the end now, so that no later one moves `oldest` while the
      // feeds are read (nothing is published any more, so every later pass finds nothing to remove).
      await nodes[0]!.service.retention.pass();
      const base = nodes[0]!.url;
      const feeds: Array<{ name: string; head: string; oldest: string | null }> = (
        await call(`${base}/v1/feeds`)
      ).body.feeds;
      for (const feed of feeds) {
        const sequences: number[] = [];
        let after = feed.oldest === null ? Number(feed.head) : Number(feed.oldest) - 1;
        for (let page = 0; page < 100 && after < Number(feed.head); page += 1) {
          const read = await call(`${base}/v1/feeds/${feed.name}/events?after=${after}&limit=1000`);
          assert.equal(read.status, 200, read.text);
          sequences.push(...read.body.events.map((stored: { sequence: string }) => Number(stored.sequence)));
          after = Number(read.body.next);
        }
        const expected = Array.from({ length: sequences.length }, (_, i) => Number(feed.oldest) + i);
        assert.deepEqual(sequences, expected, `feed ${feed.name} holds oldest..head without a gap`);
        assert.equal(
          sequences.at(-1) ?? Number(feed.head),
          Number(feed.head),
          `feed ${feed.name} ends at head`,
        );
      }
      const names = new Set(feeds.map((feed) => feed.name));
      const listed: Array<{ id: string; feed: string }> = (await call(`${base}/v1/subscriptions?limit=1000`))
        .body.subscriptions;
      for (const { id, feed } of listed)
        assert.ok(names.has(feed), `subscription ${id} follows a feed that exists`);
    } finally {
      for (const node of nodes.slice(1)) await node.stop();
      await nodes[0]!.stop();
      await receiver.close();
    }
  });
});

async function send(url: string, init: RequestInit = {}): Promise<Answer> {
  const reply = await call(url, init);
  return { status: reply.status, text: reply.text, type: reply.headers.get("content-type") ?? "" };
}

/** Opens a stream, reads what it sends for 300 ms, closes it, and answers what it read. */
async function stream(url: string): Promise<Answer> {
  const closing = new AbortController();
  const timer = setTimeout(() => closing.abort(), 300);
  try {
    const response = await fetch(url, {
      headers: { accept: "text/event-stream", ...authorizationFor(url) },
      signal: closing.signal,
    });
    const type = response.headers.get("content-type") ?? "";
    if (response.status !== 200) return { status: response.status, text: await response.text(), type };
    let text = "";
    const decoder = new TextDecoder();
    try {
      for await (const chunk of response.body!) text += decoder.decode(chunk, { stream: true });
    } catch (error) {
      if (!closing.signal.aborted) throw error;
    }
    return { status: 200, text, type };
  } catch (error) {
    if (!closing.signal.aborted) throw error;
    // Closed by the timer before the answer's headers came.
    return { status: 200, text: "", type: "text/event-stream" };
  } finally {
    clearTimeout(timer);
  }
}
