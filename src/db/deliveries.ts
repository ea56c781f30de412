import type { Queryable } from "./database.js";
import { insertAttempts, type NewAttempt } from "./subscriptions.js";

/**
 * The delivery state of subscriptions: what the ping dispatcher claims, leases and records. The dispatcher decides
 * in the domain's terms; this file alone knows the columns that hold it.
 */

/** A ping leased to a node: sent by it alone until `leaseUntil`, when the lease lapses by itself. */
export interface Lease {
  owner: string;
  until: number;
  pingId: string;
  head: number;
  body: string;
}

/**
 * Records that the dispatcher looked for matching events up to `scanned`, and leases the subscription with its
 * ping when it has one to send.
 */
export async function markClaimed(trx: Queryable, id: string, scanned: number, lease?: Lease): Promise<void> {
  const changes: Record<string, unknown> = { scanned };
  if (lease) {
    Object.assign(changes, {
      lease_owner: lease.owner,
      lease_until: lease.until,
      ping_id: lease.pingId,
      ping_head: lease.head,
      ping_body: lease.body,
    });
  }
  await trx("subscriptions").where({ id }).update(changes);
}

/** Gives back every lease: on SQLite, where the one process starting now is the only one that could hold any. */
export async function releaseAllLeases(db: Queryable): Promise<void> {
  await db("subscriptions").update({ lease_owner: null, lease_until: null });
}

/** What a subscription's delivery state becomes after an attempt. */
export type DeliveryState =
  | { kind: "acknowledged"; head: number }
  | { kind: "failing"; failures: number; failingSince: number; nextAttemptAt: number }
  | { kind: "disabled"; reason: string; failingSince: number };

export interface DeliveryOutcome {
  subscriptionId: string;
  pingId: string;
  /** Undefined: the ping is handed back untouched (shutdown); only the lease is released. */
  state: DeliveryState | undefined;
}

/** The pending ping, forgotten: the next one is built afresh. */
const NO_PING = { ping_id: null, ping_head: null, ping_body: null };

function columnsOf(state: DeliveryState): Record<string, unknown> {
  switch (state.kind) {
    case "acknowledged":
      return {
        acked: state.head,
        status: "active",
        ...NO_PING,
        failures: 0,
        failing_since: null,
        next_attempt_at: null,
      };
    case "failing":
      return {
        status: "failing",
        failures: state.failures,
        failing_since: state.failingSince,
        next_attempt_at: state.nextAttemptAt,
      };
    case "disabled":
      return {
        status: "disabled",
        disabled_reason: state.reason,
        ...NO_PING,
        failing_since: state.failingSince,
        next_attempt_at: null,
      };
  }
}

/**
 * Writes a batch of outcomes of pings leased to `node`, with their attempts, in `trx`. Subscriptions deleted
 * meanwhile are passed over. A ping replaced meanwhile (a PATCH changed filters, or re-enabled) keeps its new
 * state: then only the lease is given back.
 */
export async function recordOutcomes(
  trx: Queryable,
  node: string,
  outcomes: DeliveryOutcome[],
  attempts: NewAttempt[],
  now: number,
): Promise<void> {
  const ids = [...new Set(outcomes.map((outcome) => outcome.subscriptionId))];
  const existing = new Set(
    (await trx("subscriptions").select("id").whereIn("id", ids)).map((row: { id: string }) => row.id),
  );
  await insertAttempts(
    trx,
    attempts.filter((attempt) => existing.has(attempt.subscriptionId)),
  );
  for (const { subscriptionId, pingId, state } of outcomes) {
    if (!existing.has(subscriptionId)) continue;
    const mine = trx("subscriptions").where({ id: subscriptionId, lease_owner: node });
    const release = { lease_owner: null, lease_until: null, updated_at: now };
    const updated = state
      ? await mine
          .clone()
          .andWhere({ ping_id: pingId })
          .update({ ...columnsOf(state), ...release })
      : 0;
    if (updated === 0) await mine.clone().update(release);
  }
}
