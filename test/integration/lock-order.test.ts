import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { after, before, beforeEach, describe, it } from "node:test";
import pg from "pg";
import { migrate, openStorage, type Storage } from "../../src/db/database.js";
import { recordOutcomes } from "../../src/db/deliveries.js";
import { deleteFeed, type FeedRow, insertFeed } from "../../src/db/feeds.js";
import {
  insertAttempts,
  insertSubscription,
  type NewAttempt,
  pruneAttempts,
} from "../../src/db/subscriptions.js";
import { uuidv7 } from "../../src/webhooks/ids.js";
import { DIALECT, databaseEnv, dropDatabaseOf } from "../support/database.js";
import { tempDir } from "../support/service.js";
import { eventually } from "../support/wait.js";

/**
 * Transactions that lock several subscriptions on PostgreSQL lock them in id order, whatever plan finds them, so
 * that two of them cannot each hold a row the other waits for (a deadlock, which PostgreSQL breaks after a second
 * by failing one). A feed's delete locks every subscription of the feed; a batch of ping outcomes locks the
 * subscriptions it writes, which can be any of them.
 *
 * Each test makes the plan find the rows out of id order: the subscription with the lowest id is made the last in
 * the table (an update writes a row's new version after the others) and the connection is told not to use
 * indexes, so its statements read the table in that order, as a large batch's bitmap scan would. Another session
 * holds the lowest id; the transaction under test must then wait for it while holding none of the others.
 * A prune of old ping attempts, which deletes attempts of any subscription, waits for none: it passes over those
 * another transaction holds.
 */
describe("locks on several subscriptions", {
  skip:
    DIALECT !== "postgres" && "row locks are PostgreSQL's (SQLite's write transactions run one at a time)",
}, () => {
  const SUBSCRIPTIONS = 4;
  let dir: string;
  let url: string;
  let storage: Storage;
  let holder: pg.Client;
  let feed: FeedRow;
  let ids: string[];
  let made = 0;

  before(async () => {
    dir = tempDir();
    url = (await databaseEnv(dir)).DATABASE_URL!;
    // One connection, so that the settings below hold for every statement under test.
    storage = await openStorage({ dialect: "postgres", url, pool: { min: 1, max: 1 } });
    await migrate(storage);
    await storage.writer.raw("set enable_indexscan = off");
    await storage.writer.raw("set enable_bitmapscan = off");
    holder = new pg.Client({ connectionString: url });
    await holder.connect();
  });

  after(async () => {
    await holder?.end();
    await storage?.close();
    await dropDatabaseOf(dir);
    rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(async () => {
    made += 1;
    const now = Date.now();
    feed = (await insertFeed(
      storage.writer,
      `locks-${made}`,
      {
        description: null,
        retentionMaxAge: null,
        retentionMaxEvents: null,
        typePolicy: "open",
        public: false,
      },
      now,
    ))!;
    await storage.writer("feeds").where({ id: feed.id }).update({ head: 10 });
    ids = Array.from({ length: SUBSCRIPTIONS }, (_, index) => uuidv7(now + index));
    for (const id of ids) {
      await insertSubscription(storage.writer, {
        id,
        feedId: feed.id,
        owner: null,
        url: "https://127.0.0.1:1/ping",
        types: [],
        subject: null,
        description: null,
        acked: 0,
        secret: "sealed",
        signature: "v1",
        publicKey: null,
        authorization: null,
        now,
      });
    }
    // The lowest id last in the table: its row's new version is written after the others.
    await storage
      .writer("subscriptions")
      .where({ id: ids[0] })
      .update({ updated_at: now + 1 });
    const order = await storage.writer("subscriptions").select("id").where({ feed_id: feed.id });
    assert.equal(order.at(-1)?.id, ids[0], "a scan of the table finds the lowest id last");
  });

  /** Whether a statement on this database waits for a lock now, as the holder sees it. */
  async function lockWaited(): Promise<boolean> {
    // Within a transaction pg_stat_activity is read once, unless its snapshot is cleared.
    await holder.query("select pg_stat_clear_snapshot()");
    const waits = await holder.query(
      "select 1 from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
    );
    return waits.rows.length > 0;
  }

  /** Runs `work` while the holder has the lowest id locked in `mode`; answers what `work` answered. */
  async function whileLowestHeld<T>(
    mode: "for update" | "for key share",
    work: () => Promise<T>,
    meanwhile: () => Promise<void>,
  ): Promise<T> {
    await holder.query("begin");
    let done: Promise<T> | undefined;
    try {
      await holder.query(`select id from subscriptions where id = $1 ${mode}`, [ids[0]]);
      done = work();
      await eventually(lockWaited, 10_000, "the transaction under test waits for the lowest id");
      await meanwhile();
    } finally {
      await holder.query("commit");
    }
    return done;
  }

  /** Whether the holder could lock each of the other subscriptions at once, in `mode`: none was held. */
  async function othersFree(mode: "for update" | "for key share"): Promise<void> {
    for (const id of ids.slice(1)) {
      try {
        await holder.query("savepoint others");
        await holder.query(`select id from subscriptions where id = $1 ${mode} nowait`, [id]);
        await holder.query("release savepoint others");
      } catch (error) {
        await holder.query("rollback to savepoint others");
        assert.fail(
          `subscription ${ids.indexOf(id) + 1} of ${ids.length} was locked before the lowest: ${error}`,
        );
      }
    }
  }

  /** An attempt its receiver answered with 204. */
  const acknowledgedAttempt = (
    subscriptionId: string,
    pingId: string,
    at: number,
    head: number,
  ): NewAttempt => ({
    subscriptionId,
    pingId,
    at,
    head,
    statusCode: 204,
    durationMs: 1,
    error: null,
    test: false,
  });

  it("a batch of ping outcomes locks its subscriptions in id order", async () => {
    const node = "node-a";
    const now = Date.now();
    await storage
      .writer("subscriptions")
      .where({ feed_id: feed.id })
      .update({
        lease_owner: node,
        lease_until: now + 60_000,
        ping_id: storage.writer.raw("id"),
        ping_head: 10,
      });
    // Outcomes in the order their pings were answered: the lowest id answered last.
    const answered = [...ids.slice(1), ids[0]!];
    await whileLowestHeld(
      "for update",
      () =>
        storage.writer.transaction((trx) =>
          recordOutcomes(
            trx,
            node,
            answered.map((id) => ({
              subscriptionId: id,
              pingId: id,
              state: { kind: "acknowledged", head: 10 },
            })),
            answered.map((id) => acknowledgedAttempt(id, id, now, 10)),
            now,
          ),
        ),
      () => othersFree("for update"),
    );
    const rows = await storage
      .writer("subscriptions")
      .select("acked", "lease_owner")
      .where({ feed_id: feed.id });
    assert.deepEqual(
      rows.map((row) => [Number(row.acked), row.lease_owner]),
      ids.map(() => [10, null]),
    );
    const attempts = await storage.writer("ping_attempts").count({ n: "*" }).whereIn("subscription_id", ids);
    assert.equal(Number(attempts[0]!.n), ids.length);
  });

  it("a feed's delete locks its subscriptions in id order before it removes them", async () => {
    const deleted = await whileLowestHeld(
      "for key share",
      () => storage.writer.transaction((trx) => deleteFeed(trx, feed.name)),
      () => othersFree("for key share"),
    );
    assert.equal(deleted, feed.id);
    const left = await storage.writer("subscriptions").count({ n: "*" }).where({ feed_id: feed.id });
    assert.equal(Number(left[0]!.n), 0);
  });

  it("a prune of old ping attempts passes over the attempts of a subscription being deleted, without waiting", async () => {
    // Older than any other test's attempts, which the prunes below must leave.
    const at = 1_000;
    const cutoff = at + 1;
    await insertAttempts(
      storage.writer,
      ids.flatMap((id) => [1, 2, 3].map((n) => acknowledgedAttempt(id, `${id.slice(0, 30)}-${n}`, at, n))),
    );
    const attemptsOf = async (id: string) =>
      Number((await storage.writer("ping_attempts").count({ n: "*" }).where({ subscription_id: id }))[0]!.n);
    await holder.query("begin");
    let pruned: number | undefined;
    try {
      // The delete's cascade locks the subscription's attempts until the holder ends its transaction.
      await holder.query("delete from subscriptions where id = $1", [ids[0]]);
      const pruning = pruneAttempts(storage.writer, cutoff, 100).then((count) => {
        pruned = count;
      });
      await eventually(
        async () => pruned !== undefined || (await lockWaited()),
        10_000,
        "the prune is done or waits for a lock",
      );
      assert.equal(pruned, 3 * (ids.length - 1), "the prune deleted the others' attempts without waiting");
      await pruning;
    } finally {
      await holder.query("rollback");
    }
    // The delete was undone: the attempts it held are still there, and the next prune takes them.
    assert.equal(await attemptsOf(ids[0]!), 3);
    assert.equal(await pruneAttempts(storage.writer, cutoff, 100), 3);
    assert.equal(await attemptsOf(ids[0]!), 0);
  });
});
