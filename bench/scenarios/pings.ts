import {
  api,
  benchEvent,
  type Figure,
  median,
  now,
  type Proc,
  type Scenario,
  type Seintje,
  sleep,
  startBenchServer,
  startScript,
  startSeintje,
} from "../harness.js";

/**
 * Wake-up pings to a receiver process of its own on loopback, which prints a line per ping it gets (the key in its
 * path says which subscription it is for, the delay in its path how long it takes to answer).
 */

const HOOKS = { SEINTJE_CALLBACK_HTTP: "true", SEINTJE_CALLBACK_ALLOW: "127.0.0.1" };

interface Receiver {
  proc: Proc;
  url: string;
  /** Arrivals per key since the receiver started: epoch ms of each ping. */
  pings: Map<string, number[]>;
  /**
   * Resolves with the latest first arrival at or after `since` among `count` keys with `prefix`, in epoch ms.
   * Counted as the receiver's lines come in, so that the harness does no work of its own while seintje delivers
   * (polling the arrivals of 9,000 keys every 5 ms took the two cores' time from the scenario's measured side only).
   * `signal` gives up waiting at once, so that a round whose publish failed leaves no timer behind.
   */
  reached(
    prefix: string,
    count: number,
    since: number,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<number>;
}

interface Waiter {
  prefix: string;
  count: number;
  since: number;
  keys: Set<string>;
  last: number;
  done(last: number): void;
}

async function startReceiver(): Promise<Receiver> {
  const { proc, url } = await startBenchServer("receiver");
  const pings = new Map<string, number[]>();
  const waiters = new Set<Waiter>();
  proc.onLine((line) => {
    const [word, key, text] = line.split(" ");
    if (word !== "ping" || key === undefined) return;
    const at = Number(text);
    let arrivals = pings.get(key);
    if (!arrivals) {
      arrivals = [];
      pings.set(key, arrivals);
    }
    arrivals.push(at);
    for (const waiter of waiters) {
      if (at < waiter.since || !key.startsWith(waiter.prefix) || waiter.keys.has(key)) continue;
      waiter.keys.add(key);
      waiter.last = Math.max(waiter.last, at);
      if (waiter.keys.size >= waiter.count) waiter.done(waiter.last);
    }
  });
  const reached = (prefix: string, count: number, since: number, timeoutMs: number, signal: AbortSignal) =>
    new Promise<number>((resolve, reject) => {
      const end = () => {
        clearTimeout(timer);
        waiters.delete(waiter);
      };
      const timer = setTimeout(() => {
        end();
        reject(new Error(`${waiter.keys.size} of ${count} subscriptions pinged within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter: Waiter = {
        prefix,
        count,
        since,
        keys: new Set(),
        last: 0,
        done(last) {
          end();
          resolve(last);
        },
      };
      waiters.add(waiter);
      signal.addEventListener(
        "abort",
        () => {
          end();
          reject(signal.reason);
        },
        { once: true },
      );
    });
  return { proc, url, pings, reached };
}

/** Creates `count` subscriptions to the receiver (keys `<prefix><i>`), 20 at a time. */
async function subscribe(
  seintje: Seintje,
  receiver: Receiver,
  feed: string,
  count: number,
  prefix: string,
  delayMs = 0,
  extra: Record<string, unknown> = {},
) {
  let next = 0;
  await Promise.all(
    Array.from({ length: 20 }, async () => {
      while (next < count) {
        const index = next;
        next += 1;
        await api(seintje, "POST", "/v1/subscriptions", {
          feed,
          url: `${receiver.url}/${delayMs}/${prefix}${index}`,
          ...extra,
        });
      }
    }),
  );
}

/** Publishes one event and answers how long until every key with `prefix` had a ping after it, in ms. */
async function pingRound(seintje: Seintje, receiver: Receiver, feed: string, prefix: string, count: number) {
  const published = now();
  const giveUp = new AbortController();
  const reached = receiver.reached(prefix, count, published, 60_000, giveUp.signal);
  try {
    await api(seintje, "POST", `/v1/feeds/${feed}/events`, benchEvent(), "application/cloudevents+json");
  } catch (error) {
    reached.catch(() => undefined);
    giveUp.abort(error);
    throw error;
  }
  return (await reached) - published;
}

/** What sending the same number of POSTs to the receiver costs without seintje: posts per second. */
async function barePosts(receiver: Receiver, count: number): Promise<number> {
  const proc = startScript("baselines.ts", ["posts", receiver.url, String(count), "256"]);
  const line = await proc.waitForLine(/^\{"postsPerSecond"/, 120_000);
  await proc.stop();
  return JSON.parse(line).postsPerSecond as number;
}

export const pingFanout: Scenario = {
  name: "ping-fanout",
  description: "one publish until every one of 1,000 subscriptions is pinged",
  async run(size) {
    const count = size.quick ? 300 : 1000;
    const seintje = await startSeintje(HOOKS);
    const receiver = await startReceiver();
    try {
      await api(seintje, "PUT", "/v1/feeds/pf");
      await subscribe(seintje, receiver, "pf", count, "f");
      const times: number[] = [];
      const bare: number[] = [];
      for (let round = 0; round < Math.max(3, size.rounds * 2); round += 1) {
        times.push(await pingRound(seintje, receiver, "pf", "f", count));
        bare.push((count / (await barePosts(receiver, count))) * 1000);
        await sleep(500);
      }
      return [
        {
          name: `one publish until all of ${count.toLocaleString("en")} subscriptions are pinged`,
          unit: "ms",
          ours: median(times),
          baseline: {
            name: `${count.toLocaleString("en")} bare undici POSTs, 256 at a time`,
            value: median(bare),
          },
          target: { text: "≤ 1 s", met: median(times) <= 1000 },
          notes: [`rounds (ms): ${times.map((value) => Math.round(value)).join(", ")}`],
        },
      ];
    } finally {
      await Promise.all([seintje.stop(), receiver.proc.stop()]);
    }
  },
};

export const pingThroughput: Scenario = {
  name: "ping-throughput",
  description:
    "pings per second to a fast local receiver, one ping per subscription of a large feed; signed v1 (HMAC), v1a (Ed25519) and v1 with a JWT, in turns",
  async run(size) {
    const count = size.quick ? 1000 : 3000;
    const seintje = await startSeintje(HOOKS);
    const receiver = await startReceiver();
    const kinds = [
      { key: "t", feed: "pt", extra: {} },
      { key: "a", feed: "pt-v1a", extra: { signature: "v1a" } },
      { key: "j", feed: "pt-jwt", extra: { authorization: { type: "jwt" } } },
    ] as const;
    try {
      for (const kind of kinds) {
        await api(seintje, "PUT", `/v1/feeds/${kind.feed}`);
        await subscribe(seintje, receiver, kind.feed, count, kind.key, 0, kind.extra);
      }
      const rates = new Map<string, number[]>(kinds.map((kind) => [kind.key, []]));
      const bare: number[] = [];
      for (let round = 0; round < Math.max(2, size.rounds); round += 1) {
        for (const kind of kinds) {
          rates
            .get(kind.key)!
            .push((count / (await pingRound(seintje, receiver, kind.feed, kind.key, count))) * 1000);
          await sleep(500);
        }
        bare.push(await barePosts(receiver, count));
        await sleep(500);
      }
      const v1 = median(rates.get("t")!);
      const beside = (key: string, name: string) => ({
        name: `pings to ${count.toLocaleString("en")} subscriptions, ${name}`,
        unit: "pings/s",
        ours: median(rates.get(key)!),
        baseline: { name: "the same with v1 (HMAC) alone, in turns", value: v1 },
        // The contract sets none; what a receiver's choice may cost the service at most.
        target: { text: "≥ 0.5 × v1", met: median(rates.get(key)!) >= 0.5 * v1 },
      });
      // Each kind's first round opens its keys (a courier keeps them opened); the median leaves it out.
      const rounds = (values: number[]) =>
        values.map((value) => Math.round(value).toLocaleString("en")).join(", ");
      return [
        {
          name: `pings to ${count.toLocaleString("en")} subscriptions`,
          unit: "pings/s",
          ours: v1,
          baseline: { name: "bare undici POSTs, 256 at a time", value: median(bare) },
          // #24's target, a ratio, since these machines are shared; the earlier ≥ 3,000/s is noted beside it.
          target: {
            text: "≥ 0.8 × bare undici (and ≥ 3,000/s)",
            met: v1 >= 0.8 * median(bare) && v1 >= 3000,
          },
          notes: [
            `rounds (pings/s): v1 ${rounds(rates.get("t")!)}; v1a ${rounds(rates.get("a")!)}; JWT ${rounds(rates.get("j")!)}; bare ${rounds(bare)}`,
          ],
        },
        beside("a", "signed v1a (Ed25519)"),
        beside("j", "v1 with a JWT (EdDSA) in Authorization"),
      ];
    } finally {
      await Promise.all([seintje.stop(), receiver.proc.stop()]);
    }
  },
};

export const pingCoalescing: Scenario = {
  name: "ping-coalescing",
  description:
    "2,000 events/s into a feed whose 100 subscribers take 50 ms per ping: pings coalesce, nothing is left out",
  async run(size) {
    const subscriptions = size.quick ? 20 : 100;
    const seconds = size.quick ? 3 : 10;
    const seintje = await startSeintje(HOOKS);
    const receiver = await startReceiver();
    try {
      await api(seintje, "PUT", "/v1/feeds/pc");
      await subscribe(seintje, receiver, "pc", subscriptions, "c", 50);
      // 2,000 events/s: every 10 ms a batch of what the rate asks for by then (20, more after a slow request).
      const started = now();
      let published = 0;
      while (now() - started < seconds * 1000) {
        const due = Math.min(1000, Math.floor((now() - started) * 2) + 20 - published);
        if (due > 0) {
          await api(
            seintje,
            "POST",
            "/v1/feeds/pc/events",
            Array.from({ length: due }, () => benchEvent()),
            "application/cloudevents-batch+json",
          );
          published += due;
        }
        await sleep(10);
      }
      const stopped = now();
      const head = String((await api(seintje, "GET", "/v1/feeds/pc")).head);
      // Every subscription must end acknowledged at the head: no event left unannounced.
      const deadline = Date.now() + 30_000;
      let caughtUp = false;
      while (!caughtUp && Date.now() < deadline) {
        const listed = (await api(seintje, "GET", "/v1/subscriptions?limit=1000")).subscriptions as Array<{
          acked: string;
        }>;
        caughtUp =
          listed.length === subscriptions && listed.every((subscription) => subscription.acked === head);
        if (!caughtUp) await sleep(100);
      }
      let last = 0;
      let most = 0;
      for (const [key, arrivals] of receiver.pings) {
        if (!key.startsWith("c")) continue;
        most = Math.max(most, arrivals.length);
        last = Math.max(last, ...arrivals);
      }
      const runMs = last - started;
      const bound = 1.2 * (runMs / 50);
      const figure: Figure = {
        name: `most pings to one of ${subscriptions} slow subscriptions (50 ms each)`,
        unit: "pings",
        ours: most,
        baseline: { name: "1.2 × run time ÷ 50 ms", value: bound },
        target: {
          text: "≤ 1.2 × (run time ÷ 50 ms), and every subscription acked at the head",
          met: most <= bound && caughtUp,
        },
        notes: [
          `${published} events in ${((stopped - started) / 1000).toFixed(1)} s (${Math.round(published / ((stopped - started) / 1000))}/s); run until the last ping ${(runMs / 1000).toFixed(1)} s`,
          caughtUp ? `all acked at head ${head}` : `NOT all acked at head ${head} within 30 s`,
        ],
      };
      return [figure];
    } finally {
      await Promise.all([seintje.stop(), receiver.proc.stop()]);
    }
  },
};
