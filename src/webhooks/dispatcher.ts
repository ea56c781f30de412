import { setMaxListeners } from "node:events";
import type { Tracer } from "@opentelemetry/api";
import type { Knex } from "knex";
import { pendingMigrations, type Queryable, type Storage } from "../db/database.js";
import {
  type Claim,
  type DeliveryState,
  type Lease,
  markClaimed,
  recordOutcomes,
  releaseAllLeases,
} from "../db/deliveries.js";
import { storageFailure } from "../db/failures.js";
import {
  type AttemptRow,
  findAttempt,
  findDue,
  findSubscription,
  followedFeeds,
  insertAttemptIfKept,
  lockSubscription,
  look,
  type NewAttempt,
  pruneAttempts,
  type SubscriptionRow,
} from "../db/subscriptions.js";
import { HttpProblem } from "../errors.js";
import { type Duration, subtractDuration } from "../log/duration.js";
import type { WakeupBus } from "../log/wakeup.js";
import type { Logger } from "../logger.js";
import type { Metrics } from "../metrics.js";
import { Announcement, type AnnouncementOptions, type PreparedPing } from "./announcement.js";
import type { CallbackClient, Exchange } from "./client.js";
import { attemptOf, Courier, outcomeOf, type PingIssuer } from "./courier.js";
import { type Decision, decide, type RetryPolicy } from "./policy.js";
import { checkSealingKey, type SecretBox } from "./secrets.js";
import { subscriptionNotFound } from "./subscriptions.js";

/**
 * The dispatcher sends pings. Every decision is made from the database and written back to it, so the process
 * holds nothing that a crash could lose:
 *
 * 1. Claim: in one write transaction, find subscriptions that are due (not disabled, not leased, past their retry
 *    time, with a pending ping or a feed head beyond what was scanned), build or keep each one's ping, and lease
 *    them to this node for the ping timeout plus a margin. A lease lapses by itself if the node dies.
 * 2. Deliver: at most `concurrency` pings in flight over all subscriptions, and one per subscription (the lease).
 * 3. Record: outcomes are written in batches (attempt rows plus the new delivery state) in one transaction each.
 *    When more was due than there were free slots, that transaction also claims what the batch's slots can take
 *    (a refill), so that under load a commit serves both.
 *
 * Coalescing falls out of this: events appended while a ping is in flight only move the feed's head; the next
 * claim, after the outcome, announces them all in one ping. A pending ping that newer events overtake is replaced
 * by a new ping (new id) at its next attempt, and never sent again.
 */

export interface DispatcherOptions extends AnnouncementOptions {
  policy: RetryPolicy;
  concurrency: number;
  timeoutMs: number;
  /** The `WebHook-Request-Origin` of pings: the host name of the public URL. */
  requestOrigin(): string;
  attemptsKeep: Duration;
  /** What signs the JWT of pings that carry one. */
  issuer: PingIssuer;
  /** Spans of ping deliveries (a no-op tracer when tracing is off). */
  tracer: Tracer;
  /**
   * How often the database is looked at when nothing signalled (SWEEP_MS). Not configurable: tests set it long, so
   * that a ping that arrives was sent because of a signal.
   */
  sweepMs?: number;
}

interface Outcome {
  claimed: PreparedPing;
  attempt: NewAttempt | undefined;
  /** Undefined: hand the ping back untouched (shutdown). */
  decision: Decision | undefined;
}

const CLAIM_BATCH = 500;
/**
 * How long the first outcome of a batch waits for others before they are written together. A commit's fsync
 * blocks the event loop (better-sqlite3 is synchronous): under load, one per dozen outcomes was a quarter of the
 * dispatcher's time. The subscription stays leased meanwhile, so this only delays its next ping by as much.
 */
const GATHER_MS = 10;
/** How often the database is looked at even when nothing signalled: retries, lapsed leases, other nodes. */
const SWEEP_MS = 1000;
/**
 * A lease lasts the ping timeout plus this: time to write the outcome. When a node dies, its pings are sent by
 * another node (or by itself restarted, on PostgreSQL) this long after the timeout. Should a lease lapse while
 * its node is alive but stalled, the ping may go out twice with the same webhook-id, which receivers deduplicate.
 */
const LEASE_MARGIN_MS = 5_000;
const PRUNE_EVERY_MS = 60_000;
const PRUNE_BATCH = 1000;

export class Dispatcher {
  private readonly courier: Courier;
  private readonly deliveries = new Set<Promise<void>>();
  private readonly outcomes: Outcome[] = [];
  private readonly abort = new AbortController();
  private inFlight = 0;
  /** Slots taken by claims under way, whose pings are not launched yet. */
  private reserved = 0;
  private pumping = false;
  private again = false;
  /** The last claim took every free slot: more may be due than could be claimed. */
  private backlog = false;
  private flushing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Number.POSITIVE_INFINITY;
  private stopped = false;
  private unlisten: (() => void) | undefined;
  private lastPrune = 0;
  private ready = false;
  /** The latest look for due pings; stop() waits for it, so no query runs after the database closes. */
  private pumped: Promise<void> = Promise.resolve();
  /**
   * The feeds that a subscription which is not disabled follows, as last read (at most one id per feed), or
   * undefined until it is read again. An append to any other feed cannot make a ping due, so it costs no look:
   * on PostgreSQL every node looked after every append of every node, a quarter of pg-publish's throughput.
   * It is read again on every sweep, so a subscription made on another node counts here within a sweep; until
   * then the node that made it looks after every append to its feed (it hears of other nodes' appends).
   */
  private watched: Set<number> | undefined;
  private watchedAt = 0;
  /** Moves on every local change of subscriptions, so that a read begun before one is not kept. */
  private watchedVersion = 0;
  private readonly sweepMs: number;

  constructor(
    private readonly storage: Storage,
    private readonly bus: WakeupBus,
    client: CallbackClient,
    private readonly box: SecretBox,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
    private readonly options: DispatcherOptions,
  ) {
    this.courier = new Courier(client, box, options.requestOrigin, options.issuer, options.tracer);
    this.sweepMs = options.sweepMs ?? SWEEP_MS;
    // Every ping in flight listens for shutdown on this signal until it is answered: up to `concurrency` at once,
    // plus test pings and retries. Not a leak, so Node's warning past 10 listeners is off for it.
    setMaxListeners(0, this.abort.signal);
  }

  start(): void {
    this.unlisten = this.bus.listen({
      appended: (feedId) => {
        if (!this.watched || this.watched.has(feedId)) this.kick();
      },
      removed: () => undefined,
    });
    this.kick();
  }

  /**
   * Subscriptions were made or changed here: which feeds are followed is read again, and due pings sent. (A deletion
   * needs neither: a feed left in the set only costs a look, until the next sweep reads the set again.)
   */
  subscriptionsChanged(): void {
    this.watchedVersion += 1;
    this.watched = undefined;
    this.kick();
  }

  /** Reads which feeds are followed, when this node's knowledge of it is older than a sweep. */
  private async watch(): Promise<void> {
    if (this.watched && Date.now() - this.watchedAt < this.sweepMs) return;
    const version = this.watchedVersion;
    const at = Date.now();
    const feeds = await followedFeeds(this.storage.reader);
    if (version !== this.watchedVersion) return;
    this.watched = new Set(feeds);
    this.watchedAt = at;
  }

  /**
   * Whether the schema is current: a service started without migrating waits for `seintje migrate` before it
   * touches the subscription tables.
   */
  private async schemaReady(): Promise<boolean> {
    if (this.ready) return true;
    if ((await pendingMigrations(this.storage)).length > 0) return false;
    await checkSealingKey(this.storage, this.box);
    // SQLite serves one process: a lease left by a crashed run of this service can be released at once rather
    // than waiting for it to lapse. PostgreSQL may have other live nodes, whose leases must stand.
    if (this.storage.dialect === "sqlite") await releaseAllLeases(this.storage.writer);
    this.ready = true;
    return true;
  }

  /** Makes the dispatcher look for due pings soon; many kicks in a row cost one look. */
  kick(): void {
    if (this.stopped) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    setImmediate(() => {
      this.pumped = this.pump();
    });
  }

  private async pump(): Promise<void> {
    if (this.stopped) {
      this.pumping = false;
      return;
    }
    let delay = this.sweepMs;
    try {
      if (await this.schemaReady()) {
        // One read-only statement first: most looks (after appends to followed feeds) find nothing due, and on
        // SQLite the look must not hold the write lock. Claims look again on each further round, for kicks
        // meanwhile. The retry time it reads serves the whole pump: a claim does not move retries, and an outcome
        // that schedules one wakes the dispatcher for it itself (wakeAt); one another node schedules meanwhile is
        // met by the sweep.
        await this.watch();
        const first = await look(this.storage.reader, Date.now());
        let looked = first.due;
        if (first.due || this.again) {
          do {
            this.again = false;
            const wanted = Math.min(this.free(), CLAIM_BATCH);
            if (wanted <= 0) break;
            this.reserved += wanted;
            let claimed: PreparedPing[];
            try {
              claimed = await this.claim(wanted, looked);
            } finally {
              this.reserved -= wanted;
            }
            looked = false;
            for (const ping of claimed) this.launch(ping);
            this.backlog = claimed.length === wanted;
            if (claimed.length === CLAIM_BATCH) this.again = true;
          } while (this.again && !this.stopped);
        } else {
          this.backlog = false;
        }
        const next = first.nextRetry;
        if (next !== undefined) delay = Math.min(this.sweepMs, Math.max(10, next - Date.now()));
        await this.pruneNow();
      } else {
        this.again = false;
        delay = 5 * this.sweepMs;
      }
    } catch (error) {
      if (!this.stopped) this.logger.error({ err: error }, "ping dispatch failed; trying again shortly");
    } finally {
      this.pumping = false;
    }
    if (this.stopped) return;
    if (this.again) return this.kick();
    clearTimeout(this.timer);
    this.timerAt = Number.POSITIVE_INFINITY;
    this.wakeAt(Date.now() + delay);
  }

  /** Makes sure the dispatcher looks again no later than `at`. */
  private wakeAt(at: number): void {
    if (this.stopped || at >= this.timerAt) return;
    clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(
      () => {
        this.timerAt = Number.POSITIVE_INFINITY;
        this.kick();
      },
      Math.max(0, at - Date.now()),
    );
    this.timer.unref();
  }

  /** Slots neither in flight nor taken by a claim under way. */
  private free(): number {
    return this.options.concurrency - this.inFlight - this.reserved;
  }

  /**
   * Claims up to `limit` due subscriptions and prepares their pings, in one transaction; `looked` when a look
   * just found some due, otherwise it looks first.
   */
  private async claim(limit: number, looked: boolean): Promise<PreparedPing[]> {
    const now = Date.now();
    if (!looked && !(await look(this.storage.reader, now)).due) return [];
    return this.storage.writer.transaction((trx) => this.claimIn(trx, limit, now));
  }

  /**
   * Claims up to `limit` due subscriptions in `trx`, leasing them to this node, and prepares their pings; passes
   * over the subscriptions in `passOver`.
   */
  private async claimIn(
    trx: Queryable,
    limit: number,
    now: number,
    passOver: readonly string[] = [],
  ): Promise<PreparedPing[]> {
    const claimed: PreparedPing[] = [];
    const claims: Claim[] = [];
    const announcement = new Announcement(trx, this.options);
    for (const subscription of await findDue(trx, now, limit, true, passOver)) {
      const ping = await announcement.prepare(subscription, now);
      if (ping) claimed.push(ping);
      claims.push({
        id: subscription.id,
        scanned: subscription.feedHead,
        lease: ping && this.leaseFor(ping, now),
      });
    }
    await markClaimed(trx, claims);
    return claimed;
  }

  /** The lease a claimed ping is sent under: this node's, for one timeout and a margin. */
  private leaseFor(ping: PreparedPing, now: number): Lease {
    return {
      owner: this.storage.node,
      until: now + this.options.timeoutMs + LEASE_MARGIN_MS,
      pingId: ping.pingId,
      head: ping.head,
      body: ping.body,
    };
  }

  private launch(claimed: PreparedPing): void {
    this.inFlight += 1;
    const delivery = this.deliver(claimed)
      .catch((error) =>
        this.logger.error({ err: error, subscription: claimed.subscription.id }, "ping failed"),
      )
      .finally(() => {
        this.inFlight -= 1;
        // Freed slots matter only when more was due than could be claimed. A ping's outcome is written within
        // GATHER_MS, and that transaction refills them (see write); a delivery that failed without an outcome
        // leaves that to a claim of its own.
        if (this.backlog && !this.flushing && this.refillable()) this.kick();
        this.deliveries.delete(delivery);
      });
    this.deliveries.add(delivery);
  }

  private async deliver(claimed: PreparedPing): Promise<void> {
    const { subscription } = claimed;
    const at = Date.now();
    const exchange = await this.courier.send(claimed, this.abort.signal);
    if (exchange.statusCode === null && this.abort.signal.aborted) {
      this.metrics.pings.inc({ outcome: "handed-back" });
      this.record({ claimed, attempt: undefined, decision: undefined });
      return;
    }
    this.count(exchange);
    const decision = decide(
      this.options.policy,
      { statusCode: exchange.statusCode, retryAfter: exchange.headers["retry-after"] },
      { failures: subscription.failures, failingSince: subscription.failingSince },
      Date.now(),
    );
    this.log(subscription, claimed, exchange, decision);
    this.record({
      claimed,
      attempt: attemptOf(claimed, at, exchange, false),
      decision,
    });
  }

  private count(exchange: Exchange): void {
    this.metrics.pings.inc({ outcome: outcomeOf(exchange) });
    this.metrics.pingDuration.observe(exchange.durationMs / 1000);
  }

  private log(
    subscription: SubscriptionRow,
    claimed: PreparedPing,
    exchange: Exchange,
    decision: Decision,
  ): void {
    const fields = {
      subscription: subscription.id,
      feed: subscription.feedName,
      pingId: claimed.pingId,
      head: claimed.head,
      statusCode: exchange.statusCode,
      durationMs: exchange.durationMs,
    };
    if (decision.kind === "acknowledged") this.logger.debug(fields, "ping delivered");
    else if (decision.kind === "retry") {
      // A failing callback is the subscriber's to mend, but an operator wants to see it: warn, not info.
      this.logger.warn(
        { ...fields, error: exchange.error, retryAt: new Date(decision.at).toISOString() },
        "ping failed",
      );
    } else
      this.logger.warn(
        { ...fields, error: exchange.error, reason: decision.reason },
        "subscription disabled",
      );
  }

  private record(outcome: Outcome): void {
    this.outcomes.push(outcome);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushing) return;
    this.flushing = (async () => {
      // Outcomes that finish within a few milliseconds of each other share one transaction (one fsync).
      await new Promise<void>((resolve) => setTimeout(resolve, GATHER_MS));
      while (this.outcomes.length > 0) await this.flush();
    })().finally(() => {
      this.flushing = undefined;
      if (this.outcomes.length > 0) this.scheduleFlush();
    });
  }

  /**
   * Writes every queued outcome in one transaction, then asks for the next look only where it can find work:
   * at once when events arrived beyond what an acknowledged ping announced, and at the earliest retry time.
   * (Looking after every outcome would scan the subscriptions once per ping.)
   */
  private async flush(): Promise<void> {
    const batch = this.outcomes.splice(0);
    if (batch.length === 0) return;
    for (const ping of await this.write(batch)) {
      // Claimed as the service began to stop: handed back unsent, in the next batch.
      if (this.stopped) this.record({ claimed: ping, attempt: undefined, decision: undefined });
      else this.launch(ping);
    }
    let more = false;
    for (const { claimed, decision } of batch) {
      if (decision?.kind === "retry") this.wakeAt(decision.at);
      const { feedId, feedHead } = claimed.subscription;
      if (decision?.kind === "acknowledged" && this.bus.headOf(feedId) > feedHead) more = true;
    }
    if (more) this.kick();
  }

  /**
   * Freed slots are refilled a quarter of them at a time, so that a claim serves many pings rather than one: its
   * queries cost about as much for a few subscriptions as for a hundred.
   */
  private refillable(): boolean {
    return this.free() >= this.options.concurrency / 4;
  }

  /**
   * Writes a batch of outcomes in one transaction. When more was due than could be claimed (a backlog), the same
   * transaction claims what the free slots take, and answers those pings: a commit's fsync blocks the event loop
   * on SQLite, and one per refill besides those of the outcomes was a third of a busy dispatcher's commits.
   */
  private async write(batch: Outcome[]): Promise<PreparedPing[]> {
    const outcomes = batch.map(({ claimed, decision }) => ({
      subscriptionId: claimed.subscription.id,
      pingId: claimed.pingId,
      state: decision === undefined ? undefined : stateAfter(decision, claimed.head),
    }));
    const attempts = batch.flatMap((outcome) => (outcome.attempt ? [outcome.attempt] : []));
    const refill =
      this.backlog && !this.stopped && this.refillable() ? Math.min(this.free(), CLAIM_BATCH) : 0;
    this.reserved += refill;
    try {
      const claimed = await this.storage.writer.transaction(async (trx) => {
        const now = Date.now();
        await recordOutcomes(trx, this.storage.node, outcomes, attempts, now);
        return refill > 0 ? this.refillIn(trx, refill, now, outcomes) : [];
      });
      if (refill > 0) this.backlog = claimed.length === refill;
      return claimed;
    } catch (error) {
      // The leases lapse by themselves and the pings are sent again: nothing is lost, at worst a ping repeats.
      this.logger.error({ err: error, outcomes: batch.length }, "ping outcomes could not be recorded");
      return [];
    } finally {
      this.reserved -= refill;
    }
  }

  /**
   * A refill's claim, in a savepoint of the outcomes' transaction: should it fail, the outcomes are written all
   * the same, and a later look (at the latest the sweep) claims those pings.
   *
   * It passes over the subscriptions whose outcomes the transaction wrote; the next claim takes those that are
   * due. On PostgreSQL a second update of a row in one transaction checks its foreign key again, which holds the
   * feed's row in key share after the subscriptions' rows: the reverse of the order a feed's delete locks them
   * in, and the two deadlocked (found by contention.test.ts with two pings in flight).
   */
  private async refillIn(
    trx: Knex.Transaction,
    limit: number,
    now: number,
    written: ReadonlyArray<{ subscriptionId: string }>,
  ): Promise<PreparedPing[]> {
    const passOver = written.map((outcome) => outcome.subscriptionId);
    try {
      return await trx.transaction((savepoint) => this.claimIn(savepoint, limit, now, passOver));
    } catch (error) {
      // A storage failure is noted by WriteHealth; anything else is a bug.
      if (storageFailure(error) === undefined) this.logger.error({ err: error }, "ping dispatch failed");
      return [];
    }
  }

  private async pruneNow(): Promise<void> {
    const now = Date.now();
    if (now - this.lastPrune < PRUNE_EVERY_MS) return;
    this.lastPrune = now;
    const cutoff = subtractDuration(now, this.options.attemptsKeep);
    // Out of the range of dates (refused by the configuration): nothing is old enough to remove.
    if (cutoff === undefined) return;
    let removed = 0;
    for (let round = 0; round < 100 && !this.stopped; round++) {
      const count = await pruneAttempts(this.storage.writer, cutoff, PRUNE_BATCH);
      removed += count;
      if (count < PRUNE_BATCH) break;
    }
    if (removed > 0) this.logger.debug({ removed }, "old ping attempts pruned");
  }

  /**
   * Sends a test ping now, outside the subscription's schedule: what a ping would announce right now, marked
   * `test: true`, acknowledging nothing. The attempt is recorded and returned.
   */
  async test(subscription: SubscriptionRow): Promise<AttemptRow> {
    const at = Date.now();
    const ping = await new Announcement(this.storage.reader, this.options).test(subscription, at);
    const exchange = await this.courier.send(ping, this.abort.signal);
    this.count(exchange);
    const attempt = attemptOf(ping, at, exchange, true);
    const row = await this.storage.writer.transaction((trx) => insertAttemptIfKept(trx, attempt));
    if (!row) throw subscriptionNotFound(subscription.id);
    return row;
  }

  /**
   * Delivers the subscription's pending ping now, skipping the backoff: the ping that waits for its retry, or a
   * new one when events arrived beyond `acked`. The attempt counts like any other (an acknowledgement moves
   * `acked`, a failure extends the streak) and is returned. A 409 when the subscription is disabled, when a
   * delivery of it is in flight, or when nothing lies beyond `acked`.
   */
  async retry(id: string): Promise<AttemptRow> {
    const now = Date.now();
    const claimed = await this.storage.writer.transaction(async (trx) => {
      const subscription = await lockSubscription(trx, id);
      if (!subscription) throw subscriptionNotFound(id);
      if (subscription.status === "disabled") {
        throw new HttpProblem(
          409,
          "conflict",
          "The subscription is disabled: re-enable it (PATCH status active).",
        );
      }
      if (subscription.leaseUntil !== null && subscription.leaseUntil >= now) {
        throw new HttpProblem(409, "conflict", "A ping of this subscription is being delivered right now.");
      }
      const ping = await new Announcement(trx, this.options).prepare(subscription, now);
      if (!ping) {
        throw new HttpProblem(409, "conflict", "Nothing lies beyond acked: there is no ping to deliver.");
      }
      await markClaimed(trx, [
        { id: subscription.id, scanned: subscription.feedHead, lease: this.leaseFor(ping, now) },
      ]);
      return ping;
    });
    await this.deliver(claimed);
    // deliver() queued the outcome; write it now, so that the answer shows it.
    await this.flushing;
    while (this.outcomes.length > 0) await this.flush();
    const row = await findAttempt(this.storage.reader, id, claimed.pingId, now);
    if (!row && !(await findSubscription(this.storage.reader, id))) {
      // Deleted while the ping was on its way: its outcome, and the subscription's attempts, went with it.
      throw subscriptionNotFound(id);
    }
    if (!row) {
      // Handed back unsent: the service began to stop while the ping was on its way.
      throw new HttpProblem(
        503,
        "unavailable",
        "The service is shutting down; the ping is sent after it restarts.",
        {},
        {
          "Retry-After": "1",
        },
      );
    }
    return row;
  }

  /**
   * Stops claiming, lets pings in flight finish for up to `graceMs`, then aborts the rest and hands them back
   * (their lease is released, no attempt is counted), and writes every outcome before returning.
   */
  async stop(graceMs: number): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    this.unlisten?.();
    const grace = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
    await Promise.race([Promise.all([...this.deliveries]), grace]);
    this.abort.abort();
    await this.pumped;
    await Promise.all([...this.deliveries]);
    while (this.flushing) await this.flushing;
    await this.flush();
    await this.courier.destroy();
  }
}

/** The subscription's delivery state after an attempt's decision. */
function stateAfter(decision: Decision, head: number): DeliveryState {
  switch (decision.kind) {
    case "acknowledged":
      return { kind: "acknowledged", head };
    case "retry":
      return {
        kind: "failing",
        failures: decision.failures,
        failingSince: decision.failingSince,
        nextAttemptAt: decision.at,
      };
    case "disable":
      return { kind: "disabled", reason: decision.reason, failingSince: decision.failingSince };
  }
}
