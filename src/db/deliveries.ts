import type { Knex } from "knex";
import { chunks, forKeyShare, type Queryable } from "./database.js";
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

/** What one claim records of one due subscription. */
export interface Claim {
  id: string;
  /** The dispatcher looked for matching events up to here. */
  scanned: number;
  /** The lease of the ping it sends, when it has one to send. */
  lease: Lease | undefined;
}

/** Rows per statement: far below SQLite's limit of 32,766 bound parameters at six columns a row. */
const ROWS_PER_STATEMENT = 400;

/**
 * Records a claim: that the dispatcher looked for matching events up to `scanned`, and the lease with its ping
 * of each subscription that has one to send. One statement per kind of change, not one per subscription: a claim
 * of hundreds of subscriptions spent most of its time preparing and running hundreds of single-row updates.
 */
export async function markClaimed(trx: Queryable, claims: readonly Claim[]): Promise<void> {
  const scannedOnly = new Map<number, string[]>();
  const leased: Array<{ id: string; scanned: number; lease: Lease }> = [];
  for (const { id, scanned, lease } of claims) {
    if (lease) leased.push({ id, scanned, lease });
    else {
      const ids = scannedOnly.get(scanned) ?? [];
      ids.push(id);
      scannedOnly.set(scanned, ids);
    }
  }
  for (const [scanned, ids] of scannedOnly) {
    for (const slice of chunks(ids, ROWS_PER_STATEMENT)) {
      await trx("subscriptions").whereIn("id", slice).update({ scanned });
    }
  }
  for (const slice of chunks(leased, ROWS_PER_STATEMENT)) {
    const columns = ["id", "scanned", "lease_owner", "lease_until", "ping_id", "ping_head", "ping_body"];
    await updateFromValues(trx, {
      columns,
      rows: slice.map(({ id, scanned, lease }) => [
        id,
        scanned,
        lease.owner,
        lease.until,
        lease.pingId,
        lease.head,
        lease.body,
      ]),
      assign: columns.slice(1),
    });
  }
}

/** Columns that hold whole numbers: PostgreSQL must be told, since a bound parameter in VALUES is text to it. */
const BIGINT_COLUMNS = new Set(["scanned", "lease_until", "ping_head", "acked"]);

interface ValuesUpdate {
  /** The columns of each row in `rows`; the first is the subscription's id. */
  columns: readonly string[];
  rows: ReadonlyArray<readonly unknown[]>;
  /** Which of `columns` are set from the row (the rest only match). */
  assign: readonly string[];
  /** Fixed values set on every row. */
  set?: Record<string, unknown>;
  /** Further conditions, in terms of `subscriptions` and `v`, and their bindings. */
  where?: { sql: string; bindings: readonly unknown[] };
}

/**
 * `with v(...) as (values ...) update subscriptions set ... from v where subscriptions.id = v.id and ...`: a
 * different value for each row in one statement (UPDATE ... FROM is in SQLite since 3.33 and in PostgreSQL).
 */
async function updateFromValues(trx: Queryable, update: ValuesUpdate): Promise<void> {
  const { columns, rows, assign, set = {}, where } = update;
  const row = `(${columns.map((column) => (BIGINT_COLUMNS.has(column) ? "cast(? as bigint)" : "?")).join(", ")})`;
  const assignments = [
    ...assign.map((column) => `${column} = v.${column}`),
    ...Object.keys(set).map((column) => `${column} = ?`),
  ];
  const sql =
    `with v(${columns.join(", ")}) as (values ${rows.map(() => row).join(", ")}) ` +
    `update subscriptions set ${assignments.join(", ")} from v where subscriptions.id = v.id` +
    (where ? ` and ${where.sql}` : "");
  await trx.raw(sql, [
    ...rows.flat(),
    ...Object.values(set),
    ...(where?.bindings ?? []),
  ] as Knex.RawBinding[]);
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
 * meanwhile are passed over; the rest cannot be deleted until `trx` ends. A ping replaced meanwhile (a PATCH
 * changed filters, or re-enabled) keeps its new state: then only the lease is given back. Acknowledgements, the
 * common outcome, are written in one statement per few hundred; a failure's state is its subscription's own.
 */
export async function recordOutcomes(
  trx: Queryable,
  node: string,
  outcomes: DeliveryOutcome[],
  attempts: NewAttempt[],
  now: number,
): Promise<void> {
  const ids = [...new Set(outcomes.map((outcome) => outcome.subscriptionId))].sort();
  const existing = new Set<string>();
  // The attempts reference their subscriptions: one deleted between this read and their insert (by the API, on
  // any node) would fail the whole batch, and every outcome in it would be lost to a lapsed lease. Held in key
  // share, a subscription's delete waits for this transaction instead. They are locked in id order, as a feed's
  // delete locks them (deleteFeed): in the order a plan happens to find them, each could hold a row the other
  // waits for. (PostgreSQL locks the rows of `order by ... for key share` in that order.)
  for (const slice of chunks(ids, ROWS_PER_STATEMENT)) {
    const rows = await forKeyShare(trx, trx("subscriptions").select("id").whereIn("id", slice).orderBy("id"));
    for (const row of rows) existing.add(row.id);
  }
  await insertAttempts(
    trx,
    attempts.filter((attempt) => existing.has(attempt.subscriptionId)),
  );
  const release = { lease_owner: null, lease_until: null, updated_at: now };
  const acknowledged: Array<[string, string, number]> = [];
  for (const { subscriptionId, pingId, state } of outcomes) {
    if (!existing.has(subscriptionId) || !state) continue;
    if (state.kind === "acknowledged") acknowledged.push([subscriptionId, pingId, state.head]);
    else {
      await trx("subscriptions")
        .where({ id: subscriptionId, lease_owner: node, ping_id: pingId })
        .update({ ...columnsOf(state), ...release });
    }
  }
  const { acked: _, ...afterAcknowledged } = columnsOf({ kind: "acknowledged", head: 0 });
  for (const slice of chunks(acknowledged, ROWS_PER_STATEMENT)) {
    await updateFromValues(trx, {
      columns: ["id", "ping_id", "acked"],
      rows: slice,
      assign: ["acked"],
      set: { ...afterAcknowledged, ...release },
      where: { sql: "subscriptions.ping_id = v.ping_id and subscriptions.lease_owner = ?", bindings: [node] },
    });
  }
  // Whatever still holds this node's lease was handed back, or its ping was replaced meanwhile.
  for (const slice of chunks([...existing], ROWS_PER_STATEMENT)) {
    await trx("subscriptions").whereIn("id", slice).andWhere({ lease_owner: node }).update(release);
  }
}
