import { randomUUID } from "node:crypto";
import { pendingMigrations, type Queryable, type Storage } from "../db/database.js";
import { type Filters, type Identity, matchingIdentities, newestMatching } from "../db/events.js";
import {
  type AttemptRow,
  findDue,
  insertAttempts,
  listAttempts,
  type NewAttempt,
  nextRetryAt,
  pruneAttempts,
  type SubscriptionRow,
} from "../db/subscriptions.js";
import { type Duration, subtractDuration } from "../log/duration.js";
import type { WakeupBus } from "../log/wakeup.js";
import type { Logger } from "../logger.js";
import type { Metrics, PingOutcome } from "../metrics.js";
import type { CallbackClient, Exchange } from "./client.js";
import { PING_EVENTS, pingBody, pingHeaders } from "./ping.js";
import { type Decision, decide, type RetryPolicy } from "./policy.js";
import { checkSealingKey, type SecretBox } from "./secrets.js";

/**
 * The dispatcher sends pings. Every decision is made from the database and written back to it, so the process
 * holds nothing that a crash could lose:
 *
 * 1. Claim: in one write transaction, find subscriptions that are due (not disabled, not leased, past their retry
 *    time, with a pending ping or a feed head beyond what was scanned), build or keep each one's ping, and lease
 *    them to this node for the ping timeout plus a margin. A lease lapses by itself if the node dies.
 * 2. Deliver: at most `concurrency` pings in flight over all subscriptions, and one per subscription (the lease).
 * 3. Record: outcomes are written in batches (attempt rows plus the new delivery state) in one transaction each.
 *
 * Coalescing falls out of this: events appended while a ping is in flight only move the feed's head; the next
 * claim, after the outcome, announces them all in one ping. A pending ping that newer events overtake is replaced
 * by a new ping (new id) at its next attempt, and never sent again.
 */

export interface DispatcherOptions {
  policy: RetryPolicy;
  concurrency: number;
  timeoutMs: number;
  /** CloudEvents `source` of pings. */
  source: string;
  publicUrl(): string;
  /** The `WebHook-Request-Origin` of pings: the host name of the public URL. */
  requestOrigin(): string;
  attemptsKeep: Duration;
}

/** A claimed subscription with the ping to send. */
interface Claimed {
  subscription: SubscriptionRow;
  pingId: string;
  head: number;
  body: string;
}

interface Outcome {
  claimed: Claimed;
  attempt: NewAttempt | undefined;
  /** Undefined: hand the ping back untouched (shutdown). */
  decision: Decision | undefined;
}

const CLAIM_BATCH = 500;
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

function filtersOf(subscription: Pick<SubscriptionRow, "types" | "subject">): Filters {
  return { types: subscription.types, subject: subscription.subject ?? undefined };
}

export class Dispatcher {
  private readonly deliveries = new Set<Promise<void>>();
  private readonly outcomes: Outcome[] = [];
  private readonly abort = new AbortController();
  private inFlight = 0;
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

  constructor(
    private readonly storage: Storage,
    private readonly bus: WakeupBus,
    private readonly client: CallbackClient,
    private readonly box: SecretBox,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
    private readonly options: DispatcherOptions,
  ) {}

  start(): void {
    this.unlisten = this.bus.listen({ appended: () => this.kick(), removed: () => undefined });
    this.kick();
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
    if (this.storage.dialect === "sqlite") {
      await this.storage.writer("subscriptions").update({ lease_owner: null, lease_until: null });
    }
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
    let delay = SWEEP_MS;
    try {
      if (await this.schemaReady()) {
        do {
          this.again = false;
          const free = this.options.concurrency - this.inFlight;
          if (free <= 0) break;
          const wanted = Math.min(free, CLAIM_BATCH);
          const claimed = await this.claim(wanted);
          for (const ping of claimed) this.launch(ping);
          this.backlog = claimed.length === wanted;
          if (claimed.length === CLAIM_BATCH) this.again = true;
        } while (this.again && !this.stopped);
        const next = await nextRetryAt(this.storage.reader);
        if (next !== undefined) delay = Math.min(SWEEP_MS, Math.max(10, next - Date.now()));
        await this.pruneNow();
      } else {
        this.again = false;
        delay = 5 * SWEEP_MS;
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

  /** Claims up to `limit` due subscriptions and prepares their pings, in one transaction. */
  private async claim(limit: number): Promise<Claimed[]> {
    const now = Date.now();
    // A read-only look first: most kicks find nothing, and on SQLite that look must not hold the write lock.
    if ((await findDue(this.storage.reader, now, 1)).length === 0) return [];
    return this.storage.writer.transaction(async (trx) => {
      const claimed: Claimed[] = [];
      const lookups = new Lookups(trx);
      for (const subscription of await findDue(trx, now, limit, true)) {
        const ping = await this.prepare(lookups, subscription, now);
        const changes: Record<string, unknown> = { scanned: subscription.feedHead };
        if (ping) {
          Object.assign(changes, {
            lease_owner: this.storage.node,
            lease_until: now + this.options.timeoutMs + LEASE_MARGIN_MS,
            ping_id: ping.pingId,
            ping_head: ping.head,
            ping_body: ping.body,
          });
          claimed.push(ping);
        }
        await trx("subscriptions").where({ id: subscription.id }).update(changes);
      }
      return claimed;
    });
  }

  /**
   * The ping a due subscription gets: the pending one unchanged, or a new one when matching events arrived beyond
   * it (or there is none yet). Undefined when no matching event lies beyond `acked`.
   */
  private async prepare(
    lookups: Lookups,
    subscription: SubscriptionRow,
    now: number,
  ): Promise<Claimed | undefined> {
    const announced = subscription.pingHead ?? subscription.acked;
    const newest = await lookups.newest(subscription, announced, subscription.feedHead);
    if (newest === undefined) {
      if (subscription.pingId === null || subscription.pingBody === null) return undefined;
      return {
        subscription,
        pingId: subscription.pingId,
        head: subscription.pingHead ?? subscription.acked,
        body: subscription.pingBody,
      };
    }
    const pingId = randomUUID();
    const body = await this.buildBody(lookups, subscription, pingId, newest, new Date(now), false);
    return { subscription, pingId, head: newest, body };
  }

  private async buildBody(
    lookups: Lookups,
    subscription: SubscriptionRow,
    pingId: string,
    head: number,
    time: Date,
    test: boolean,
  ): Promise<string> {
    const events = await lookups.identities(subscription, subscription.acked, head);
    return pingBody(pingId, this.options.source, time, this.options.publicUrl(), {
      feed: subscription.feedName,
      subscription: subscription.id,
      after: subscription.acked,
      head,
      types: subscription.types,
      subject: subscription.subject,
      events: events.slice(0, PING_EVENTS),
      truncated: events.length > PING_EVENTS,
      ...(subscription.acked < subscription.feedPrunedThrough
        ? { oldest: subscription.feedPrunedThrough + 1 }
        : {}),
      ...(test ? { test: true } : {}),
    });
  }

  /** The secrets that sign now: the current one, and the previous one while its rotation window lasts. */
  private secrets(subscription: SubscriptionRow, now: number): string[] {
    const secrets = [this.box.open(subscription.secret, subscription.id)];
    if (
      subscription.previousSecret !== null &&
      subscription.previousSecretUntil !== null &&
      subscription.previousSecretUntil > now
    ) {
      secrets.push(this.box.open(subscription.previousSecret, subscription.id));
    }
    return secrets;
  }

  private send(subscription: SubscriptionRow, pingId: string, body: string, signal?: AbortSignal) {
    const now = new Date();
    const secrets = this.secrets(subscription, now.getTime());
    const headers = pingHeaders(pingId, body, secrets, now, this.options.requestOrigin());
    return this.client.exchange("POST", subscription.url, headers, body, signal);
  }

  private launch(claimed: Claimed): void {
    this.inFlight += 1;
    const delivery = this.deliver(claimed)
      .catch((error) =>
        this.logger.error({ err: error, subscription: claimed.subscription.id }, "ping failed"),
      )
      .finally(() => {
        this.inFlight -= 1;
        // Freed slots matter only when more was due than could be claimed; they are refilled a quarter of the
        // slots at a time, so that a claim (a transaction, a commit) serves many pings rather than one.
        if (this.backlog && this.inFlight <= (this.options.concurrency * 3) / 4) this.kick();
        this.deliveries.delete(delivery);
      });
    this.deliveries.add(delivery);
  }

  private async deliver(claimed: Claimed): Promise<void> {
    const { subscription } = claimed;
    const at = Date.now();
    const exchange = await this.send(subscription, claimed.pingId, claimed.body, this.abort.signal);
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
      attempt: attemptOf(subscription.id, claimed.pingId, claimed.head, at, exchange, false),
      decision,
    });
  }

  private count(exchange: Exchange): void {
    this.metrics.pings.inc({ outcome: outcomeOf(exchange) });
    this.metrics.pingDuration.observe(exchange.durationMs / 1000);
  }

  private log(subscription: SubscriptionRow, claimed: Claimed, exchange: Exchange, decision: Decision): void {
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
      // One turn of the event loop gathers the outcomes that finished together into one transaction.
      await new Promise<void>((resolve) => setImmediate(resolve));
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
    await this.write(batch);
    let more = false;
    for (const { claimed, decision } of batch) {
      if (decision?.kind === "retry") this.wakeAt(decision.at);
      const { feedId, feedHead } = claimed.subscription;
      if (decision?.kind === "acknowledged" && this.bus.headOf(feedId) > feedHead) more = true;
    }
    if (more) this.kick();
  }

  private async write(batch: Outcome[]): Promise<void> {
    const now = Date.now();
    try {
      await this.storage.writer.transaction(async (trx) => {
        const ids = [...new Set(batch.map((outcome) => outcome.claimed.subscription.id))];
        const existing = new Set(
          (await trx("subscriptions").select("id").whereIn("id", ids)).map((row: { id: string }) => row.id),
        );
        await insertAttempts(
          trx,
          batch.flatMap((outcome) =>
            outcome.attempt && existing.has(outcome.attempt.subscriptionId) ? [outcome.attempt] : [],
          ),
        );
        for (const { claimed, decision } of batch) {
          if (!existing.has(claimed.subscription.id)) continue;
          const mine = trx("subscriptions").where({
            id: claimed.subscription.id,
            lease_owner: this.storage.node,
          });
          const release = { lease_owner: null, lease_until: null, updated_at: now };
          const changes = decision === undefined ? undefined : stateAfter(decision, claimed.head);
          // The ping may have been replaced meanwhile (a PATCH changed filters, or re-enabled): then only the
          // lease is given back.
          const updated = changes
            ? await mine
                .clone()
                .andWhere({ ping_id: claimed.pingId })
                .update({ ...changes, ...release })
            : 0;
          if (updated === 0) await mine.clone().update(release);
        }
      });
    } catch (error) {
      // The leases lapse by themselves and the pings are sent again: nothing is lost, at worst a ping repeats.
      this.logger.error({ err: error, outcomes: batch.length }, "ping outcomes could not be recorded");
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
    const lookups = new Lookups(this.storage.reader);
    const newest = await lookups.newest(subscription, subscription.acked, subscription.feedHead);
    const head = newest ?? subscription.acked;
    const pingId = randomUUID();
    const at = Date.now();
    const body = await this.buildBody(lookups, subscription, pingId, head, new Date(at), true);
    const exchange = await this.send(subscription, pingId, body, this.abort.signal);
    this.count(exchange);
    const attempt = attemptOf(subscription.id, pingId, head, at, exchange, true);
    await insertAttempts(this.storage.writer, [attempt]);
    const [row] = await listAttempts(this.storage.reader, subscription.id, { before: undefined, limit: 1 });
    return row!;
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
    await this.client.destroy();
  }
}

/**
 * The event lookups of one claim. Subscriptions of one feed mostly stand at the same cursor with the same filters,
 * so one claim of a thousand subscriptions costs two queries, not two thousand.
 */
class Lookups {
  private readonly memo = new Map<string, Promise<unknown>>();

  constructor(private readonly db: Queryable) {}

  /** The newest matching sequence in (after, upTo]. */
  newest(subscription: SubscriptionRow, after: number, upTo: number): Promise<number | undefined> {
    const filters = filtersOf(subscription);
    return this.cached(["newest", subscription.feedId, after, upTo, filters], () =>
      newestMatching(this.db, subscription.feedId, after, upTo, filters),
    );
  }

  /** The first PING_EVENTS + 1 matching identities in (after, upTo]. */
  identities(subscription: SubscriptionRow, after: number, upTo: number): Promise<Identity[]> {
    const filters = filtersOf(subscription);
    return this.cached(["identities", subscription.feedId, after, upTo, filters], () =>
      matchingIdentities(this.db, subscription.feedId, after, upTo, PING_EVENTS + 1, filters),
    );
  }

  private cached<T>(key: unknown[], read: () => Promise<T>): Promise<T> {
    const text = JSON.stringify(key);
    let found = this.memo.get(text) as Promise<T> | undefined;
    if (!found) {
      found = read();
      this.memo.set(text, found);
    }
    return found;
  }
}

function outcomeOf(exchange: Exchange): PingOutcome {
  const status = exchange.statusCode;
  if (status !== null) return status >= 200 && status < 300 ? "delivered" : "failed";
  return exchange.timedOut ? "timeout" : "network-error";
}

function attemptOf(
  subscriptionId: string,
  pingId: string,
  head: number,
  at: number,
  exchange: Exchange,
  test: boolean,
): NewAttempt {
  return {
    subscriptionId,
    pingId,
    at,
    head,
    statusCode: exchange.statusCode,
    durationMs: exchange.durationMs,
    error: exchange.error,
    test,
  };
}

/** The subscription's columns after an attempt's decision. */
function stateAfter(decision: Decision, head: number): Record<string, unknown> {
  switch (decision.kind) {
    case "acknowledged":
      return {
        acked: head,
        status: "active",
        ping_id: null,
        ping_head: null,
        ping_body: null,
        failures: 0,
        failing_since: null,
        next_attempt_at: null,
      };
    case "retry":
      return {
        status: "failing",
        failures: decision.failures,
        failing_since: decision.failingSince,
        next_attempt_at: decision.at,
      };
    case "disable":
      return {
        status: "disabled",
        disabled_reason: decision.reason,
        ping_id: null,
        ping_head: null,
        ping_body: null,
        failing_since: decision.failingSince,
        next_attempt_at: null,
      };
  }
}
