import type { Logger } from "pino";
import { appendNumbered, findForAppend, writeAppend } from "../db/append.js";
import type { Queryable, Storage } from "../db/database.js";
import type { EventRow } from "../db/events.js";
import { FeedKeptChanging, uniqueViolation } from "../db/failures.js";
import { type FeedRow, insertFeed } from "../db/feeds.js";
import { HttpProblem, type Pointed, validationProblem } from "../errors.js";
import type { PreparedEvent } from "../events/encoding.js";
import type { Metrics } from "../metrics.js";
import { feedNotFound } from "./feeds.js";
import type { TypeCheck, TypeRules } from "./types.js";
import type { WakeupBus } from "./wakeup.js";

/**
 * The append path, with group commit.
 *
 * Publish requests queue here. One flusher takes every request that is waiting and appends them all in one
 * transaction, so one fsync acknowledges many requests: while a commit is on disk, the next group gathers. Before
 * each group the flusher yields to the event loop once (setImmediate), so the requests that arrived together are
 * parsed and joined. Under load, when requests were waiting while a commit was on disk, the next group also waits
 * up to GATHER_MS for the clients the commit answered; there is no timer and no added latency when the service is
 * idle.
 *
 * Ordering with several nodes (PostgreSQL). A group's part for a feed reads the feed and the events it holds of the
 * group's (source, id) pairs, decides each request (below), and then writes in one statement that locks the feed's
 * row (SELECT ... FOR UPDATE), numbers the fresh events from the head it finds there, stores them, moves the head
 * and commits (appendNumbered). Another append to the same feed, on any node, waits for that lock and then reads
 * the committed head (READ COMMITTED re-reads a row locked FOR UPDATE). So per feed, sequences are gap-free and
 * commit in sequence order: a transaction holding a lower sequence can never commit after one holding a higher
 * one. That is what would let a reader following `after` skip an event (the outbox visibility problem of sequences
 * or identity columns, which are handed out before commit and commit in any order). PostgreSQL makes a commit
 * visible before it releases the transaction's locks, so the next holder and every later read see it. The cost:
 * appends to one feed take turns, each turn carrying a whole group and lasting one statement and its commit;
 * appends to different feeds do not wait for each other's lock (but their commits take turns on PostgreSQL's lock
 * for NOTIFY, see docs/scale-out.md). What changed between the read and the write is met there: an event
 * another node stored meanwhile fails the write on the unique (source, id) index (and the requests are retried
 * alone, reading again), a change of the feed's types makes it write nothing and the part is decided again.
 * A node remembers the feeds it read (FeedsRead): its next part for the same feed skips the read and is one round
 * trip, since the write checks under the lock what the read decided, and holds back when it no longer holds.
 * On SQLite, with one writer, the whole group is one transaction.
 *
 * Each request is still all-or-nothing: a request that conflicts (409), names a missing feed (404) or has an event
 * its feed's types refuse (400) is answered with its problem and contributes no rows, while the rest of its group
 * commits. The types are checked here against the feed's types_version, which the write checks under the lock,
 * so a schema changed on any node applies to the next append; the catalogue is compiled once per change and cached
 * (see TypeRules). If a write fails for a storage reason, each of its requests is retried alone, so one bad request
 * cannot fail its neighbours.
 */

export interface AppendedEvent {
  id: string;
  source: string;
  sequence: number;
  /** True when the event was stored before with the same content: nothing was stored now. */
  repeat: boolean;
}

export interface AppendRequest {
  feed: string;
  events: PreparedEvent[];
  /** How the request body pointed at its events: `/3` in a batch, `` for a single event. */
  batch: boolean;
}

/** What an append answers: each event's place, and warnings about the feed's types (a deprecated type). */
export interface AppendOutcome {
  events: AppendedEvent[];
  warnings: Pointed[];
}

interface Pending extends AppendRequest {
  resolve(outcome: AppendOutcome): void;
  reject(error: unknown): void;
}

interface GroupResult {
  outcomes: Array<AppendOutcome | HttpProblem | Failed>;
  heads: Map<number, number>;
}

interface Known {
  sequence: number;
  digest: string;
}

/** Largest group in events: bounds one transaction's time and memory (10 full 1,000-event batches). */
const MAX_GROUP_EVENTS = 10_000;
/**
 * Under load, how long the next group waits at most for as many requests as the last group answered. Clients
 * that were just answered mostly send their next request at once, and waiting for them makes one commit serve
 * both halves of the clients, where without it they settle into two groups that take turns. On PostgreSQL, where
 * the appends of every node to a feed take turns on its row's lock and each turn lasts a commit's WAL flush, this
 * made groups of 12 requests into groups of 20 and two nodes 17 % faster (docs/benchmarks-log.md); on SQLite it
 * measured no different. It never delays a request that arrives when no other is waiting.
 */
const GATHER_MS = 1;

const identity = (source: string, id: string) => `${source}\u0000${id}`;

export function storedBody(event: PreparedEvent, sequence: number): string {
  // The published JSON with the feed's attributes added; validation refused events that carried them already.
  return `${event.json.slice(0, -1)},"sequence":"${sequence}","sequencetype":"Integer"}`;
}

export class Appender {
  private queue: Pending[] = [];
  private readonly feedsRead = new FeedsRead();
  private flushing: Promise<void> | undefined;
  private closed = false;
  /** Requests queued since the start; a group that waits for more hears of each (gather). */
  private arrivals = 0;
  private arrived: (() => void) | undefined;

  constructor(
    private readonly storage: Storage,
    private readonly bus: WakeupBus,
    private readonly metrics: Metrics,
    private readonly types: TypeRules,
    private readonly options: {
      autoCreateFeeds: boolean;
      logger: Logger;
      now?: () => number;
      /** GATHER_MS; tests set it long, so that only the requests it waits for end the wait. */
      gatherMs?: number;
    },
  ) {}

  /** Whether a publish to a feed that does not exist creates it (SEINTJE_AUTO_CREATE_FEEDS). */
  get createsFeeds(): boolean {
    return this.options.autoCreateFeeds;
  }

  /** Appends durably: resolves after the commit that stored the events (or found them stored before). */
  append(request: AppendRequest): Promise<AppendOutcome> {
    if (this.closed) {
      return Promise.reject(
        new HttpProblem(503, "unavailable", "The service is shutting down.", {}, { "Retry-After": "1" }),
      );
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ ...request, resolve, reject });
      this.arrivals += 1;
      this.arrived?.();
      this.flushing ??= this.flush();
    });
  }

  /** Stops taking requests and waits until every queued one is committed. */
  async close(): Promise<void> {
    this.closed = true;
    await this.flushing;
  }

  private async flush(): Promise<void> {
    try {
      // As many requests as the last group answered may be on their way back (GATHER_MS): the group waits until
      // that many arrived since its answers went out.
      let expected = 0;
      while (this.queue.length > 0) {
        await new Promise((resolve) => setImmediate(resolve));
        if (expected > this.arrivals) await this.gather(expected);
        const group = this.takeGroup();
        expected = (await this.commit(group)) + group.length;
      }
    } finally {
      this.flushing = undefined;
    }
  }

  /** Resolves once `wanted` requests arrived since the start, or after GATHER_MS. */
  private gather(wanted: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.arrived = undefined;
        resolve();
      };
      const timer = setTimeout(done, this.options.gatherMs ?? GATHER_MS);
      this.arrived = () => {
        if (this.arrivals >= wanted) done();
      };
    });
  }

  private takeGroup(): Pending[] {
    let events = 0;
    let count = 0;
    while (
      count < this.queue.length &&
      (count === 0 || events + this.queue[count]!.events.length <= MAX_GROUP_EVENTS)
    ) {
      events += this.queue[count]!.events.length;
      count += 1;
    }
    return this.queue.splice(0, count);
  }

  /**
   * Commits a group and answers its requests. Resolves with how many requests had arrived when the answers went
   * out: a caller in this process may send its next request as soon as its answer settles, before this resolves.
   */
  private async commit(group: Pending[]): Promise<number> {
    const started = process.hrtime.bigint();
    let result: GroupResult;
    try {
      result =
        this.storage.dialect === "postgres"
          ? await this.applyEach(group)
          : await this.storage.writer.transaction((trx) => this.apply(trx, group));
    } catch (error) {
      if (group.length > 1) {
        this.options.logger.warn(
          { err: error, requests: group.length },
          "group commit failed; retrying requests one by one",
        );
        let answered: number | undefined;
        for (const pending of group) {
          const arrived = await this.commit([pending]);
          answered ??= arrived;
        }
        return answered!;
      }
      const arrived = this.arrivals;
      group[0]!.reject(error);
      return arrived;
    }
    this.metrics.groupCommitDuration.observe(Number(process.hrtime.bigint() - started) / 1e9);
    this.metrics.groupCommits.observe(group.length);
    this.options.logger.debug({ requests: group.length, feeds: result.heads.size }, "group committed");
    for (const [feedId, head] of result.heads) this.bus.appended(feedId, head);
    const arrived = this.arrivals;
    group.forEach((pending, index) => {
      const outcome = result.outcomes[index]!;
      if (outcome instanceof HttpProblem || outcome instanceof Failed) {
        pending.reject(outcome instanceof Failed ? outcome.error : outcome);
        return;
      }
      const fresh = outcome.events.filter((event) => !event.repeat).length;
      if (fresh > 0) this.metrics.eventsAppended.inc({ feed: pending.feed }, fresh);
      pending.resolve(outcome);
    });
    return arrived;
  }

  /**
   * The feed's row and what it holds of the requests' events (on SQLite in the group's transaction, which holds
   * the one write lock); the feed is created if it may be.
   */
  private async open(
    db: Queryable,
    name: string,
    requests: Pending[],
    now: number,
  ): Promise<Opened | undefined> {
    const pairs = requests.flatMap((pending) =>
      pending.events.map((event): [string, string] => [event.source, event.id]),
    );
    let found = await findForAppend(db, name, pairs);
    if (!found && this.options.autoCreateFeeds) {
      // A new feed holds no events; one another node created just before is looked at instead.
      const created = await insertFeed(db, name, NEW_FEED, now);
      found = created ? { row: created, known: [] } : await findForAppend(db, name, pairs);
    }
    if (!found) return undefined;
    const known = new Map<string, Known>();
    for (const stored of found.known) {
      known.set(identity(stored.source, stored.eventId), {
        sequence: stored.sequence,
        digest: stored.digest,
      });
    }
    return { row: found.row, known, check: await this.types.checker(db, found.row) };
  }

  /** SQLite: the whole group in one transaction; each feed's fresh events numbered from its head. */
  private async apply(trx: Queryable, group: Pending[]): Promise<GroupResult> {
    const now = this.now();
    const outcomes: Array<AppendOutcome | HttpProblem> = new Array(group.length);
    const rows: EventRow[] = [];
    const heads = new Map<number, number>();
    for (const [name, indexes] of byFeed(group)) {
      const requests = indexes.map((index) => group[index]!);
      const feed = await this.open(trx, name, requests, now);
      if (!feed) {
        for (const index of indexes) outcomes[index] = feedNotFound(name);
        continue;
      }
      const planned = plan(requests, feed);
      planned.outcomes.forEach((outcome, at) => {
        outcomes[indexes[at]!] = outcome;
      });
      if (planned.fresh.length === 0) continue;
      const head = feed.row.head;
      planned.fresh.forEach(({ event, appended }, offset) => {
        for (const entry of appended) entry.sequence = head + offset + 1;
        rows.push(eventRow(feed.row.id, event, head + offset + 1, now));
      });
      heads.set(feed.row.id, head + planned.fresh.length);
    }
    await writeAppend(trx, rows, heads);
    return { outcomes, heads };
  }

  /**
   * PostgreSQL: per feed of the group, at most two round trips and no transaction held open. A read of the feed
   * and of the events it holds of these (source, id) pairs, without a lock (skipped for a feed this node read
   * before, see FeedsRead); then one statement that locks the feed, numbers the fresh events from its head, writes
   * them and moves the head, and commits (appendNumbered). The feed's lock is held for that statement and its
   * commit alone, so the appends of several nodes to one feed take turns quickly and their commits' fsyncs are all
   * that orders them.
   */
  private async applyEach(group: Pending[]): Promise<GroupResult> {
    const now = this.now();
    const outcomes: Array<AppendOutcome | HttpProblem | Failed> = new Array(group.length);
    const heads = new Map<number, number>();
    const take = (indexes: number[], answered: FeedAppend) => {
      if (answered.head !== undefined) heads.set(answered.feedId!, answered.head);
      answered.outcomes.forEach((outcome, at) => {
        outcomes[indexes[at]!] = outcome;
      });
    };
    for (const [name, indexes] of byFeed(group)) {
      const requests = indexes.map((index) => group[index]!);
      try {
        take(indexes, await this.appendToFeed(name, requests, now));
      } catch (error) {
        if (requests.length === 1) {
          outcomes[indexes[0]!] = new Failed(error);
          continue;
        }
        // Each feed's part commits on its own, so one that failed is retried request by request, alone.
        this.options.logger.warn(
          { err: error, feed: name, requests: requests.length },
          "group commit failed; retrying requests one by one",
        );
        for (const index of indexes) {
          try {
            take([index], await this.appendToFeed(name, [group[index]!], now));
          } catch (alone) {
            outcomes[index] = new Failed(alone);
          }
        }
      }
    }
    return { outcomes, heads };
  }

  private async appendToFeed(name: string, requests: Pending[], now: number): Promise<FeedAppend> {
    const db = this.storage.writer;
    // A change of the feed's types, or an event another node stored, between the read and the write is met by
    // reading again; both are rare, and every round is a change some node committed, so this ends.
    for (let round = 1; ; round += 1) {
      // The first round goes without the read when the feed was read before (see FeedsRead).
      const remembered = round === 1 ? this.feedsRead.get(name) : undefined;
      const feed = remembered ?? (await this.open(db, name, requests, now));
      if (!feed) return { outcomes: requests.map(() => feedNotFound(name)) };
      if (!remembered) this.feedsRead.remember(name, feed);
      const planned = plan(requests, feed);
      // A refusal is only ever decided on a fresh read: the remembered types may be stale.
      if (remembered && planned.outcomes.some((outcome) => outcome instanceof HttpProblem)) continue;
      if (planned.fresh.length === 0) return { outcomes: planned.outcomes };
      let written: Awaited<ReturnType<typeof appendNumbered>>;
      try {
        written = await appendNumbered(db, this.storage.node, {
          feedId: feed.row.id,
          typesVersion: feed.row.typesVersion,
          events: planned.fresh.map(({ event }) => event),
          now,
        });
      } catch (error) {
        // Another node stored one of these events since they were looked up: reading again finds it.
        if (!uniqueViolation(error)) throw error;
        if (round >= MAX_ROUNDS) throw new FeedKeptChanging(name, round, "an event stored meanwhile");
        continue;
      }
      if (written === "gone" && !remembered) return { outcomes: requests.map(() => feedNotFound(name)) };
      if (typeof written === "string") {
        // Gone since it was remembered (perhaps made again under its name), its types changed, or it holds one
        // of these events: the next round reads it.
        this.feedsRead.forget(name);
        if (round >= MAX_ROUNDS) throw new FeedKeptChanging(name, round, written);
        continue;
      }
      planned.fresh.forEach(({ appended }, offset) => {
        for (const entry of appended) entry.sequence = written.head + offset + 1;
      });
      return {
        outcomes: planned.outcomes,
        feedId: feed.row.id,
        head: written.head + planned.fresh.length,
      };
    }
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }
}

/** A request whose storage failed: it is answered with that error (a 503 or 507, or a 500). */
class Failed {
  constructor(readonly error: unknown) {}
}

interface FeedAppend {
  outcomes: Array<AppendOutcome | HttpProblem>;
  /** The feed and its new head, when events were written. */
  feedId?: number;
  head?: number;
}

/** Feeds whose row and types a PostgreSQL node remembers; the least recently used is forgotten first. */
const REMEMBERED_FEEDS = 1_000;

/**
 * PostgreSQL: what a node read of each feed it appended to (its row and type check, not its events), so that its
 * next append to the feed is one round trip instead of two. That is safe because appendNumbered checks, under the
 * feed's lock, everything the read decided: the feed's id is still there, its types_version (which a change of its
 * types or type policy moves) is the one checked against, and it holds none of the events (a repeat or a conflict
 * is then decided on a fresh read). An append refused on what was remembered is decided again on a fresh read too.
 */
class FeedsRead {
  private readonly feeds = new Map<string, Opened>();

  /** The feed as read before, holding no events as far as the append knows. */
  get(name: string): Opened | undefined {
    const feed = this.feeds.get(name);
    if (!feed) return undefined;
    this.feeds.delete(name);
    this.feeds.set(name, feed);
    return feed;
  }

  remember(name: string, feed: Opened): void {
    this.feeds.delete(name);
    this.feeds.set(name, { row: feed.row, check: feed.check, known: new Map() });
    if (this.feeds.size > REMEMBERED_FEEDS) this.feeds.delete(this.feeds.keys().next().value!);
  }

  forget(name: string): void {
    this.feeds.delete(name);
  }
}

/**
 * How often one append reads a feed again because it changed meanwhile, before it gives up: a 503 with Retry-After
 * (FeedKeptChanging), since nothing of it was stored.
 */
const MAX_ROUNDS = 10;

const NEW_FEED = {
  description: null,
  retentionMaxAge: null,
  retentionMaxEvents: null,
  typePolicy: "open" as const,
  public: false,
};

interface Opened {
  row: FeedRow;
  known: Map<string, Known>;
  check: TypeCheck;
}

/** The indexes of a group's requests per feed, feeds in name order (so two nodes lock them in one order). */
function byFeed(group: Pending[]): Array<[string, number[]]> {
  const feeds = new Map<string, number[]>();
  group.forEach((pending, index) => {
    const indexes = feeds.get(pending.feed);
    if (indexes) indexes.push(index);
    else feeds.set(pending.feed, [index]);
  });
  return [...feeds].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function eventRow(feedId: number, event: PreparedEvent, sequence: number, now: number): EventRow {
  return {
    feedId,
    sequence,
    source: event.source,
    eventId: event.id,
    type: event.type,
    subject: event.subject,
    digest: event.digest,
    body: storedBody(event, sequence),
    appendedAt: now,
  };
}

interface Plan {
  outcomes: Array<AppendOutcome | HttpProblem>;
  /**
   * The events to store, in the order they are numbered; each `appended` is the one in its request's outcome,
   * whose sequence is set once the feed's head is known.
   */
  fresh: Array<{ event: PreparedEvent; appended: AppendedEvent[] }>;
}

/**
 * What one feed's requests come to, given the events the feed holds: each request all or nothing. An event stored
 * before with the same content is a repeat (its sequence); with other content a conflict (409); an event its feed's
 * types refuse fails its request (400). The rest are fresh, in order, an event repeated within the group once.
 */
function plan(requests: Pending[], feed: Opened): Plan {
  const fresh: Plan["fresh"] = [];
  const planned = new Map<string, { digest: string; entry: Plan["fresh"][number] }>();
  const outcomes = requests.map((pending): AppendOutcome | HttpProblem => {
    const prefix = (index: number) => (pending.batch ? `/${index}` : "");
    const appended: AppendedEvent[] = [];
    const conflicts: Pointed[] = [];
    const invalid: Pointed[] = [];
    const warnings: Pointed[] = [];
    const mine = new Map<string, { digest: string; entry: Plan["fresh"][number] }>();
    // Repeats of events fresh in this group, added to their entries only if this request succeeds.
    const repeats: Array<[Plan["fresh"][number], AppendedEvent]> = [];
    pending.events.forEach((event, index) => {
      const key = identity(event.source, event.id);
      const stored = feed.known.get(key);
      const earlier = planned.get(key) ?? mine.get(key);
      if (stored || earlier) {
        if ((stored ?? earlier)!.digest !== event.digest) {
          conflicts.push({
            pointer: `${prefix(index)}/id`,
            detail: stored
              ? `an event with this source and id is stored at sequence ${stored.sequence} with other content`
              : "an event with this source and id is published before it with other content",
          });
        } else if (stored) {
          appended.push({ id: event.id, source: event.source, sequence: stored.sequence, repeat: true });
        } else {
          // Published before it in this group: the same place, known once the group is numbered.
          const repeat: AppendedEvent = { id: event.id, source: event.source, sequence: 0, repeat: true };
          repeats.push([earlier!.entry, repeat]);
          appended.push(repeat);
        }
        return;
      }
      const findings = feed.check(event, prefix(index));
      invalid.push(...findings.errors);
      warnings.push(...findings.warnings);
      const first: AppendedEvent = { id: event.id, source: event.source, sequence: 0, repeat: false };
      mine.set(key, { digest: event.digest, entry: { event, appended: [first] } });
      appended.push(first);
    });
    if (invalid.length > 0) {
      return validationProblem(invalid, "An event does not meet its feed's event types.");
    }
    if (conflicts.length > 0) {
      return new HttpProblem(
        409,
        "conflict",
        "The same (source, id) was published before with other content.",
        {
          errors: conflicts,
        },
      );
    }
    for (const [key, entry] of mine) {
      planned.set(key, entry);
      fresh.push(entry.entry);
    }
    for (const [entry, repeat] of repeats) entry.appended.push(repeat);
    return { events: appended, warnings };
  });
  return { outcomes, fresh };
}
