import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import pino from "pino";
import { migrate, openStorage } from "../src/db/database.js";
import { parsePublishRequest } from "../src/events/encoding.js";
import { Appender } from "../src/log/appender.js";
import { readPage } from "../src/log/reader.js";
import { TypeRules } from "../src/log/types.js";
import { WakeupBus } from "../src/log/wakeup.js";
import { Metrics, NO_SOURCES } from "../src/metrics.js";

/**
 * `node --import tsx bench/read-probe.ts [events] [pages] [turns]` (default 50,000, 300, 6): the read path alone,
 * without HTTP, on a fresh SQLite file in a temp dir: `readPage` for pages of 1,000 at random cursors, in turns
 * with the floor, one prepared statement reading the same rows in a read transaction on a connection of its own
 * (as read-sequential's baseline does, plus the byte budget's measuring). Prints ms a page of each, per turn.
 * A probe for changes to the read path, not a scenario.
 */

const [events = 50_000, pages = 300, turns = 6] = process.argv.slice(2).map(Number);
const dir = mkdtempSync(join(tmpdir(), "seintje-read-probe-"));
const file = join(dir, "probe.db");
const storage = await openStorage({ dialect: "sqlite", filename: file });
await migrate(storage);
const bus = new WakeupBus();
const appender = new Appender(storage, bus, new Metrics(NO_SOURCES), new TypeRules(bus), {
  autoCreateFeeds: true,
  logger: pino({ level: "warn" }),
});
const note = "x".repeat(120);
for (let published = 0; published < events; ) {
  const batch: string[] = [];
  for (let index = 0; index < 1000 && published < events; index += 1) {
    published += 1;
    batch.push(
      `{"specversion":"1.0","id":"probe-${published}","source":"urn:nld:oin:00000001823288444000:systeem:bench",` +
        `"type":"nl.example.bench.changed","subject":"object-${published % 1000}","time":"2026-11-29T12:00:00Z",` +
        `"datacontenttype":"application/json","data":{"object":${published},"note":"${note}"}}`,
    );
  }
  const parsed = parsePublishRequest({
    contentType: "application/cloudevents-batch+json",
    headers: {},
    body: Buffer.from(`[${batch.join(",")}]`),
  });
  await appender.append({ feed: "probe", events: parsed.events, batch: true });
}

const floor = new Database(file, { readonly: true });
const feedRow = floor.prepare("select id, head from feeds where name = ?");
const rows = floor.prepare(
  "select sequence, body from events where feed_id = ? and sequence > ? and sequence <= ? order by sequence limit ?",
);
const floorPage = floor.transaction((after: number) => {
  const feed = feedRow.get("probe") as { id: number; head: number };
  const read = rows.all(feed.id, after, feed.head, 1000) as Array<{ sequence: number; body: string }>;
  let bytes = 0;
  for (const row of read) bytes += Buffer.byteLength(row.body);
  return bytes;
});

const cursor = () => Math.floor(Math.random() * Math.max(1, events - 1000));
const query = (after: number) => ({ after, limit: 1000, filters: { types: [], subject: undefined } });
for (let turn = 0; turn < turns; turn += 1) {
  let started = performance.now();
  for (let page = 0; page < pages; page += 1) await readPage(storage, "probe", query(cursor()));
  const ours = (performance.now() - started) / pages;
  started = performance.now();
  for (let page = 0; page < pages; page += 1) {
    floorPage(cursor());
    await Promise.resolve();
  }
  const bare = (performance.now() - started) / pages;
  console.log(JSON.stringify({ readPageMs: ours, floorMs: bare }));
}
floor.close();
await storage.close();
rmSync(dir, { recursive: true, force: true });
