import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { appendNumbered, type NumberedEvent } from "../../src/db/append.js";
import { migrate, openStorage, type Storage } from "../../src/db/database.js";
import { type FeedRow, insertFeed } from "../../src/db/feeds.js";
import { followedFeeds } from "../../src/db/subscriptions.js";
import { DIALECT, databaseEnv, dropDatabaseOf } from "../support/database.js";
import { tempDir } from "../support/service.js";
import { eventually } from "../support/wait.js";

/**
 * PostgreSQL keeps a generic plan for a prepared statement once it has run it a few times, and keeps it until the
 * planner's statistics of its tables change (autovacuum's ANALYZE, which a new table waits a minute or more for).
 * A plan made while `events` was nearly empty must still not make an append's cost grow with its feed. Here the
 * connection is told to use the generic plan from the first execution, on an empty table, the worst case; the
 * check for events the feed holds is read from the transaction's statistics of the table's indexes.
 */
describe("PostgreSQL statement plans", { skip: DIALECT !== "postgres" && "plans of PostgreSQL's" }, () => {
  let dir: string;
  let url: string;
  let storage: Storage;
  let feed: FeedRow;
  let count = 0;

  const events = (n: number): NumberedEvent[] =>
    Array.from({ length: n }, () => {
      count += 1;
      const json = JSON.stringify({
        specversion: "1.0",
        id: `e-${count}`,
        source: "urn:test",
        type: "t.x",
        data: { note: "x".repeat(200) },
      });
      const digest = createHash("sha256").update(json).digest("hex");
      return { source: "urn:test", id: `e-${count}`, type: "t.x", subject: null, digest, json };
    });

  const append = (db: Storage["writer"], n: number) =>
    appendNumbered(db, storage.node, {
      feedId: feed.id,
      typesVersion: feed.typesVersion,
      events: events(n),
      now: Date.now(),
    });

  before(async () => {
    dir = tempDir();
    url = (await databaseEnv(dir)).DATABASE_URL!;
    // One connection: a prepared statement and its plan belong to a connection.
    storage = await openStorage({ dialect: "postgres", url, pool: { min: 1, max: 1 } });
    await migrate(storage);
    // So that no ANALYZE comes in between and replans the statement.
    await storage.writer.raw("alter table events set (autovacuum_enabled = false)");
    await storage.writer.raw("set plan_cache_mode = force_generic_plan");
    feed = (await insertFeed(
      storage.writer,
      "plans",
      {
        description: null,
        retentionMaxAge: null,
        retentionMaxEvents: null,
        typePolicy: "open",
        public: false,
      },
      Date.now(),
    ))!;
  });

  after(async () => {
    await storage?.close();
    await dropDatabaseOf(dir);
    rmSync(dir, { recursive: true, force: true });
  });

  it("an append looks for the events it holds through the (feed_id, source, event_id) index, however the feed grew since its statement was planned", async () => {
    // Planned, and then planned generically, while the table holds a handful of events.
    for (let round = 0; round < 10; round += 1)
      assert.equal(typeof (await append(storage.writer, 13)), "object");
    // The feed grows to 20,000 events, through the same statement.
    for (let round = 0; round < 20; round += 1)
      assert.equal(typeof (await append(storage.writer, 1000)), "object");
    const head = count;
    // One more append of 10 events, in a transaction, to read what it cost from the transaction's statistics.
    const read = await storage.writer.transaction(async (trx) => {
      const written = await append(trx, 10);
      assert.deepEqual(written, { head });
      const result: { rows: Array<{ name: string; read: number }> } = await trx.raw(
        `select c.relname as name, pg_stat_get_xact_tuples_returned(c.oid) as read
           from pg_index i join pg_class c on c.oid = i.indexrelid where i.indrelid = 'events'::regclass`,
      );
      return Object.fromEntries(result.rows.map((row) => [row.name, Number(row.read)]));
    });
    // Ten probes, each of at most one index entry; a plan that scans the feed by its primary key reads 20,010.
    const total = Object.values(read).reduce((sum, tuples) => sum + tuples, 0);
    assert.ok(total <= 10, `index entries of events read by one append of 10: ${JSON.stringify(read)}`);
  });

  it("an append looks for the events it holds before it waits for the feed's lock, not while holding it", async () => {
    // Another session holds the feed's row lock; the append waits for it. The look is the only part of the
    // statement that reads `events` (the write only inserts), and a read holds its lock on the table until the
    // transaction ends: so the waiting append holds it only if it has already looked.
    const holder = new pg.Client({ connectionString: url });
    await holder.connect();
    try {
      await holder.query("begin");
      await holder.query("select id from feeds where id = $1 for update", [feed.id]);
      const head = count;
      const appending = append(storage.writer, 3);
      const waiter = await eventually(
        async () => {
          // Within a transaction pg_stat_activity is read once, unless its snapshot is cleared.
          await holder.query("select pg_stat_clear_snapshot()");
          const result = await holder.query(
            `select pid from pg_stat_activity
              where datname = current_database() and wait_event_type = 'Lock'
                and query like '%seintje_feed_holds_any%'`,
          );
          return result.rows[0]?.pid as number | undefined;
        },
        10_000,
        "the append waits for the feed's lock",
      );
      const read = await holder.query(
        `select mode from pg_locks
          where pid = $1 and relation = 'events'::regclass and mode = 'AccessShareLock' and granted`,
        [waiter],
      );
      await holder.query("commit");
      assert.deepEqual(await appending, { head });
      assert.equal(read.rows.length, 1, "the waiting append had read events before the lock");
    } finally {
      await holder.end();
    }
  });
});

/**
 * SQLite plans without statistics (seintje runs no ANALYZE): the shape of a statement decides its plan, so a
 * statement that runs often is checked here to reach its rows through an index. PostgreSQL chooses by its tables'
 * statistics, and on tables this small would rightly scan them.
 */
describe("SQLite statement plans", { skip: DIALECT !== "sqlite" && "plans of SQLite's" }, () => {
  let dir: string;
  let storage: Storage;

  before(async () => {
    dir = tempDir();
    storage = await openStorage({ dialect: "sqlite", filename: join(dir, "seintje.db") });
    await migrate(storage);
  });

  after(async () => {
    await storage?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("the dispatcher's read of followed feeds, once a second, seeks each feed's subscriptions in an index instead of reading them all", async () => {
    const ran: Array<{ sql: string; bindings: unknown[] }> = [];
    const note = (query: { sql: string; bindings: unknown[] }) => ran.push(query);
    storage.reader.on("query", note);
    try {
      assert.deepEqual(await followedFeeds(storage.reader), []);
    } finally {
      storage.reader.off("query", note);
    }
    assert.equal(ran.length, 1);
    const plan: Array<{ detail: string }> = await storage.reader.raw(
      `explain query plan ${ran[0]!.sql}`,
      ran[0]!.bindings as never,
    );
    const steps = plan.map((step) => step.detail);
    assert.ok(
      steps.some((step) => /^SEARCH s (EXISTS )?USING (COVERING )?INDEX \S+ \(feed_id=\?/.test(step)),
      `plan: ${JSON.stringify(steps)}`,
    );
    assert.ok(!steps.some((step) => /^SCAN s\b/.test(step)), `plan: ${JSON.stringify(steps)}`);
  });
});
