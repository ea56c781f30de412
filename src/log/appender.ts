import type { Logger } from "pino";
import type { Storage } from "../db/database.js";
import { type EventRow, findByIdentity, insertEvents } from "../db/events.js";
import { type FeedRow, insertFeed, lockFeed, setHead } from "../db/feeds.js";
import { announceAppends } from "../db/notify.js";
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
 * parsed and joined; there is no timer and no added latency when the service is idle.
 *
 * Ordering with several nodes (PostgreSQL). A group locks its feeds' rows (SELECT ... FOR UPDATE, in name order so
 * two nodes cannot deadlock) before it reads their heads, numbers its events from head + 1 and writes the new head
 * in the same transaction. Another append to the same feed, on any node, waits for that lock and then reads the
 * committed head (READ COMMITTED re-reads a row locked FOR UPDATE). So per feed, sequences are gap-free and commit
 * in sequence order: a transaction holding a lower sequence can never commit after one holding a higher one. That
 * is what would let a reader following `after` skip an event (the outbox visibility problem of sequences or
 * identity columns, which are handed out before commit and commit in any order). PostgreSQL makes a commit
 * visible before it releases the transaction's locks, so the next holder and every later read see it. The cost:
 * appends to one feed take turns, each turn carrying a whole group; appends to different feeds do not wait.
 *
 * Each request is still all-or-nothing: a request that conflicts (409), names a missing feed (404) or has an event
 * its feed's types refuse (400) is answered with its problem and contributes no rows, while the rest of its group
 * commits. The types are checked here, under the feed's lock, so a schema changed on any node applies to the
 * next append; the catalogue is compiled once per change and cached (see TypeRules). If the group's transaction
 * fails for a storage reason, each request is retried alone, so one bad request cannot fail its neighbours.
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
  outcomes: Array<AppendOutcome | HttpProblem>;
  heads: Map<number, number>;
}

interface Known {
  sequence: number;
  digest: string;
}

/** Largest group in events: bounds one transaction's time and memory (10 full 1,000-event batches). */
const MAX_GROUP_EVENTS = 10_000;

const identity = (source: string, id: string) => `${source}\u0000${id}`;

export function storedBody(event: PreparedEvent, sequence: number): string {
  // The published JSON with the feed's attributes added; validation refused events that carried them already.
  return `${event.json.slice(0, -1)},"sequence":"${sequence}","sequencetype":"Integer"}`;
}

export class Appender {
  private queue: Pending[] = [];
  private flushing: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly storage: Storage,
    private readonly bus: WakeupBus,
    private readonly metrics: Metrics,
    private readonly types: TypeRules,
    private readonly options: { autoCreateFeeds: boolean; logger: Logger; now?: () => number },
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
      while (this.queue.length > 0) {
        await new Promise((resolve) => setImmediate(resolve));
        await this.commit(this.takeGroup());
      }
    } finally {
      this.flushing = undefined;
    }
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

  private async commit(group: Pending[]): Promise<void> {
    let result: GroupResult;
    const started = process.hrtime.bigint();
    try {
      result = await this.storage.writer.transaction((trx) => this.apply(trx, group));
    } catch (error) {
      if (group.length > 1) {
        this.options.logger.warn(
          { err: error, requests: group.length },
          "group commit failed; retrying requests one by one",
        );
        for (const pending of group) await this.commit([pending]);
      } else {
        group[0]!.reject(error);
      }
      return;
    }
    this.metrics.groupCommitDuration.observe(Number(process.hrtime.bigint() - started) / 1e9);
    this.metrics.groupCommits.observe(group.length);
    this.options.logger.debug({ requests: group.length, feeds: result.heads.size }, "group committed");
    for (const [feedId, head] of result.heads) this.bus.appended(feedId, head);
    group.forEach((pending, index) => {
      const outcome = result.outcomes[index]!;
      if (outcome instanceof HttpProblem) {
        pending.reject(outcome);
        return;
      }
      const fresh = outcome.events.filter((event) => !event.repeat).length;
      if (fresh > 0) this.metrics.eventsAppended.inc({ feed: pending.feed }, fresh);
      pending.resolve(outcome);
    });
  }

  private async apply(trx: Storage["writer"], group: Pending[]): Promise<GroupResult> {
    const now = (this.options.now ?? Date.now)();
    const feeds = new Map<
      string,
      {
        row: FeedRow;
        head: number;
        known: Map<string, Known>;
        check: TypeCheck;
      } | null
    >();

    // Feeds are locked in name order, so two nodes appending to the same feeds cannot deadlock.
    for (const name of [...new Set(group.map((pending) => pending.feed))].sort()) {
      let row = await lockFeed(trx, name);
      if (!row && this.options.autoCreateFeeds) {
        const settings = {
          description: null,
          retentionMaxAge: null,
          retentionMaxEvents: null,
          typePolicy: "open" as const,
          public: false,
        };
        row = (await insertFeed(trx, name, settings, now)) ?? (await lockFeed(trx, name));
      }
      if (!row) {
        feeds.set(name, null);
        continue;
      }
      const pairs = group
        .filter((pending) => pending.feed === name)
        .flatMap((pending) => pending.events.map((event): [string, string] => [event.source, event.id]));
      const known = new Map<string, Known>();
      for (const stored of await findByIdentity(trx, row.id, pairs)) {
        known.set(identity(stored.source, stored.eventId), {
          sequence: stored.sequence,
          digest: stored.digest,
        });
      }
      feeds.set(name, { row, head: row.head, known, check: await this.types.checker(trx, row) });
    }

    const rows: EventRow[] = [];
    const outcomes = group.map((pending): AppendOutcome | HttpProblem => {
      const feed = feeds.get(pending.feed);
      if (!feed) return feedNotFound(pending.feed);
      const prefix = (index: number) => (pending.batch ? `/${index}` : "");
      const appended: AppendedEvent[] = [];
      const conflicts: Pointed[] = [];
      const invalid: Pointed[] = [];
      const warnings: Pointed[] = [];
      const fresh = new Map<string, Known>();
      const freshRows: EventRow[] = [];
      let head = feed.head;
      pending.events.forEach((event, index) => {
        const key = identity(event.source, event.id);
        const prior = feed.known.get(key) ?? fresh.get(key);
        if (prior) {
          if (prior.digest === event.digest) {
            appended.push({ id: event.id, source: event.source, sequence: prior.sequence, repeat: true });
          } else {
            conflicts.push({
              pointer: `${prefix(index)}/id`,
              detail: `an event with this source and id is stored at sequence ${prior.sequence} with other content`,
            });
          }
          return;
        }
        const findings = feed.check(event, prefix(index));
        invalid.push(...findings.errors);
        warnings.push(...findings.warnings);
        head += 1;
        fresh.set(key, { sequence: head, digest: event.digest });
        appended.push({ id: event.id, source: event.source, sequence: head, repeat: false });
        freshRows.push({
          feedId: feed.row.id,
          sequence: head,
          source: event.source,
          eventId: event.id,
          type: event.type,
          subject: event.subject,
          digest: event.digest,
          body: storedBody(event, head),
          appendedAt: now,
        });
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
      feed.head = head;
      for (const [key, known] of fresh) feed.known.set(key, known);
      rows.push(...freshRows);
      return { events: appended, warnings };
    });

    await insertEvents(trx, rows);
    const heads = new Map<number, number>();
    for (const feed of feeds.values()) {
      if (feed && feed.head !== feed.row.head) {
        await setHead(trx, feed.row.id, feed.head);
        heads.set(feed.row.id, feed.head);
      }
    }
    await announceAppends(trx, this.storage.node, heads);
    return { outcomes, heads };
  }
}
