import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { migrate, openStorage } from "../src/db/database.js";
import { parsePublishRequest } from "../src/events/encoding.js";
import { Appender } from "../src/log/appender.js";
import { TypeRules } from "../src/log/types.js";
import { WakeupBus } from "../src/log/wakeup.js";
import { Metrics, NO_SOURCES } from "../src/metrics.js";

/**
 * `node --import tsx bench/append-probe.ts [events-per-request] [writers] [seconds]` (default 100, 8, 5): the
 * append path alone, without HTTP, on a fresh SQLite file in a temp dir (WAL, synchronous=FULL): `writers` loops
 * each parse a batch like publish-batch's and append it, for `seconds`. Prints events/s and the parsing's share.
 * A probe for changes to the appender and its statements, not a scenario: it has no baseline.
 */

const [size = 100, writers = 8, seconds = 5] = process.argv.slice(2).map(Number);
const dir = mkdtempSync(join(tmpdir(), "seintje-append-probe-"));
const storage = await openStorage({ dialect: "sqlite", filename: join(dir, "probe.db") });
await migrate(storage);
const bus = new WakeupBus();
const metrics = new Metrics(NO_SOURCES);
const appender = new Appender(storage, bus, metrics, new TypeRules(bus), {
  autoCreateFeeds: true,
  logger: pino({ level: "warn" }),
});
const note = "x".repeat(120);
let counter = 0;
function batch(): Buffer {
  const events: string[] = [];
  for (let index = 0; index < size; index += 1) {
    counter += 1;
    events.push(
      `{"specversion":"1.0","id":"probe-${counter}","source":"urn:nld:oin:00000001823288444000:systeem:bench",` +
        `"type":"nl.example.bench.changed","subject":"object-${counter % 1000}","time":"2026-11-29T12:00:00Z",` +
        `"datacontenttype":"application/json","data":{"object":${counter},"note":"${note}"}}`,
    );
  }
  return Buffer.from(`[${events.join(",")}]`);
}
let events = 0;
let parsing = 0;
const started = performance.now();
await Promise.all(
  Array.from({ length: writers }, async () => {
    while (performance.now() - started < seconds * 1000) {
      const body = batch();
      const parseStarted = performance.now();
      const parsed = parsePublishRequest({
        contentType: "application/cloudevents-batch+json",
        headers: {},
        body,
      });
      parsing += performance.now() - parseStarted;
      await appender.append({ feed: "probe", events: parsed.events, batch: true });
      events += size;
    }
  }),
);
const elapsed = performance.now() - started;
console.log(
  JSON.stringify({
    eventsPerSecond: Math.round((events / elapsed) * 1000),
    parsingShare: Number((parsing / elapsed).toFixed(2)),
  }),
);
await appender.close();
await storage.close();
rmSync(dir, { recursive: true, force: true });
