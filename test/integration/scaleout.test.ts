import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { EventSource } from "eventsource";
import pg from "pg";
import { DIALECT, databaseEnv } from "../support/database.js";
import { call, cloudEvent, publishBatch, readAll, useToken } from "../support/http.js";
import { sampleValue, scrape } from "../support/metrics.js";
import { type ServerProcess, startServerProcess } from "../support/process.js";
import { startReceiver } from "../support/receiver.js";
import { tempDir, tokenFor } from "../support/service.js";
import { eventually, pause, watched } from "../support/wait.js";

/**
 * Several `seintje serve` processes on one PostgreSQL database, as behind a load balancer. These run on the
 * PostgreSQL pass of the suite; SQLite serves one process by design.
 */

const HOOKS = {
  SEINTJE_CALLBACK_HTTP: "true",
  SEINTJE_CALLBACK_ALLOW: "127.0.0.1",
  SEINTJE_PING_RETRY: "0.2",
  SEINTJE_PING_TIMEOUT: "2",
};

interface Cluster {
  dir: string;
  env: Record<string, string>;
  headers: Record<string, string>;
  nodes: ServerProcess[];
  /** A further node on the same database. */
  add(): Promise<ServerProcess>;
  stop(): Promise<void>;
}

async function startCluster(size: number, extra: Record<string, string> = {}): Promise<Cluster> {
  const dir = tempDir("seintje-nodes-");
  // The nodes share the data dir, as they would share a volume: one signing key, one key for webhook secrets.
  const env = { SEINTJE_DATA_DIR: dir, ...(await databaseEnv(dir)), ...HOOKS, ...extra };
  const nodes: ServerProcess[] = [];
  let token: string | undefined;
  const cluster: Cluster = {
    dir,
    env,
    headers: {},
    nodes,
    async add() {
      const node = await startServerProcess(env);
      nodes.push(node);
      if (token) useToken(node.url, token);
      return node;
    },
    async stop() {
      for (const node of nodes) useToken(node.url, undefined);
      for (const node of nodes) if (node.child.exitCode === null) node.child.kill("SIGTERM");
      await Promise.all(nodes.map((node) => node.exited));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  // One after the other: the first creates the keys and migrates.
  for (let index = 0; index < size; index += 1) await cluster.add();
  token = await tokenFor(dir, "admin");
  cluster.headers = { authorization: `Bearer ${token}` };
  for (const node of nodes) useToken(node.url, token);
  return cluster;
}

function post(node: ServerProcess, cluster: Cluster, path: string, body: unknown, type = "application/json") {
  return call(`${node.url}${path}`, {
    method: "POST",
    headers: { ...cluster.headers, "content-type": type },
    body: JSON.stringify(body),
  });
}

const onPostgres = {
  skip: DIALECT !== "postgres" && "several nodes need PostgreSQL (the PostgreSQL pass runs these)",
};

describe("two nodes on one PostgreSQL database", onPostgres, () => {
  let cluster: Cluster;
  before(async () => {
    cluster = await startCluster(2);
  });
  after(() => cluster?.stop());

  it("numbers the events of 20 concurrent publishers on both nodes 1..N, each event once", async () => {
    const [a, b] = cluster.nodes as [ServerProcess, ServerProcess];
    const put = await call(`${a.url}/v1/feeds/shared`, { method: "PUT", headers: cluster.headers });
    assert.equal(put.status, 201);
    const published: string[] = [];
    await Promise.all(
      Array.from({ length: 20 }, async (_, publisher) => {
        const node = publisher % 2 === 0 ? a : b;
        for (let round = 0; round < 15; round += 1) {
          const events = Array.from({ length: 1 + (round % 3) }, () => cloudEvent());
          const reply = await publishBatch(node.url, "shared", events);
          assert.equal(reply.status, 201, reply.text);
          published.push(...events.map((event) => event.id as string));
        }
      }),
    );
    for (const node of [a, b]) {
      const events = await readAll(node.url, "shared");
      assert.deepEqual(
        events.map((event) => Number(event.sequence)),
        Array.from({ length: published.length }, (_, index) => index + 1),
      );
      assert.deepEqual(events.map((event) => event.id).sort(), [...published].sort());
    }
  });

  it("stores an event published on both nodes at once once, and answers both with its sequence", async () => {
    const [a, b] = cluster.nodes as [ServerProcess, ServerProcess];
    const put = await call(`${a.url}/v1/feeds/twice`, { method: "PUT", headers: cluster.headers });
    assert.equal(put.status, 201);
    // Each node reads what the feed holds before it takes the feed's lock to write, so the same events sent to
    // both at once race past that read: the unique (source, id) index refuses the second write, and that node
    // reads again and answers with the sequences stored.
    let published = 0;
    for (let round = 0; round < 20; round += 1) {
      const events = Array.from({ length: 1 + (round % 3) }, () => cloudEvent());
      published += events.length;
      const replies = await Promise.all([a, b].map((node) => publishBatch(node.url, "twice", events)));
      for (const reply of replies) assert.ok(reply.status === 201 || reply.status === 200, reply.text);
      assert.deepEqual(
        replies.map((reply) => reply.status).sort(),
        [200, 201],
        "one node stored them, the other found them stored",
      );
      assert.deepEqual(replies[0]!.body.events, replies[1]!.body.events);
    }
    const stored = await readAll(a.url, "twice");
    assert.deepEqual(
      stored.map((event) => Number(event.sequence)),
      Array.from({ length: stored.length }, (_, index) => index + 1),
    );
    assert.equal(new Set(stored.map((event) => event.id)).size, stored.length, "each event once");
    assert.equal(stored.length, published);
  });

  it("applies a type's schema declared on node A to the next publish on node B", async () => {
    const [a, b] = cluster.nodes as [ServerProcess, ServerProcess];
    await call(`${a.url}/v1/feeds/typed`, { method: "PUT", headers: cluster.headers });
    const type = "nl.example.typed";
    const event = (data: unknown) => cloudEvent({ type, data });
    // B compiles the feed's (empty) catalogue and caches it.
    assert.equal((await publishBatch(b.url, "typed", [event("text")])).status, 201);
    const declare = (schema: unknown) =>
      call(`${a.url}/v1/feeds/typed/types/${type}`, {
        method: "PUT",
        headers: { ...cluster.headers, "content-type": "application/json" },
        body: JSON.stringify({ schema }),
      });
    assert.equal((await declare({ type: "object", required: ["n"] })).status, 201);
    const refused = await publishBatch(b.url, "typed", [event({ m: 1 })]);
    assert.equal(refused.status, 400, refused.text);
    assert.equal(refused.body.errors[0].pointer, "/0/data/n");
    assert.equal((await declare({ type: "object" })).status, 200);
    assert.equal((await publishBatch(b.url, "typed", [event({ m: 1 })])).status, 201);
  });

  it("decides node B's appends on what node A changed since B last appended to the feed", async () => {
    const [a, b] = cluster.nodes as [ServerProcess, ServerProcess];
    const feedUrl = `${a.url}/v1/feeds/remembered`;
    const putFeedOn = (settings: unknown) =>
      call(feedUrl, {
        method: "PUT",
        headers: { ...cluster.headers, "content-type": "application/json" },
        body: JSON.stringify(settings),
      });
    assert.equal((await putFeedOn({})).status, 201);
    // B appends once, so it has read the feed and appends to it next without reading it first.
    assert.equal((await publishBatch(b.url, "remembered", [cloudEvent()])).status, 201);

    // An event stored through A is a repeat on B, and with other content a conflict.
    const stored = cloudEvent({ data: { n: 1 } });
    assert.equal((await publishBatch(a.url, "remembered", [stored])).body.events[0].sequence, "2");
    const repeat = await publishBatch(b.url, "remembered", [cloudEvent(), stored]);
    assert.equal(repeat.status, 201, repeat.text);
    assert.deepEqual(
      repeat.body.events.map((event: { sequence: string }) => event.sequence),
      ["3", "2"],
    );
    const conflict = await publishBatch(b.url, "remembered", [{ ...stored, data: { n: 2 } }]);
    assert.equal(conflict.status, 409, conflict.text);

    // A type policy set on A applies to B's next append.
    const type = "nl.example.late";
    assert.equal((await putFeedOn({ typePolicy: "declared" })).status, 200);
    const undeclared = await publishBatch(b.url, "remembered", [cloudEvent({ type })]);
    assert.equal(undeclared.status, 400, undeclared.text);
    assert.deepEqual(undeclared.body.errors, [
      { pointer: "/0/type", detail: "is not a declared type of this feed, whose typePolicy is declared" },
    ]);
    // B refused it on a fresh read, and remembers that; a type A declares since is taken on B's next append.
    const declared = await call(`${feedUrl}/types/${type}`, {
      method: "PUT",
      headers: { ...cluster.headers, "content-type": "application/json" },
      body: JSON.stringify({}),
    });
    assert.equal(declared.status, 201, declared.text);
    const taken = await publishBatch(b.url, "remembered", [cloudEvent({ type })]);
    assert.equal(taken.status, 201, taken.text);
    assert.equal(taken.body.events[0].sequence, "4");

    // The feed deleted and made again on A under its name: B appends to the new feed (an event of the type the
    // old feed declared, so that what B remembers of the old one would take it).
    assert.equal((await call(feedUrl, { method: "DELETE", headers: cluster.headers })).status, 204);
    assert.equal((await putFeedOn({})).status, 201);
    const fresh = await publishBatch(b.url, "remembered", [cloudEvent({ type })]);
    assert.equal(fresh.status, 201, fresh.text);
    assert.equal(fresh.body.events[0].sequence, "1");
    assert.deepEqual(
      (await readAll(a.url, "remembered")).map((event) => event.id),
      [fresh.body.events[0].id],
    );
  });

  it("streams on node B what is published on node A, p99 under 100 ms over 200 events", async () => {
    const [a, b] = cluster.nodes as [ServerProcess, ServerProcess];
    await call(`${a.url}/v1/feeds/latency`, { method: "PUT", headers: cluster.headers });
    const arrived = new Map<string, number>();
    let open = false;
    const source = new EventSource(`${b.url}/v1/feeds/latency/events`, {
      fetch: (input, init) =>
        fetch(input, { ...init, headers: { ...(init?.headers ?? {}), ...cluster.headers } }),
    });
    source.onopen = () => {
      open = true;
    };
    source.onmessage = (message) => arrived.set(JSON.parse(message.data).id, performance.now());
    try {
      await eventually(async () => (open ? true : undefined), 5000, "the stream to open");
      const sent = new Map<string, number>();
      for (let index = 0; index < 200; index += 1) {
        const event = cloudEvent();
        sent.set(event.id as string, performance.now());
        const reply = await publishBatch(a.url, "latency", [event]);
        assert.equal(reply.status, 201);
        await pause(5);
      }
      await eventually(async () => (arrived.size >= 200 ? true : undefined), 10_000, "200 events on node B");
      const latencies = [...sent].map(([id, at]) => arrived.get(id)! - at).sort((x, y) => x - y);
      const p99 = latencies[Math.ceil(latencies.length * 0.99) - 1]!;
      const p50 = latencies[Math.floor(latencies.length / 2)]!;
      console.log(
        `cross-node stream latency over 200 events: p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms`,
      );
      assert.ok(p99 < 100, `p99 ${p99.toFixed(1)} ms`);
    } finally {
      source.close();
    }
  });

  it("answers a long-poll on node B when node A appends", async () => {
    const [a, b] = cluster.nodes as [ServerProcess, ServerProcess];
    await call(`${a.url}/v1/feeds/waiting`, { method: "PUT", headers: cluster.headers });
    const started = performance.now();
    const waiting = call(`${b.url}/v1/feeds/waiting/events?after=0&wait=20`, { headers: cluster.headers });
    await eventually(async () => sampleValue(await scrape(b.url), "seintje_longpolls_waiting") === 1);
    assert.equal((await publishBatch(a.url, "waiting", [cloudEvent()])).status, 201);
    const reply = await waiting;
    assert.equal(reply.status, 200);
    assert.equal(reply.body.events.length, 1);
    assert.ok(performance.now() - started < 5000, "answered on the append, not at the end of the wait");
  });

  it("ends node B's streams of a feed that node A deletes", async () => {
    const [a, b] = cluster.nodes as [ServerProcess, ServerProcess];
    await call(`${a.url}/v1/feeds/doomed`, { method: "PUT", headers: cluster.headers });
    assert.equal((await publishBatch(a.url, "doomed", [cloudEvent()])).status, 201);
    const controller = new AbortController();
    const response = await fetch(`${b.url}/v1/feeds/doomed/events`, {
      headers: { ...cluster.headers, accept: "text/event-stream" },
      signal: controller.signal,
    });
    assert.equal(response.status, 200);
    const body = (async () => {
      let text = "";
      for await (const chunk of response.body as AsyncIterable<Uint8Array>) text += Buffer.from(chunk);
      return text;
    })();
    await eventually(async () => sampleValue(await scrape(b.url), "seintje_streams_open") === 1);
    const deleted = await call(`${a.url}/v1/feeds/doomed`, { method: "DELETE", headers: cluster.headers });
    assert.equal(deleted.status, 204);
    const timer = setTimeout(() => controller.abort(), 5000);
    const text = await body.finally(() => clearTimeout(timer));
    assert.match(text, /^id: 1$/m, "the event before the deletion");
    assert.ok(!controller.signal.aborted, "node B ended the stream itself");
  });

  it("sends each ping from one node only", async () => {
    const [a, b] = cluster.nodes as [ServerProcess, ServerProcess];
    const receiver = await startReceiver();
    receiver.respond = () => ({ status: 204, delayMs: 20 });
    try {
      await call(`${a.url}/v1/feeds/pinged`, { method: "PUT", headers: cluster.headers });
      const created = await post(a, cluster, "/v1/subscriptions", { feed: "pinged", url: receiver.url });
      assert.equal(created.status, 201, created.text);
      for (let round = 0; round < 40; round += 1) {
        const reply = await publishBatch((round % 2 === 0 ? a : b).url, "pinged", [cloudEvent()]);
        assert.equal(reply.status, 201);
        await pause(10);
      }
      const shown = await eventually(
        async () => {
          const reply = await call(`${b.url}/v1/subscriptions/${created.body.id}`, {
            headers: cluster.headers,
          });
          return reply.body.acked === "40" ? reply.body : undefined;
        },
        15_000,
        "acked = 40",
      );
      assert.equal(shown.status, "active");
      const ids = receiver.pings.map((ping) => ping.headers["webhook-id"]);
      assert.equal(new Set(ids).size, ids.length, `a webhook-id was sent twice: ${ids.join(" ")}`);
      const heads = receiver.pings.map((ping) => Number(ping.event.data.head));
      assert.deepEqual(
        heads,
        [...heads].sort((x, y) => x - y),
        "each ping announces at least what the one before did",
      );
      assert.equal(heads.at(-1), 40);
    } finally {
      await receiver.close();
    }
  });
});

describe("a node that dies mid-delivery", onPostgres, () => {
  it("has its pings sent by another node after their leases lapse", async () => {
    const cluster = await startCluster(1);
    const receiver = await startReceiver();
    try {
      const [a] = cluster.nodes as [ServerProcess];
      await call(`${a.url}/v1/feeds/handover`, { method: "PUT", headers: cluster.headers });
      const ids: string[] = [];
      for (let index = 0; index < 5; index += 1) {
        const created = await post(a, cluster, "/v1/subscriptions", { feed: "handover", url: receiver.url });
        assert.equal(created.status, 201, created.text);
        ids.push(created.body.id);
      }
      // Node A claims every ping and the receiver holds them; then node B joins and node A dies.
      receiver.respond = () => ({ status: 204, delayMs: 60_000 });
      assert.equal((await publishBatch(a.url, "handover", [cloudEvent(), cloudEvent()])).status, 201);
      const held = await receiver.waitForPings(5, 10_000);
      const b = await cluster.add();
      a.child.kill("SIGKILL");
      assert.equal(await a.exited, "SIGKILL");
      receiver.respond = () => ({ status: 204 });
      // The leases lapse 2 s (SEINTJE_PING_TIMEOUT) + 5 s after the claim.
      const resent = await receiver.waitForPings(10, 20_000);
      const first = new Map(held.map((ping) => [ping.event.data.subscription, ping.headers["webhook-id"]]));
      for (const ping of resent.slice(5)) {
        assert.equal(ping.headers["webhook-id"], first.get(ping.event.data.subscription), "the same ping");
      }
      for (const id of ids) {
        await eventually(
          async () => {
            const reply = await call(`${b.url}/v1/subscriptions/${id}`, { headers: cluster.headers });
            return reply.body.acked === "2" ? true : undefined;
          },
          5000,
          `subscription ${id} acked by node B`,
        );
      }
    } finally {
      await receiver.close();
      await cluster.stop();
    }
  });
});

describe("the connection that listens for other nodes", onPostgres, () => {
  it("reconnects after it is cut, and then wakes what waits for appends made meanwhile", async () => {
    const cluster = await startCluster(2);
    try {
      const [a, b] = cluster.nodes as [ServerProcess, ServerProcess];
      await call(`${a.url}/v1/feeds/cut`, { method: "PUT", headers: cluster.headers });
      const waiting = call(`${b.url}/v1/feeds/cut/events?after=0&wait=30`, { headers: cluster.headers });
      await eventually(async () => sampleValue(await scrape(b.url), "seintje_longpolls_waiting") === 1);
      const database = new URL(cluster.env.DATABASE_URL!).pathname.slice(1);
      const admin = new pg.Client({ connectionString: cluster.env.DATABASE_URL });
      await admin.connect();
      try {
        // Cut both nodes' listening connections, and append while they are down.
        const cut = await admin.query(
          "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and application_name = 'seintje-listen'",
          [database],
        );
        assert.equal(cut.rowCount, 2);
      } finally {
        await admin.end();
      }
      const started = performance.now();
      assert.equal((await publishBatch(a.url, "cut", [cloudEvent()])).status, 201);
      const reply = await waiting;
      assert.equal(reply.status, 200);
      assert.equal(reply.body.events.length, 1);
      assert.ok(performance.now() - started < 10_000, "woken after the reconnect, before the wait ended");
      await eventually(
        async () =>
          b.lines.some((line) => line.includes("lost the connection that listens")) ? true : undefined,
        2000,
        "node B to log the lost connection",
      );
    } finally {
      await cluster.stop();
    }
  });
});

describe("a reader following `after` under concurrent publishing", onPostgres, () => {
  it("never skips an event", async () => {
    const cluster = await startCluster(2, { SEINTJE_DB_POOL_MAX: "20" });
    try {
      const [a, b] = cluster.nodes as [ServerProcess, ServerProcess];
      await call(`${a.url}/v1/feeds/race`, { method: "PUT", headers: cluster.headers });
      const publishers = 16;
      const rounds = 40;
      const total = publishers * rounds * 2;
      const publishing = watched(
        Promise.all(
          Array.from({ length: publishers }, async (_, publisher) => {
            const node = publisher % 2 === 0 ? a : b;
            for (let round = 0; round < rounds; round += 1) {
              const reply = await publishBatch(node.url, "race", [cloudEvent(), cloudEvent()]);
              assert.equal(reply.status, 201, reply.text);
            }
          }),
        ),
      );
      const readers = [a, b].map(async (node) => {
        const seen: number[] = [];
        let cursor = 0;
        const deadline = Date.now() + 60_000;
        // Until publishing has ended and the reader has everything (or at once, when publishing failed).
        while (publishing.goOn(cursor >= total) && Date.now() < deadline) {
          const reply = await call(`${node.url}/v1/feeds/race/events?after=${cursor}&limit=1000&wait=1`, {
            headers: cluster.headers,
          });
          assert.equal(reply.status, 200, reply.text);
          for (const event of reply.body.events) {
            const sequence = Number(event.sequence);
            // A skip shows here: each page must go on exactly where the cursor stood.
            assert.equal(sequence, cursor + 1, `after ${cursor} came ${sequence}`);
            cursor = sequence;
            seen.push(sequence);
          }
        }
        return seen;
      });
      const [outcome, ...read] = await Promise.allSettled([publishing.done, ...readers]);
      if (outcome.status === "rejected") throw outcome.reason;
      for (const result of read) {
        if (result.status === "rejected") throw result.reason;
        assert.deepEqual(
          result.value,
          Array.from({ length: total }, (_, index) => index + 1),
        );
      }
    } finally {
      await cluster.stop();
    }
  });
});
