import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as fc from "fast-check";
import { DIALECT } from "../support/database.js";
import { call, publishBatch, putFeed, readPage } from "../support/http.js";
import { startTestService, type TestService, tokenFor } from "../support/service.js";
import { dataIds, openStream } from "../support/sse.js";

/**
 * The log against a model of it. fast-check generates runs of commands (publish in each mode, with repeats,
 * conflicts and invalid events; read pages and streams with cursors, limits and filters; read one event and the
 * feed; set a retention limit and run a retention pass; delete the feed and create it again; on PostgreSQL, turn
 * to the other of two nodes on one database) and applies each to the real service over HTTP and to a plain model
 * of what the contract promises, then compares the answers: statuses, sequences, pages, streams, `next`, `head`,
 * `oldest` and the 410's `oldest`.
 *
 * Each run takes a feed of its own. The seed is fixed; `SEINTJE_MODEL_SEED` and `SEINTJE_MODEL_RUNS` run others, and
 * on a failure fast-check prints the seed and the shortest run of commands it found that fails.
 */

const SEED = Number(process.env.SEINTJE_MODEL_SEED ?? 20261202);
const RUNS = Number(process.env.SEINTJE_MODEL_RUNS ?? 40);

const SOURCES = ["urn:nld:oin:00000001823288444000:systeem:a", "urn:nld:oin:00000001823288444000:systeem:b"];
const TYPES = ["nl.example.zaak.aangemaakt", "nl.example.zaak.gesloten", "nl.example.document.toegevoegd"];
const SUBJECTS = [undefined, "zaak-1", "zaak-2"];
/** Type filters are prefixes: some match one type, some two, one none. */
const PREFIXES = ["nl.example.zaak.", "nl.example.zaak.gesloten", "nl.example.document", "nl.other"];

/**
 * An event as a run names it: `key` picks (source, id), and with it the event's type and subject; `variant` 0 is
 * the event as first made, another variant has other data (publishing it over the first is a conflict).
 */
interface Spec {
  key: number;
  variant: number;
  invalid: boolean;
}

interface ModelEvent {
  sequence: number;
  source: string;
  id: string;
  type: string;
  subject: string | undefined;
  variant: number;
}

interface Model {
  events: ModelEvent[];
  head: number;
  /** The sequence retention removed through: `oldest` is one more while the feed holds events. */
  pruned: number;
}

/** The service the commands go to: on PostgreSQL two nodes on one database, taking turns (see Switch). */
class Real {
  current = 0;

  constructor(
    readonly nodes: TestService[],
    readonly feed: string,
    /** For the streams, which do not go through `call`. */
    readonly token: string,
  ) {}

  get svc(): TestService {
    return this.nodes[this.current]!;
  }
}

/** Answers by command and status, printed after the run: what the run exercised. */
const tally = new Map<string, number>();
const count = (what: string, status: number) =>
  tally.set(`${what} ${status}`, (tally.get(`${what} ${status}`) ?? 0) + 1);

const identity = (source: string, id: string) => `${source} ${id}`;

function attributes(spec: Spec) {
  return {
    source: SOURCES[spec.key % SOURCES.length]!,
    id: `event-${spec.key}`,
    type: spec.invalid ? "Not A Type" : TYPES[spec.key % TYPES.length]!,
    subject: SUBJECTS[spec.key % SUBJECTS.length],
    data: { key: spec.key, variant: spec.variant },
  };
}

function structured(spec: Spec): Record<string, unknown> {
  const { source, id, type, subject, data } = attributes(spec);
  return {
    specversion: "1.0",
    id,
    source,
    type,
    ...(subject === undefined ? {} : { subject }),
    time: "2026-12-02T12:00:00Z",
    datacontenttype: "application/json",
    data,
  };
}

const oldest = (model: Model) => (model.head > model.pruned ? String(model.pruned + 1) : null);

/**
 * What the contract makes of a publish of `specs` in one request: every event of it or none, a repeat (same
 * source, id and content) keeps its sequence, the same (source, id) with other content is a 409.
 */
function expectPublish(
  model: Model,
  specs: Spec[],
): { status: number; sequences: number[]; fresh: ModelEvent[] } {
  if (specs.some((spec) => spec.invalid)) return { status: 400, sequences: [], fresh: [] };
  const kept = new Map(model.events.map((event) => [identity(event.source, event.id), event]));
  const fresh: ModelEvent[] = [];
  const sequences: number[] = [];
  for (const spec of specs) {
    const { source, id, type, subject } = attributes(spec);
    const earlier = kept.get(identity(source, id));
    if (earlier) {
      if (earlier.variant !== spec.variant) return { status: 409, sequences: [], fresh: [] };
      sequences.push(earlier.sequence);
      continue;
    }
    const event = {
      sequence: model.head + fresh.length + 1,
      source,
      id,
      type,
      subject,
      variant: spec.variant,
    };
    fresh.push(event);
    kept.set(identity(source, id), event);
    sequences.push(event.sequence);
  }
  return { status: fresh.length > 0 ? 201 : 200, sequences, fresh };
}

class Publish implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly mode: "structured" | "batch" | "binary",
    readonly specs: Spec[],
  ) {}

  check(): boolean {
    return true;
  }

  async run(model: Model, real: Real): Promise<void> {
    const expected = expectPublish(model, this.specs);
    const reply = await this.send(real);
    count(`publish ${this.mode}`, reply.status);
    assert.equal(reply.status, expected.status, `${this}: ${reply.text}`);
    if (expected.status < 300) {
      const sequences = reply.body.events.map((event: { sequence: string }) => Number(event.sequence));
      assert.deepEqual(sequences, expected.sequences, `${this}`);
      model.events.push(...expected.fresh);
      model.head += expected.fresh.length;
    }
  }

  private send({ svc, feed }: Real) {
    if (this.mode === "batch") return publishBatch(svc.url, feed, this.specs.map(structured));
    const spec = this.specs[0]!;
    if (this.mode === "structured") {
      return call(`${svc.url}/v1/feeds/${feed}/events`, {
        method: "POST",
        headers: { "content-type": "application/cloudevents+json" },
        body: JSON.stringify(structured(spec)),
      });
    }
    const { source, id, type, subject, data } = attributes(spec);
    return call(`${svc.url}/v1/feeds/${feed}/events`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": id,
        "ce-source": source,
        "ce-type": type,
        "ce-time": "2026-12-02T12:00:00Z",
        ...(subject === undefined ? {} : { "ce-subject": subject }),
      },
      body: JSON.stringify(data),
    });
  }

  toString(): string {
    return `publish ${this.mode} ${JSON.stringify(this.specs)}`;
  }
}

/** A cursor, as a choice made against the model when the command runs. */
type Cursor = "zero" | "oldest" | "pruned" | "head" | "ahead" | number;

const cursor = fc.oneof(
  fc.constantFrom<Cursor>("zero", "oldest", "pruned", "head", "ahead"),
  fc.nat({ max: 1000 }),
);

function cursorIn(model: Model, choice: Cursor): number {
  switch (choice) {
    case "zero":
      return 0;
    case "oldest":
      return model.pruned;
    case "pruned":
      return Math.max(0, model.pruned - 1);
    case "head":
      return model.head;
    case "ahead":
      return model.head + 1;
    default:
      return choice % (model.head + 1);
  }
}

/** The query of a read: the cursor and the filters (type prefixes, subject). */
function readQuery(after: number, types: string[], subject: string | undefined): URLSearchParams {
  const params = new URLSearchParams({ after: String(after) });
  for (const type of types) params.append("type", type);
  if (subject !== undefined) params.set("subject", subject);
  return params;
}

/** The events a read after `after` (kept, past the cursor) with these filters finds, in order. */
function matching(model: Model, after: number, types: string[], subject: string | undefined): ModelEvent[] {
  const start = Math.max(after, model.pruned);
  return model.events.filter(
    (event) =>
      event.sequence > start &&
      (types.length === 0 || types.some((prefix) => event.type.startsWith(prefix))) &&
      (subject === undefined || event.subject === subject),
  );
}

class ReadPage implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly cursor: Cursor,
    readonly limit: number,
    readonly types: string[],
    readonly subject: string | undefined,
  ) {}

  check(): boolean {
    return true;
  }

  async run(model: Model, { svc, feed }: Real): Promise<void> {
    const after = cursorIn(model, this.cursor);
    const params = readQuery(after, this.types, this.subject);
    params.set("limit", String(this.limit));
    const reply = await readPage(svc.url, feed, params.toString());
    count("read page", reply.status);
    const where = `${this} at after=${after}`;
    if (after > model.head) {
      assert.equal(reply.status, 400, where);
      assert.equal(reply.body.type, "urn:seintje:problem:cursor-ahead", where);
      return;
    }
    if (after > 0 && after < model.pruned) {
      assert.equal(reply.status, 410, where);
      assert.equal(reply.body.oldest, oldest(model), where);
      return;
    }
    assert.equal(reply.status, 200, `${where}: ${reply.text}`);
    const filtered = this.types.length > 0 || this.subject !== undefined;
    const start = Math.max(after, model.pruned);
    const page = matching(model, after, this.types, this.subject).slice(0, this.limit);
    const full = page.length === this.limit;
    const next = full || !filtered ? (page.at(-1)?.sequence ?? start) : model.head;
    assert.deepEqual(
      reply.body.events.map((event: { sequence: string; id: string; source: string }) => [
        Number(event.sequence),
        identity(event.source, event.id),
      ]),
      page.map((event) => [event.sequence, identity(event.source, event.id)]),
      where,
    );
    assert.equal(reply.body.next, String(next), where);
    assert.equal(reply.body.head, String(model.head), where);
  }

  toString(): string {
    return `read after=${this.cursor} limit=${this.limit} types=${JSON.stringify(this.types)} subject=${this.subject}`;
  }
}

/**
 * The same read as a stream: every matching event after the cursor, in order, then nothing until the next append;
 * a cursor retention passed gets `event: reset` and the end of the stream; one ahead of the head a 400.
 */
class Stream implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly cursor: Cursor,
    readonly types: string[],
    readonly subject: string | undefined,
  ) {}

  check(): boolean {
    return true;
  }

  async run(model: Model, { svc, feed, token }: Real): Promise<void> {
    const after = cursorIn(model, this.cursor);
    const url = `${svc.url}/v1/feeds/${feed}/events?${readQuery(after, this.types, this.subject)}`;
    const stream = await openStream(url, { authorization: `Bearer ${token}` });
    const where = `${this} at after=${after}`;
    try {
      if (after > model.head) {
        count("stream", stream.status);
        assert.equal(stream.status, 400, where);
        return;
      }
      assert.equal(stream.status, 200, where);
      if (after > 0 && after < model.pruned) {
        count("stream reset", stream.status);
        await stream.closed;
        const reset = /^event: reset\ndata: (.*)$/m.exec(stream.text());
        assert.ok(reset, `${where}: ${stream.text()}`);
        assert.equal(JSON.parse(reset[1]!).oldest, oldest(model), where);
        return;
      }
      count("stream", stream.status);
      const expected = matching(model, after, this.types, this.subject).map((event) => event.sequence);
      // The retry hint comes first; then, when the feed holds matching events, up to the last of them.
      const last = expected.at(-1);
      const text = await stream.waitFor((received) =>
        last === undefined ? received.startsWith("retry:") : dataIds(received).includes(last),
      );
      assert.deepEqual(dataIds(text), expected, where);
    } finally {
      stream.close();
    }
  }

  toString(): string {
    return `stream after=${this.cursor} types=${JSON.stringify(this.types)} subject=${this.subject}`;
  }
}

class ReadEvent implements fc.AsyncCommand<Model, Real> {
  constructor(readonly pick: number) {}

  check(): boolean {
    return true;
  }

  async run(model: Model, { svc, feed }: Real): Promise<void> {
    const sequence = this.pick % (model.head + 2);
    const reply = await call(`${svc.url}/v1/feeds/${feed}/events/${sequence}`);
    count("read event", reply.status);
    const stored = model.events.find((event) => event.sequence === sequence);
    if (!stored) {
      assert.equal(reply.status, 404, `${this} at ${sequence}`);
      return;
    }
    assert.equal(reply.status, 200, `${this} at ${sequence}`);
    assert.equal(reply.body.sequence, String(sequence));
    assert.equal(identity(reply.body.source, reply.body.id), identity(stored.source, stored.id));
    assert.deepEqual(reply.body.data, {
      key: Number(stored.id.slice("event-".length)),
      variant: stored.variant,
    });
  }

  toString(): string {
    return `read event ${this.pick}`;
  }
}

class ReadFeed implements fc.AsyncCommand<Model, Real> {
  check(): boolean {
    return true;
  }

  async run(model: Model, { svc, feed }: Real): Promise<void> {
    const reply = await call(`${svc.url}/v1/feeds/${feed}`);
    assert.equal(reply.status, 200);
    assert.equal(reply.body.head, String(model.head), "head");
    assert.equal(reply.body.oldest, oldest(model), "oldest");
  }

  toString(): string {
    return "read feed";
  }
}

class Retain implements fc.AsyncCommand<Model, Real> {
  constructor(readonly maxEvents: number) {}

  check(): boolean {
    return true;
  }

  async run(model: Model, { svc, feed }: Real): Promise<void> {
    const reply = await putFeed(svc.url, feed, { retention: { maxEvents: this.maxEvents } });
    assert.equal(reply.status, 200, reply.text);
    await svc.service.retention.pass();
    model.pruned = Math.max(model.pruned, model.head - this.maxEvents);
    model.events = model.events.filter((event) => event.sequence > model.pruned);
    // No limit again, so that later publishes are not removed by a pass the model did not run.
    assert.equal((await putFeed(svc.url, feed, {})).status, 200);
  }

  toString(): string {
    return `retain ${this.maxEvents} and prune`;
  }
}

/** Sends the commands that follow to the other node (on SQLite, with one node, to the same). */
class Switch implements fc.AsyncCommand<Model, Real> {
  check(): boolean {
    return true;
  }

  async run(_model: Model, real: Real): Promise<void> {
    real.current = (real.current + 1) % real.nodes.length;
  }

  toString(): string {
    return "switch node";
  }
}

class Recreate implements fc.AsyncCommand<Model, Real> {
  check(): boolean {
    return true;
  }

  async run(model: Model, { svc, feed }: Real): Promise<void> {
    assert.equal((await call(`${svc.url}/v1/feeds/${feed}`, { method: "DELETE" })).status, 204);
    assert.equal((await putFeed(svc.url, feed)).status, 201);
    model.events = [];
    model.head = 0;
    model.pruned = 0;
  }

  toString(): string {
    return "delete and create again";
  }
}

const spec = fc.record({
  key: fc.nat({ max: 11 }),
  variant: fc.oneof({ weight: 5, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constant(1) }),
  invalid: fc.oneof(
    { weight: 15, arbitrary: fc.constant(false) },
    { weight: 1, arbitrary: fc.constant(true) },
  ),
});

const types = fc.subarray(PREFIXES, { maxLength: 2 });

const commands = [
  fc
    .tuple(fc.constantFrom<"structured" | "binary">("structured", "binary"), spec)
    .map(([mode, one]) => new Publish(mode, [one])),
  fc.array(spec, { maxLength: 5 }).map((specs) => new Publish("batch", specs)),
  fc
    .tuple(cursor, fc.integer({ min: 1, max: 6 }), types, fc.constantFrom(...SUBJECTS))
    .map(([after, limit, prefixes, subject]) => new ReadPage(after, limit, prefixes, subject)),
  fc
    .tuple(cursor, types, fc.constantFrom(...SUBJECTS))
    .map(([after, prefixes, subject]) => new Stream(after, prefixes, subject)),
  fc.nat({ max: 1000 }).map((pick) => new ReadEvent(pick)),
  fc.constant(new ReadFeed()),
  fc.integer({ min: 1, max: 6 }).map((maxEvents) => new Retain(maxEvents)),
  fc.constant(new Recreate()),
  fc.constant(new Switch()),
];

describe("the log against a model of the contract", () => {
  const nodes: TestService[] = [];
  let token: string;
  before(async () => {
    const first = await startTestService();
    nodes.push(first);
    // A second node on the same database, as behind a load balancer: what one node acknowledged, the other serves.
    if (DIALECT === "postgres") nodes.push(await startTestService({}, { dir: first.dir }));
    token = await tokenFor(first.dir, "admin");
  });
  after(async () => {
    for (const node of nodes.slice(1)) await node.stop();
    await nodes[0]?.stop();
  });

  it("publishes, reads, prunes and recreates as the model says", async (t) => {
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(fc.commands(commands, { maxCommands: 60, size: "large" }), async (run) => {
        runs += 1;
        const feed = `model-${runs}`;
        assert.equal((await putFeed(nodes[0]!.url, feed)).status, 201);
        await fc.asyncModelRun(
          () => ({ model: { events: [], head: 0, pruned: 0 }, real: new Real(nodes, feed, token) }),
          run,
        );
      }),
      { seed: SEED, numRuns: RUNS },
    );
    t.diagnostic(`${runs} runs: ${[...tally].map(([what, times]) => `${what} x${times}`).join(", ")}`);
    const errors = nodes.flatMap((node) => node.logs).filter((line) => Number(line.level) >= 50);
    assert.deepEqual(errors, [], "no errors logged");
  });
});
