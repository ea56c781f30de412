import pg from "pg";
import {
  api,
  benchEvent,
  median,
  now,
  type Proc,
  percentile,
  type Scenario,
  type Seintje,
  sleep,
  startScript,
  startSeintje,
  tempDir,
  wrk,
} from "../harness.js";

/**
 * Two seintje nodes on one PostgreSQL database (127.0.0.1:5432 unless SEINTJE_BENCH_POSTGRES_URL says otherwise),
 * each a process of its own with the same data dir (the same keys), on a database made for the run.
 */

const ADMIN_URL = process.env.SEINTJE_BENCH_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

async function admin(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: ADMIN_URL, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

interface Cluster {
  url: string;
  nodes: [Seintje, Seintje];
  stop(): Promise<void>;
}

async function twoNodes(): Promise<Cluster> {
  const name = `seintje_bench_${process.pid}_${Date.now()}`;
  await admin(`CREATE DATABASE ${name}`);
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  const dir = tempDir("seintje-bench-pg-");
  const env = { DATABASE_URL: url.href, SEINTJE_DB_POOL_MAX: "20" };
  const first = await startSeintje(env, dir.path);
  const second = await startSeintje(env, dir.path);
  return {
    url: url.href,
    nodes: [first, second],
    async stop() {
      await Promise.all([first.stop(), second.stop()]);
      dir.remove();
      await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
  };
}

export const pgPublish: Scenario = {
  name: "pg-publish",
  description:
    "durable single-event POSTs/s on PostgreSQL over two nodes, beside a bare pg insert loop with 8 clients",
  async run(size) {
    const cluster = await twoNodes();
    try {
      const [a, b] = cluster.nodes;
      await api(a, "PUT", "/v1/feeds/bench");
      const ours: number[] = [];
      const bare: number[] = [];
      let errors = 0;
      for (let round = 0; round < size.rounds; round += 1) {
        const results = await Promise.all(
          [a, b].map((node, index) =>
            wrk(`${node.url}/`, {
              connections: 25,
              seconds: size.seconds,
              script: "publish.lua",
              env: { TOKEN: node.token, FEED: "bench", PREFIX: `pg-${round}-${index}-${Date.now()}` },
            }),
          ),
        );
        ours.push(results.reduce((sum, result) => sum + result.requestsPerSecond, 0));
        errors += results.reduce((sum, result) => sum + result.errors, 0);
        const loop = startScript("baselines.ts", ["pg", cluster.url, String(size.seconds), "8"]);
        bare.push(
          JSON.parse(await loop.waitForLine(/^\{"rowsPerSecond"/, (size.seconds + 30) * 1000)).rowsPerSecond,
        );
        await loop.stop();
      }
      return [
        {
          name: "durable single-event publishes, two nodes, 25 connections each",
          unit: "req/s",
          ours: median(ours),
          baseline: { name: "bare pg single-row INSERTs, 8 clients", value: median(bare) },
          target: { text: "≥ 1.0 × bare pg", met: median(ours) / median(bare) >= 1 },
          notes: errors > 0 ? [`${errors} requests failed`] : [],
        },
      ];
    } finally {
      await cluster.stop();
    }
  },
};

let rounds = 0;

/** Publishes marked events one by one on `publisher` and times their arrival at the stream `client` holds. */
async function streamLatencies(publisher: Seintje, feed: string, count: number, client: Proc) {
  const latencies: number[] = [];
  for (let index = 0; index < count; index += 1) {
    rounds += 1;
    const round = rounds;
    const marker = `bench-round-${round}`;
    const arrived = client.waitForLine(new RegExp(`^round ${round} `), 10_000);
    const published = now();
    await api(
      publisher,
      "POST",
      `/v1/feeds/${feed}/events`,
      { ...benchEvent(), data: { marker } },
      "application/cloudevents+json",
    );
    latencies.push(Number((await arrived).split(" ")[3]) - published);
    await sleep(5);
  }
  return latencies;
}

export const pgCrossNode: Scenario = {
  name: "pg-cross-node",
  description: "publish on node A until a stream on node B has it (p99), beside the same on one node",
  async run(size) {
    const count = size.quick ? 50 : 300;
    const cluster = await twoNodes();
    const clients: Proc[] = [];
    try {
      const [a, b] = cluster.nodes;
      await api(a, "PUT", "/v1/feeds/cross");
      const stream = startScript("fanout-client.ts", [
        "sse",
        `${b.url}/v1/feeds/cross/events?after=0`,
        "1",
        JSON.stringify(b.auth),
      ]);
      clients.push(stream);
      await stream.waitForLine(/^ready 1$/, 30_000);
      const cross: number[] = [];
      const same: number[] = [];
      for (let part = 0; part < 4; part += 1) {
        cross.push(...(await streamLatencies(a, "cross", count / 4, stream)));
        same.push(...(await streamLatencies(b, "cross", count / 4, stream)));
      }
      return [
        {
          name: `publish on A to a stream on B, p99 of ${count}`,
          unit: "ms",
          ours: percentile(cross, 99),
          baseline: { name: "publish and stream on one node, p99", value: percentile(same, 99) },
          target: { text: "< 100 ms", met: percentile(cross, 99) < 100 },
          notes: [
            `p50 ${median(cross).toFixed(1)} ms across nodes, ${median(same).toFixed(1)} ms on one node`,
          ],
        },
      ];
    } finally {
      await Promise.all(clients.map((client) => client.stop()));
      await cluster.stop();
    }
  },
};
