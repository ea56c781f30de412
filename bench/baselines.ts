import { join } from "node:path";
import Database from "better-sqlite3";
import pg from "pg";
import { Agent, request } from "undici";

/**
 * The baselines that are loops rather than servers, each in a process of its own; each prints one JSON line.
 *   sqlite <dir> <seconds> <rows-per-transaction>  a bare better-sqlite3 insert loop with seintje's durability:
 *                                                  WAL and synchronous=FULL, an event-sized row per insert
 *                                                  {"rowsPerSecond": n}
 *   pg <url> <seconds> <clients>                   single-row INSERTs (autocommit) from <clients> pg clients
 *                                                  {"rowsPerSecond": n}
 *   posts <url> <count> <concurrency>              <count> POSTs of a ping-sized body with undici, <concurrency>
 *                                                  at a time: what sending a ping costs without seintje
 *                                                  {"postsPerSecond": n, "seconds": s}
 */

const [mode, target, secondsText, third] = process.argv.slice(2);
const seconds = Number(secondsText);
const body = JSON.stringify({ specversion: "1.0", id: "x", data: { note: "x".repeat(200) } });

if (mode === "sqlite") {
  const perTransaction = Number(third);
  const db = new Database(join(target!, "baseline.db"));
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.exec(`CREATE TABLE IF NOT EXISTS events (
    feed_id INTEGER NOT NULL, sequence INTEGER NOT NULL, source TEXT NOT NULL, event_id TEXT NOT NULL,
    type TEXT NOT NULL, subject TEXT, digest TEXT NOT NULL, body TEXT NOT NULL, appended_at INTEGER NOT NULL,
    PRIMARY KEY (feed_id, sequence), UNIQUE (feed_id, source, event_id))`);
  const insert = db.prepare(
    "INSERT INTO events VALUES (1, ?, 'urn:bench', ?, 'nl.example.bench', 's', 'd', ?, ?)",
  );
  const transaction = db.transaction((first: number) => {
    for (let i = 0; i < perTransaction; i += 1) insert.run(first + i, `e-${first + i}`, body, Date.now());
  });
  let rows = 0;
  const started = performance.now();
  while (performance.now() - started < seconds * 1000) {
    transaction(rows);
    rows += perTransaction;
  }
  console.log(JSON.stringify({ rowsPerSecond: rows / ((performance.now() - started) / 1000) }));
  db.close();
} else if (mode === "pg") {
  const clients = Number(third);
  const setup = new pg.Client({ connectionString: target });
  await setup.connect();
  await setup.query(`CREATE TABLE IF NOT EXISTS baseline_events (
    feed_id bigint NOT NULL, sequence bigint NOT NULL, source text NOT NULL, event_id text NOT NULL,
    type text NOT NULL, subject text, digest text NOT NULL, body text NOT NULL, appended_at bigint NOT NULL,
    PRIMARY KEY (feed_id, sequence), UNIQUE (feed_id, source, event_id))`);
  await setup.query("TRUNCATE baseline_events");
  await setup.end();
  let rows = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, client) => {
      const connection = new pg.Client({ connectionString: target });
      await connection.connect();
      let sequence = client * 1e9;
      while (performance.now() - started < seconds * 1000) {
        sequence += 1;
        await connection.query(
          "INSERT INTO baseline_events VALUES (1, $1, 'urn:bench', $2, 'nl.example.bench', 's', 'd', $3, $4)",
          [sequence, `e-${sequence}`, body, Date.now()],
        );
        rows += 1;
      }
      await connection.end();
    }),
  );
  console.log(JSON.stringify({ rowsPerSecond: rows / ((performance.now() - started) / 1000) }));
} else if (mode === "posts") {
  const count = Number(secondsText);
  const concurrency = Number(third);
  const agent = new Agent({ connections: 32, keepAliveTimeout: 30_000 });
  const ping = JSON.stringify({
    specversion: "1.0",
    id: "p",
    data: { feed: "f", after: "1", head: "2", events: [] },
  });
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        next += 1;
        const response = await request(`${target}/0/baseline-${next}`, {
          method: "POST",
          body: ping,
          headers: { "content-type": "application/cloudevents+json" },
          dispatcher: agent,
        });
        await response.body.dump();
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  console.log(JSON.stringify({ postsPerSecond: count / seconds, seconds }));
  await agent.close();
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
