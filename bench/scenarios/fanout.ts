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
import { type Nchan, startNchan, whyNoNchan } from "../nchan.js";

/**
 * Fan-out: many open streams (or waiting long-polls) in a client process of their own, one publish, and the time
 * until the last connection has it. And the memory each idle stream costs.
 */

let rounds = 0;

/** A target of the fan-out: where the clients connect and how one publishes a marked message there. */
interface Target {
  name: string;
  subscribeUrl: string;
  headers: Record<string, string>;
  publish(marker: string): Promise<void>;
}

function seintjeTarget(seintje: Seintje, feed: string, after: number): Target {
  return {
    name: "seintje",
    subscribeUrl: `${seintje.url}/v1/feeds/${feed}/events?after=${after}`,
    headers: seintje.auth,
    async publish(marker) {
      await api(
        seintje,
        "POST",
        `/v1/feeds/${feed}/events`,
        { ...benchEvent(), data: { marker } },
        "application/cloudevents+json",
      );
    },
  };
}

function plainTarget(name: string, url: string): Target {
  return {
    name,
    subscribeUrl: `${url}/sub`,
    headers: {},
    async publish(marker) {
      const response = await fetch(`${url}/pub`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ ...benchEvent(), data: { marker } }),
      });
      await response.arrayBuffer();
      if (!response.ok) throw new Error(`${name} publish: ${response.status}`);
    },
  };
}

/** A client process that sends `count` long-polls to `url` each time it is told to ("poll <after>"). */
function holdPolls(url: string, count: number, headers: Record<string, string>): Proc {
  return startScript("fanout-client.ts", ["longpoll", url, String(count), JSON.stringify(headers)]);
}

/** A client process holding `count` streams to the target. */
async function holdStreams(target: Target, count: number): Promise<Proc> {
  const client = startScript("fanout-client.ts", [
    "sse",
    target.subscribeUrl,
    String(count),
    JSON.stringify(target.headers),
  ]);
  await client.waitForLine(new RegExp(`^ready ${count}$`), 180_000);
  return client;
}

/** Publishes a marked message and answers the time until the last of the client's connections had it, in ms. */
async function oneRound(target: Target, clients: Proc[]): Promise<number[]> {
  rounds += 1;
  const round = rounds;
  const waits = clients.map((client) => client.waitForLine(new RegExp(`^round ${round} `), 60_000));
  const published = now();
  await target.publish(`bench-round-${round}`);
  const lines = await Promise.all(waits);
  return lines.map((line) => Number(line.split(" ")[3]) - published);
}

/** Reads one of seintje's own metrics. */
async function metric(seintje: Seintje, name: string): Promise<number> {
  const text = await (await fetch(`${seintje.url}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN);
}

async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await sleep(100);
  }
}

export const sseFanout: Scenario = {
  name: "sse-fanout",
  description:
    "time from one publish until the last of many open streams has it, beside nchan and a bare Node SSE server",
  async run(size) {
    const count = size.quick ? 500 : 5000;
    const seintje = await startSeintje();
    const bare = await startBenchServer("node-sse");
    const noPeer = whyNoNchan();
    const nchan: Nchan | undefined = noPeer ? undefined : await startNchan();
    const clients: Proc[] = [];
    try {
      await api(seintje, "PUT", "/v1/feeds/fan");
      const targets = [seintjeTarget(seintje, "fan", 0), plainTarget("bare Node SSE", bare.url)];
      if (nchan) targets.push(plainTarget("nchan", nchan.url));
      const held = new Map<Target, Proc>();
      for (const target of targets) {
        const client = await holdStreams(target, count);
        clients.push(client);
        held.set(target, client);
      }
      await until(
        async () => (await metric(seintje, "seintje_streams_open")) === count,
        30_000,
        "streams open",
      );
      const times = new Map<string, number[]>(targets.map((target) => [target.name, []]));
      // Round 0 of each target warms it up (its first fan-out runs unoptimised code, in every Node server) and is
      // not counted; then the targets take turns, so that noise on these shared machines falls on all of them.
      const counted = size.quick ? 3 : 15;
      for (let round = 0; round <= counted; round += 1) {
        for (const target of targets) {
          const [took] = await oneRound(target, [held.get(target)!]);
          if (round > 0) times.get(target.name)!.push(took!);
          await sleep(200);
        }
      }
      const ours = median(times.get("seintje")!);
      const bareTime = median(times.get("bare Node SSE")!);
      const nchanTime = nchan ? median(times.get("nchan")!) : Number.NaN;
      const figure: Figure = {
        name: `one publish to the last of ${count.toLocaleString("en")} open streams`,
        unit: "ms",
        ours,
        baseline: { name: "bare Node SSE server", value: bareTime },
        peer: nchan ? { name: "nchan", value: nchanTime } : { name: "nchan", skipped: noPeer! },
        target: {
          text: "≤ 1.2 × nchan, ≤ 1.5 × bare Node SSE",
          met: ours / bareTime <= 1.5 && (!nchan || ours / nchanTime <= 1.2),
        },
        notes: [...times].map(
          ([name, values]) => `${name} rounds (ms): ${values.map((value) => value.toFixed(1)).join(", ")}`,
        ),
      };
      return [figure];
    } finally {
      await Promise.all(clients.map((client) => client.stop()));
      await Promise.all([seintje.stop(), bare.proc.stop(), nchan?.stop()]);
    }
  },
};

export const sseMemory: Scenario = {
  name: "sse-memory",
  description: "resident memory per idle stream with many held, beside a bare Node SSE server and nchan",
  async run(size) {
    const count = size.quick ? 1000 : 10_000;
    const seintje = await startSeintje({ SEINTJE_MAX_STREAMS: String(count + 10) });
    const bare = await startBenchServer("node-sse");
    const noPeer = whyNoNchan();
    const nchan: Nchan | undefined = noPeer ? undefined : await startNchan();
    const clients: Proc[] = [];
    try {
      await api(seintje, "PUT", "/v1/feeds/idle");
      // Warm each server up with a few streams first, so that what is measured is the streams, not the start.
      for (const target of [seintjeTarget(seintje, "idle", 0), plainTarget("bare", bare.url)]) {
        await (await holdStreams(target, 20)).stop();
      }
      await sleep(1000);
      const before = { seintje: seintje.proc.rss(), bare: bare.proc.rss(), nchan: nchan?.workerRss() ?? 0 };
      clients.push(await holdStreams(seintjeTarget(seintje, "idle", 0), count));
      clients.push(await holdStreams(plainTarget("bare", bare.url), count));
      if (nchan) clients.push(await holdStreams(plainTarget("nchan", nchan.url), count));
      await until(
        async () => (await metric(seintje, "seintje_streams_open")) === count,
        60_000,
        "streams open",
      );
      await sleep(2000);
      const held = await metric(seintje, "seintje_streams_open");
      const perStream = (after: number, start: number) => (after - start) / count;
      const ours = perStream(seintje.proc.rss(), before.seintje);
      const figure: Figure = {
        name: `resident memory per idle stream, ${count.toLocaleString("en")} held`,
        unit: "bytes",
        ours,
        baseline: { name: "bare Node SSE server", value: perStream(bare.proc.rss(), before.bare) },
        peer: nchan
          ? { name: "nchan (worker)", value: perStream(nchan.workerRss(), before.nchan) }
          : { name: "nchan", skipped: noPeer! },
        target: {
          text: `≤ 16 KiB, and ${count.toLocaleString("en")} held`,
          met: ours <= 16 * 1024 && held === count,
        },
        notes: [`streams held: ${held}`],
      };
      return [figure];
    } finally {
      await Promise.all(clients.map((client) => client.stop()));
      await Promise.all([seintje.stop(), bare.proc.stop(), nchan?.stop()]);
    }
  },
};

export const longpollFanout: Scenario = {
  name: "longpoll-fanout",
  description:
    "time until many waiting long-polls are answered after one publish, beside as many streams of another feed " +
    "on the same server and a bare Node server answering as many held requests",
  async run(size) {
    const count = size.quick ? 500 : 5000;
    const seintje = await startSeintje();
    const bare = await startBenchServer("node-longpoll");
    const clients: Proc[] = [];
    try {
      // Streams follow one feed and long-polls wait on another, so that each publish reaches one kind alone, while
      // the rounds of both (and of the bare server) take turns on the same machine in the same minutes.
      await api(seintje, "PUT", "/v1/feeds/lp-streams");
      await api(seintje, "PUT", "/v1/feeds/lp-polls");
      const streamTarget = seintjeTarget(seintje, "lp-streams", 0);
      const pollTarget = seintjeTarget(seintje, "lp-polls", 0);
      const bareTarget = plainTarget("bare Node long-poll", bare.url);
      const streams = await holdStreams(streamTarget, count);
      clients.push(streams);
      const polls = holdPolls(`${seintje.url}/v1/feeds/lp-polls/events?wait=60&limit=1`, count, seintje.auth);
      const barePolls = holdPolls(`${bare.url}/poll`, count, {});
      clients.push(polls, barePolls);
      await Promise.all([polls.waitForLine(/^started$/), barePolls.waitForLine(/^started$/)]);

      /** Sends every long-poll of a client again and waits until the server holds them all. */
      const pollAgain = async (client: Proc, after: string, held: () => Promise<number>) => {
        const ready = client.lines.length;
        client.send(`poll ${after}`);
        await until(
          async () => client.lines.slice(ready).some((line) => line === `ready ${count}`),
          120_000,
          "polls sent",
        );
        await until(async () => (await held()) === count, 60_000, "polls waiting");
      };
      const times = { polls: [] as number[], streams: [] as number[], bare: [] as number[] };
      // Round 0 warms each up and is not counted.
      const counted = size.quick ? 3 : 9;
      for (let round = 0; round <= counted; round += 1) {
        const head = (await api(seintje, "GET", "/v1/feeds/lp-polls")).head as string;
        await pollAgain(polls, head, () => metric(seintje, "seintje_longpolls_waiting"));
        const [pollTime] = await oneRound(pollTarget, [polls]);
        await sleep(200);
        const [streamTime] = await oneRound(streamTarget, [streams]);
        await sleep(200);
        await pollAgain(barePolls, "0", async () => Number(await (await fetch(`${bare.url}/held`)).text()));
        const [bareTime] = await oneRound(bareTarget, [barePolls]);
        await sleep(200);
        if (round === 0) continue;
        times.polls.push(pollTime!);
        times.streams.push(streamTime!);
        times.bare.push(bareTime!);
      }
      const ours = median(times.polls);
      const streamTime = median(times.streams);
      return [
        {
          name: `one publish to the last of ${count.toLocaleString("en")} waiting long-polls`,
          unit: "ms",
          ours,
          baseline: { name: "as many streams of another feed, same server", value: streamTime },
          peer: { name: "bare Node long-poll server", value: median(times.bare) },
          target: { text: "≤ 1.5 × sse-fanout", met: ours / streamTime <= 1.5 },
          notes: [
            ...Object.entries(times).map(
              ([name, values]) =>
                `${name} rounds (ms): ${values.map((value) => value.toFixed(1)).join(", ")}`,
            ),
            // A server that does nothing but answer long-polls, against the same target (docs/BENCHMARKS.md).
            `the bare long-poll server took ${(median(times.bare) / streamTime).toFixed(2)} × the streams`,
          ],
        },
      ];
    } finally {
      await Promise.all(clients.map((client) => client.stop()));
      await Promise.all([seintje.stop(), bare.proc.stop()]);
    }
  },
};
