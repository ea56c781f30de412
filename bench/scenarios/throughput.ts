import { writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  api,
  type Figure,
  fill,
  median,
  type Scenario,
  type Seintje,
  startBenchServer,
  startScript,
  startSeintje,
  tempDir,
  wrk,
} from "../harness.js";
import { startNchan, whyNoNchan } from "../nchan.js";

/** Publishing and reading: requests per second under wrk, each round interleaved with its baselines'. */

function ratioTarget(text: string, ours: number, baseline: number, least: number) {
  return { text, met: ours / baseline >= least };
}

function errorNote(errors: number): string[] {
  return errors > 0 ? [`${errors} requests failed (non-2xx or socket errors)`] : [];
}

export const publishSingle: Scenario = {
  name: "publish-single",
  description:
    "durable single-event POSTs/s over 50 connections, beside a bare Koa and a bare Node hello world",
  async run(size) {
    const seintje = await startSeintje();
    const koa = await startBenchServer("koa");
    const node = await startBenchServer("node-http");
    const noPeer = whyNoNchan();
    const nchan = noPeer ? undefined : await startNchan();
    try {
      await api(seintje, "PUT", "/v1/feeds/bench");
      const ours: number[] = [];
      const koaRates: number[] = [];
      const nodeRates: number[] = [];
      const nchanRates: number[] = [];
      let errors = 0;
      for (let round = 0; round < size.rounds; round += 1) {
        koaRates.push(
          (await wrk(`${koa.url}/`, { connections: 50, seconds: size.seconds })).requestsPerSecond,
        );
        const published = await wrk(`${seintje.url}/`, {
          connections: 50,
          seconds: size.seconds,
          script: "publish.lua",
          env: { TOKEN: seintje.token, FEED: "bench", PREFIX: `single-${round}-${Date.now()}` },
        });
        ours.push(published.requestsPerSecond);
        errors += published.errors;
        nodeRates.push(
          (await wrk(`${node.url}/`, { connections: 50, seconds: size.seconds })).requestsPerSecond,
        );
        if (nchan) {
          const peer = await wrk(`${nchan.url}/pub`, {
            connections: 50,
            seconds: size.seconds,
            script: "nchan-publish.lua",
          });
          nchanRates.push(peer.requestsPerSecond);
        }
      }
      const figure: Figure = {
        name: "durable single-event publishes",
        unit: "req/s",
        ours: median(ours),
        baseline: { name: "bare Koa hello world", value: median(koaRates) },
        peer: nchan
          ? { name: "nchan publish", value: median(nchanRates) }
          : { name: "nchan publish", skipped: noPeer! },
        target: ratioTarget("≥ 0.5 × bare Koa", median(ours), median(koaRates), 0.5),
        notes: [`bare Node http: ${Math.round(median(nodeRates))} req/s`, ...errorNote(errors)],
      };
      return [figure];
    } finally {
      await Promise.all([seintje.stop(), koa.proc.stop(), node.proc.stop(), nchan?.stop()]);
    }
  },
};

/** The schema of publish-schema's events: ten members, each with a rule to check. */
const PARCEL_SCHEMA = {
  type: "object",
  required: [
    "object",
    "note",
    "perceel",
    "gemeente",
    "oppervlakte",
    "datum",
    "status",
    "eigenaar",
    "aandeel",
    "actief",
  ],
  properties: {
    object: { type: "integer", minimum: 1 },
    note: { type: "string", maxLength: 1000 },
    perceel: { type: "string", pattern: "^[A-Z]{3}[0-9]{2}-[A-Z]-[0-9]+$" },
    gemeente: { type: "string", minLength: 1 },
    oppervlakte: { type: "integer", minimum: 1 },
    datum: { type: "string", format: "date" },
    status: { enum: ["ingeschreven", "overgedragen", "vervallen"] },
    eigenaar: { type: "string", maxLength: 200 },
    aandeel: { type: "number", exclusiveMinimum: 0, maximum: 1 },
    actief: { type: "boolean" },
  },
  additionalProperties: false,
};

export const publishSchema: Scenario = {
  name: "publish-schema",
  description:
    "durable single-event POSTs/s into a feed whose type has a 10-member JSON Schema, beside the same into a feed without",
  async run(size) {
    const seintje = await startSeintje();
    try {
      await api(seintje, "PUT", "/v1/feeds/plain");
      await api(seintje, "PUT", "/v1/feeds/typed", { typePolicy: "declared" });
      await api(seintje, "PUT", "/v1/feeds/typed/types/nl.example.bench.changed", { schema: PARCEL_SCHEMA });
      const typed: number[] = [];
      const plain: number[] = [];
      let errors = 0;
      const publish = async (feed: string, round: number) => {
        const result = await wrk(`${seintje.url}/`, {
          connections: 50,
          seconds: size.seconds,
          script: "publish.lua",
          env: { TOKEN: seintje.token, FEED: feed, DATA: "parcel", PREFIX: `${feed}-${round}-${Date.now()}` },
        });
        errors += result.errors;
        return result.requestsPerSecond;
      };
      for (let round = 0; round < size.rounds; round += 1) {
        // Alternating which goes first, so neither always meets the warmer (or the busier) machine.
        if (round % 2 === 0) {
          plain.push(await publish("plain", round));
          typed.push(await publish("typed", round));
        } else {
          typed.push(await publish("typed", round));
          plain.push(await publish("plain", round));
        }
      }
      const held = await api(seintje, "GET", "/v1/feeds/typed");
      return [
        {
          name: "durable single-event publishes, checked against a 10-member schema",
          unit: "req/s",
          ours: median(typed),
          baseline: { name: "the same publishes into a feed without types", value: median(plain) },
          target: ratioTarget("≥ 0.9 × without a schema", median(typed), median(plain), 0.9),
          notes: [
            `the typed feed holds ${(held as { head: string }).head} events, each checked`,
            ...errorNote(errors),
          ],
        },
      ];
    } finally {
      await seintje.stop();
    }
  },
};

/** A bare better-sqlite3 insert loop in its own process: rows per second. */
async function sqliteInserts(seconds: number, perTransaction: number): Promise<number> {
  const dir = tempDir("seintje-bench-sqlite-");
  try {
    const proc = startScript("baselines.ts", ["sqlite", dir.path, String(seconds), String(perTransaction)]);
    const line = await proc.waitForLine(/^\{"rowsPerSecond"/, (seconds + 30) * 1000);
    await proc.stop();
    return JSON.parse(line).rowsPerSecond as number;
  } finally {
    dir.remove();
  }
}

export const publishBatch: Scenario = {
  name: "publish-batch",
  description:
    "durable events/s published in batches of 100, beside bare SQLite insert loops of the same durability",
  async run(size) {
    const seintje = await startSeintje();
    try {
      await api(seintje, "PUT", "/v1/feeds/bench");
      const ours: number[] = [];
      const thousandRows: number[] = [];
      const singleRows: number[] = [];
      let errors = 0;
      for (let round = 0; round < size.rounds; round += 1) {
        thousandRows.push(await sqliteInserts(size.seconds, 1000));
        const published = await wrk(`${seintje.url}/`, {
          connections: 8,
          seconds: size.seconds,
          script: "batch.lua",
          env: { TOKEN: seintje.token, FEED: "bench", BATCH: "100", PREFIX: `batch-${round}-${Date.now()}` },
        });
        ours.push(published.requestsPerSecond * 100);
        errors += published.errors;
        singleRows.push(await sqliteInserts(size.seconds, 1));
      }
      return [
        {
          name: "durable events in batches of 100",
          unit: "events/s",
          ours: median(ours),
          baseline: { name: "bare SQLite, 1,000-row transactions", value: median(thousandRows) },
          target: ratioTarget(
            "≥ 0.35 × bare SQLite 1,000-row transactions",
            median(ours),
            median(thousandRows),
            0.35,
          ),
          notes: [
            `bare SQLite, single-row transactions: ${Math.round(median(singleRows))} rows/s`,
            ...errorNote(errors),
          ],
        },
      ];
    } finally {
      await seintje.stop();
    }
  },
};

/** A feed of `events` events for the read scenarios. */
async function filledFeed(events: number): Promise<Seintje> {
  const seintje = await startSeintje();
  await api(seintje, "PUT", "/v1/feeds/read");
  await fill(seintje, "read", events);
  return seintje;
}

export const readSequential: Scenario = {
  name: "read-sequential",
  description:
    "events/s served in pages of 1,000 at random cursors in a large feed, beside bare Node reading the same pages from the same SQLite file",
  async run(size) {
    const events = size.quick ? 50_000 : 1_000_000;
    const seintje = await filledFeed(events);
    const pageFile = join(seintje.dir, "page.json");
    const sample = await fetch(`${seintje.url}/v1/feeds/read/events?after=${events / 2}&limit=1000`, {
      headers: seintje.auth,
    });
    const page = Buffer.from(await sample.arrayBuffer());
    writeFileSync(pageFile, page);
    // The floor of a durable read: the same pages from the same file (read while seintje has it open, as WAL
    // allows), one prepared statement, the stored texts joined; no authentication, routing or metrics.
    const sqlite = await startBenchServer("sqlite-page", [join(seintje.dir, "seintje.db")]);
    // The old baseline, kept as a note: one page's bytes from memory, which no durable read can approach.
    const node = await startBenchServer("node-http", [pageFile]);
    try {
      const ours: number[] = [];
      const bare: number[] = [];
      const memory: number[] = [];
      let errors = 0;
      const pages = (url: string, token: string) =>
        wrk(`${url}/`, {
          connections: 8,
          seconds: size.seconds,
          script: "pages.lua",
          env: { TOKEN: token, FEED: "read", EVENTS: String(events), LIMIT: "1000" },
        });
      for (let round = 0; round < size.rounds; round += 1) {
        const read = await pages(seintje.url, seintje.token);
        ours.push(read.requestsPerSecond * 1000);
        errors += read.errors;
        const floor = await pages(sqlite.url, "");
        bare.push(floor.requestsPerSecond * 1000);
        errors += floor.errors;
        memory.push(
          (await wrk(`${node.url}/page`, { connections: 8, seconds: size.seconds })).requestsPerSecond * 1000,
        );
      }
      const figure: Figure = {
        name: `events read in pages of 1,000 (${events.toLocaleString("en")}-event feed)`,
        unit: "events/s",
        ours: median(ours),
        baseline: { name: "bare Node reading the same pages from the same SQLite file", value: median(bare) },
        target: ratioTarget("≥ 0.7 × bare Node reading SQLite", median(ours), median(bare), 0.7),
        notes: [
          `a page is ${page.length.toLocaleString("en")} bytes`,
          `bare Node serving one page's bytes from memory (the old baseline): ${Math.round(median(memory)).toLocaleString("en")} events/s`,
          ...errorNote(errors),
        ],
      };
      return [figure];
    } finally {
      await Promise.all([seintje.stop(), sqlite.proc.stop(), node.proc.stop()]);
    }
  },
};

export const readDepth: Scenario = {
  name: "read-depth",
  description: "mean latency of a 100-event page at the end of a large feed ÷ at its start",
  async run(size) {
    const events = size.quick ? 50_000 : 1_000_000;
    const seintje = await filledFeed(events);
    try {
      const deep: number[] = [];
      const shallow: number[] = [];
      const read = (after: number) =>
        wrk(`${seintje.url}/v1/feeds/read/events?limit=100&after=${after}`, {
          connections: 1,
          seconds: size.seconds,
          headers: seintje.auth,
        });
      for (let round = 0; round < size.rounds; round += 1) {
        shallow.push((await read(0)).latencyMs);
        deep.push((await read(events - 100)).latencyMs);
      }
      return [
        {
          name: `page latency at sequence ${events.toLocaleString("en")} ÷ at sequence 1`,
          unit: "ms",
          ours: median(deep),
          baseline: { name: "the same page read at sequence 1", value: median(shallow) },
          target: { text: "≤ 1.2", met: median(deep) / median(shallow) <= 1.2 },
        },
      ];
    } finally {
      await seintje.stop();
    }
  },
};
