import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import pino from "pino";
import { migrate, openStorage, type Storage } from "../../src/db/database.js";
import { parsePublishRequest } from "../../src/events/encoding.js";
import { Appender, type AppendOutcome } from "../../src/log/appender.js";
import { TypeRules } from "../../src/log/types.js";
import { WakeupBus } from "../../src/log/wakeup.js";
import { Metrics, NO_SOURCES } from "../../src/metrics.js";
import { DIALECT, databaseEnv, dropDatabaseOf } from "../support/database.js";
import { tempDir } from "../support/service.js";

/**
 * The appender's group commit under load, in this process on the suite's database: a group whose commit answered
 * requests while others waited waits for as many to come back (up to a time), and a request that arrives alone
 * is never held. The wait is set to 20 s here, longer than a test waits for an answer (10 s), so that only the
 * requests it waits for can end it in time.
 */
describe("group commit under load", () => {
  let dir: string;
  let storage: Storage;
  let counter = 0;
  const groups: number[] = [];

  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString("utf8").split("\n")) {
        if (!line) continue;
        const entry = JSON.parse(line) as { msg: string; requests?: number };
        if (entry.msg === "group committed") groups.push(entry.requests!);
      }
      done();
    },
  });

  function appender(gatherMs: number): Appender {
    const bus = new WakeupBus();
    const metrics = new Metrics(NO_SOURCES);
    return new Appender(storage, bus, metrics, new TypeRules(bus), {
      autoCreateFeeds: true,
      logger: pino({ level: "debug" }, sink),
      gatherMs,
    });
  }

  /** A request of `count` fresh events to `feed`. */
  function request(feed: string, count: number) {
    const events = Array.from({ length: count }, () => {
      counter += 1;
      return {
        specversion: "1.0",
        id: `g-${counter}`,
        source: "urn:test",
        type: "t.x",
        data: { n: counter },
      };
    });
    const { events: prepared } = parsePublishRequest({
      contentType: "application/cloudevents-batch+json",
      headers: {},
      body: Buffer.from(JSON.stringify(events)),
    });
    return { feed, events: prepared, batch: true };
  }

  /** Whether `promise` settles within `ms`. */
  async function within<T>(promise: Promise<T>, ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    });
    try {
      return await Promise.race([promise.then(() => true), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Ten requests of 1,000 events, which fill a group (10,000 events at most), and an eleventh, which waits for
   * the next group while the first commits.
   */
  function underLoad(appending: Appender, feed: string) {
    groups.length = 0;
    const first = Array.from({ length: 10 }, () => appending.append(request(feed, 1_000)));
    return { first, waiting: appending.append(request(feed, 1)) };
  }

  /** Two turns of the event loop: a client that sends its next request a moment after its answer. */
  const aMomentLater = () =>
    new Promise<void>((resolve) => setImmediate(() => setImmediate(() => resolve())));

  before(async () => {
    dir = tempDir();
    const { DATABASE_URL } = await databaseEnv(dir);
    storage = await openStorage(
      DIALECT === "postgres"
        ? { dialect: "postgres", url: DATABASE_URL!, pool: { min: 1, max: 4 } }
        : { dialect: "sqlite", filename: join(dir, "seintje.db") },
    );
    await migrate(storage);
  });

  after(async () => {
    await storage?.close();
    await dropDatabaseOf(dir);
    rmSync(dir, { recursive: true, force: true });
  });

  it("appends a request that arrives alone at once, however long a group may wait", async () => {
    const appending = appender(20_000);
    groups.length = 0;
    const alone = appending.append(request("alone", 1));
    assert.ok(await within(alone, 10_000), "a lone request was held");
    assert.deepEqual(groups, [1]);
    await appending.close();
  });

  it("lets a group wait for as many requests as the commit before it answered, and no longer", async () => {
    const appending = appender(20_000);
    const { first, waiting } = underLoad(appending, "load");
    // Each client answered sends its next request a moment later, after the appender would have taken the next
    // group without waiting.
    const again: Array<Promise<AppendOutcome>> = [];
    await Promise.all(
      first.map(async (answer) => {
        await answer;
        await aMomentLater();
        again.push(appending.append(request("load", 1)));
      }),
    );
    assert.ok(await within(Promise.all([waiting, ...again]), 10_000), "the second group never committed");
    assert.deepEqual(groups, [10, 11], "the waiting request and the ten that came back share one commit");
    await appending.close();
  });

  it("counts requests sent again the moment their answers settle as back, and does not wait for them", async () => {
    // Callers in this process (the append probe, say) append again in the microtasks of their answers, before
    // the appender's own code after the commit runs: they arrived after their answers went out.
    const appending = appender(20_000);
    const { first, waiting } = underLoad(appending, "eager");
    const again = first.map((answer) => answer.then(() => appending.append(request("eager", 1))));
    assert.ok(
      await within(Promise.all([waiting, ...again]), 10_000),
      "the group waited for requests that had come back already",
    );
    assert.deepEqual(groups, [10, 11]);
    await appending.close();
  });

  it("commits what waits once the wait is over, when the clients answered do not come back", async () => {
    const appending = appender(50);
    const { first, waiting } = underLoad(appending, "quiet");
    await Promise.all(first);
    assert.ok(await within(waiting, 10_000), "the waiting request was held past the wait");
    assert.deepEqual(groups, [10, 1]);
    await appending.close();
  });
});
