import type { Knex } from "knex";
import { chunks, forKeyShare, onPostgres, type Queryable } from "./database.js";

/** Subscription and attempt rows. Every function takes the pool or a transaction. */

export type SubscriptionStatus = "active" | "failing" | "disabled";

/** How pings are signed: Standard Webhooks HMAC (`v1`) or Ed25519 (`v1a`). */
export type SignatureScheme = "v1" | "v1a";

/** What a ping's Authorization header carries; the static value stays sealed. */
export type PingAuthorization = { type: "jwt" } | { type: "static"; sealed: string } | null;

export interface SubscriptionRow {
  id: string;
  feedId: number;
  /** Joined from feeds. */
  feedName: string;
  feedHead: number;
  /** Joined from feeds: retention removed every event up to here. */
  feedPrunedThrough: number;
  owner: string | null;
  url: string;
  types: string[];
  subject: string | null;
  description: string | null;
  status: SubscriptionStatus;
  disabledReason: string | null;
  acked: number;
  scanned: number;
  /** Sealed: the `whsec_` secret (v1) or the `whsk_` private key (v1a). */
  secret: string;
  previousSecret: string | null;
  previousSecretUntil: number | null;
  signature: SignatureScheme;
  /** The `whpk_` public key of a v1a subscription. */
  publicKey: string | null;
  authorization: PingAuthorization;
  pingId: string | null;
  pingHead: number | null;
  pingBody: string | null;
  failures: number;
  failingSince: number | null;
  nextAttemptAt: number | null;
  leaseOwner: string | null;
  leaseUntil: number | null;
  createdAt: number;
}

export interface AttemptRow {
  id: number;
  subscriptionId: string;
  pingId: string;
  at: number;
  head: number;
  statusCode: number | null;
  durationMs: number;
  error: string | null;
  test: boolean;
}

type Stored = Record<string, unknown>;

const nullableNumber = (value: unknown) => (value === null || value === undefined ? null : Number(value));

function toSubscription(row: Stored): SubscriptionRow {
  return {
    id: row.id as string,
    feedId: Number(row.feed_id),
    feedName: row.feed_name as string,
    feedHead: Number(row.feed_head),
    feedPrunedThrough: Number(row.feed_pruned_through),
    owner: row.owner as string | null,
    url: row.url as string,
    types: JSON.parse(row.types as string) as string[],
    subject: row.subject as string | null,
    description: row.description as string | null,
    status: row.status as SubscriptionStatus,
    disabledReason: row.disabled_reason as string | null,
    acked: Number(row.acked),
    scanned: Number(row.scanned),
    secret: row.secret as string,
    previousSecret: row.previous_secret as string | null,
    previousSecretUntil: nullableNumber(row.previous_secret_until),
    signature: row.signature === "v1a" ? "v1a" : "v1",
    publicKey: (row.public_key as string | null) ?? null,
    authorization:
      row.authorization_type === "jwt"
        ? { type: "jwt" }
        : row.authorization_type === "static"
          ? { type: "static", sealed: row.authorization_value as string }
          : null,
    pingId: row.ping_id as string | null,
    pingHead: nullableNumber(row.ping_head),
    pingBody: row.ping_body as string | null,
    failures: Number(row.failures),
    failingSince: nullableNumber(row.failing_since),
    nextAttemptAt: nullableNumber(row.next_attempt_at),
    leaseOwner: row.lease_owner as string | null,
    leaseUntil: nullableNumber(row.lease_until),
    createdAt: Number(row.created_at),
  };
}

function toAttempt(row: Stored): AttemptRow {
  return {
    id: Number(row.id),
    subscriptionId: row.subscription_id as string,
    pingId: row.ping_id as string,
    at: Number(row.at),
    head: Number(row.head),
    statusCode: nullableNumber(row.status_code),
    durationMs: Number(row.duration_ms),
    error: row.error as string | null,
    test: Boolean(row.test),
  };
}

const SUBSCRIPTION_COLUMNS = [
  "s.*",
  "f.name as feed_name",
  "f.head as feed_head",
  "f.pruned_through as feed_pruned_through",
];

function selectSubscriptions(db: Queryable) {
  return db("subscriptions as s").join("feeds as f", "f.id", "s.feed_id").select(SUBSCRIPTION_COLUMNS);
}

export interface NewSubscription {
  id: string;
  feedId: number;
  owner: string | null;
  url: string;
  types: string[];
  subject: string | null;
  description: string | null;
  acked: number;
  secret: string;
  signature: SignatureScheme;
  publicKey: string | null;
  authorization: PingAuthorization;
  now: number;
}

export async function insertSubscription(db: Queryable, row: NewSubscription): Promise<void> {
  await db("subscriptions").insert({
    id: row.id,
    feed_id: row.feedId,
    owner: row.owner,
    url: row.url,
    types: JSON.stringify(row.types),
    subject: row.subject,
    description: row.description,
    status: "active",
    acked: row.acked,
    scanned: row.acked,
    secret: row.secret,
    signature: row.signature,
    public_key: row.publicKey,
    authorization_type: row.authorization?.type ?? null,
    authorization_value: row.authorization?.type === "static" ? row.authorization.sealed : null,
    failures: 0,
    created_at: row.now,
    updated_at: row.now,
  });
}

export async function findSubscription(db: Queryable, id: string): Promise<SubscriptionRow | undefined> {
  const row: Stored | undefined = await selectSubscriptions(db).where("s.id", id).first();
  return row ? toSubscription(row) : undefined;
}

/** The subscription, locked until the transaction ends (on PostgreSQL), as a claim by the dispatcher locks it. */
export async function lockSubscription(db: Queryable, id: string): Promise<SubscriptionRow | undefined> {
  const query = selectSubscriptions(db).where("s.id", id);
  if (onPostgres(db)) query.forUpdate("s");
  const row: Stored | undefined = await query.first();
  return row ? toSubscription(row) : undefined;
}

/** A page of subscriptions in id order after `after`; `owner` undefined lists everyone's. */
export async function listSubscriptions(
  db: Queryable,
  options: { owner: string | null | undefined; after: string | undefined; limit: number },
): Promise<SubscriptionRow[]> {
  const query = selectSubscriptions(db).orderBy("s.id").limit(options.limit);
  if (options.owner === null) query.whereNull("s.owner");
  else if (options.owner !== undefined) query.where("s.owner", options.owner);
  if (options.after !== undefined) query.where("s.id", ">", options.after);
  return (await query).map(toSubscription);
}

/** A change to a subscription, in the domain's words; `updateSubscription` knows the columns. */
export interface SubscriptionUpdate {
  url?: string;
  types?: string[];
  subject?: string | null;
  description?: string | null;
  status?: SubscriptionStatus;
  disabledReason?: string | null;
  /** Forget the pending ping and rescan from `acked`: the next ping is built afresh. */
  freshPing?: { acked: number };
  /** Forget the failure streak; the subscription is due now. */
  cleanSlate?: boolean;
  /** A sealed secret, with the previous one signing beside it until `previousSecretUntil`. */
  secret?: { sealed: string; previous: string | null; previousUntil: number | null };
  /** A new signature scheme, with its public key (v1a) or none. */
  signature?: { scheme: SignatureScheme; publicKey: string | null };
  authorization?: PingAuthorization;
}

/** Applies a change; `updated_at` is set here. Returns whether the row exists. */
export async function updateSubscription(
  db: Queryable,
  id: string,
  update: SubscriptionUpdate,
  now: number,
): Promise<boolean> {
  const columns: Record<string, unknown> = { updated_at: now };
  if (update.url !== undefined) columns.url = update.url;
  if (update.types !== undefined) columns.types = JSON.stringify(update.types);
  if (update.subject !== undefined) columns.subject = update.subject;
  if (update.description !== undefined) columns.description = update.description;
  if (update.status !== undefined) columns.status = update.status;
  if (update.disabledReason !== undefined) columns.disabled_reason = update.disabledReason;
  if (update.freshPing) {
    Object.assign(columns, {
      ping_id: null,
      ping_head: null,
      ping_body: null,
      scanned: update.freshPing.acked,
    });
  }
  if (update.cleanSlate) Object.assign(columns, { failures: 0, failing_since: null, next_attempt_at: null });
  if (update.secret) {
    Object.assign(columns, {
      secret: update.secret.sealed,
      previous_secret: update.secret.previous,
      previous_secret_until: update.secret.previousUntil,
    });
  }
  if (update.signature) {
    Object.assign(columns, { signature: update.signature.scheme, public_key: update.signature.publicKey });
  }
  if (update.authorization !== undefined) {
    Object.assign(columns, {
      authorization_type: update.authorization?.type ?? null,
      authorization_value: update.authorization?.type === "static" ? update.authorization.sealed : null,
    });
  }
  return (await db("subscriptions").where({ id }).update(columns)) > 0;
}

export async function deleteSubscription(db: Queryable, id: string): Promise<boolean> {
  return (await db("subscriptions").where({ id }).delete()) > 0;
}

/**
 * Subscriptions that may have a ping to send, up to `limit`: not disabled, not leased, not waiting for a retry,
 * and either behind their feed's head (matching events may have arrived) or holding a pending ping.
 *
 * With `claim`, inside a transaction, the rows are locked for it. On PostgreSQL that is FOR UPDATE SKIP LOCKED:
 * nodes claiming at the same time each get different subscriptions instead of waiting for one another, and a row
 * another node claimed meanwhile is re-checked against the lease condition after its lock, so it is passed over.
 *
 * Two reads, each through its own index, so that a look costs what is due and not what exists: those behind,
 * found from each feed by a range on `(feed_id, scanned)`, the longest behind first; then those with a ping
 * pending and nothing new. (SQLite is told to start from feeds with CROSS JOIN, which it takes as an order; for the
 * time conditions see DUE.) Subscriptions in `passOver` are left out, due or not.
 */
export async function findDue(
  db: Queryable,
  now: number,
  limit: number,
  claim = false,
  passOver: readonly string[] = [],
): Promise<SubscriptionRow[]> {
  const lock = claim && onPostgres(db);
  const { behind, pending } = dueQueries(db, now);
  if (passOver.length > 0) {
    behind.whereNotIn("s.id", passOver);
    pending.whereNotIn("s.id", passOver);
  }
  const rows: Stored[] = await locked(behind.select(SUBSCRIPTION_COLUMNS).limit(limit), lock);
  if (rows.length < limit) {
    rows.push(...(await locked(pending.select(SUBSCRIPTION_COLUMNS).limit(limit - rows.length), lock)));
  }
  return rows.map(toSubscription);
}

/**
 * The feeds that a subscription which is not disabled follows. Asked per feed, through the index on
 * `(feed_id, scanned)`: `select distinct feed_id` read every subscription's row, 15 ms for 3,000 on SQLite, and
 * the dispatcher asks once a second.
 */
export async function followedFeeds(db: Queryable): Promise<number[]> {
  const rows: Array<{ id: number }> = await db("feeds as f")
    .select("f.id")
    .whereExists((followers) =>
      followers
        .select(db.raw("1"))
        .from("subscriptions as s")
        .whereRaw("s.feed_id = f.id")
        .whereNot("s.status", "disabled"),
    );
  return rows.map((row) => Number(row.id));
}

/** What the dispatcher's look before a claim finds. */
export interface Look {
  /** Whether any subscription is due now (findDue's conditions). */
  due: boolean;
  /** The earliest retry of a subscription that is not disabled, if any. */
  nextRetry: number | undefined;
}

/**
 * Whether any subscription is due now, and when the next retry is, in one statement: the dispatcher looks with it
 * after appends to feeds that subscriptions follow and once a second, and most looks find nothing due (then this
 * is all it asks). On PostgreSQL every node looks after such appends of any node, so the look's text is fixed and
 * prepared once per connection (a named statement): built with the query builder and planned anew, it cost
 * PostgreSQL 0.5 ms of CPU and this process 0.5 ms, more than a group's append; prepared, 0.06 and 0.2 ms. Its
 * plan does not depend on `now`.
 */
export async function look(db: Queryable, now: number): Promise<Look> {
  const postgres = onPostgres(db);
  const query = db.raw(postgres ? LOOK.postgres : LOOK.sqlite, { now });
  const result: unknown = await (postgres ? query.options(PREPARED_LOOK) : query);
  const rows = Array.isArray(result) ? result : (result as { rows: unknown[] }).rows;
  const row = rows[0] as { due: unknown; next_retry: number | string | null } | undefined;
  return {
    due: row?.due === true || row?.due === 1,
    nextRetry: row?.next_retry === null || row?.next_retry === undefined ? undefined : Number(row.next_retry),
  };
}

/**
 * When a subscription (`s`) is due, with `:now` bound: not disabled, not leased, not waiting for a retry. findDue's
 * reads and the look share it. (The time conditions are written with coalesce so that no index on them looks more
 * attractive than the ones findDue means to use.)
 */
const DUE =
  "s.status <> 'disabled' and coalesce(s.lease_until, 0) < :now and coalesce(s.next_attempt_at, 0) <= :now";

/** findDue's two reads: subscriptions behind their feed's head (from feeds), and those with a ping pending. */
const BEHIND_ON = "s.feed_id = f.id and s.scanned < f.head";
const PENDING = "s.ping_id is not null and s.scanned >= f.head";
/** SQLite takes CROSS JOIN as an order: to start from feeds (see findDue). */
const behindJoin = (postgres: boolean) =>
  `${postgres ? "join" : "cross join"} subscriptions as s on ${BEHIND_ON}`;

const lookText = (postgres: boolean) => `select (
    exists (select 1 from feeds as f ${behindJoin(postgres)} where ${DUE})
    or exists (select 1 from subscriptions as s join feeds as f on f.id = s.feed_id where ${PENDING} and ${DUE})
  ) as due,
  (select min(next_attempt_at) from subscriptions where status <> 'disabled') as next_retry`;

const LOOK = { postgres: lookText(true), sqlite: lookText(false) };

const PREPARED_LOOK = { name: "seintje_look" };

/** findDue's two reads, without their columns: those behind their feed's head, and those with a ping pending. */
function dueQueries(db: Queryable, now: number) {
  return {
    behind: db
      .from("feeds as f")
      .joinRaw(behindJoin(onPostgres(db)))
      .whereRaw(DUE, { now }),
    pending: db("subscriptions as s")
      .join("feeds as f", "f.id", "s.feed_id")
      .whereRaw(`${PENDING} and ${DUE}`, { now }),
  };
}

function locked(query: Knex.QueryBuilder, lock: boolean): Knex.QueryBuilder {
  return lock ? query.forUpdate("s").skipLocked() : query;
}

/** How many subscriptions there are in each status. */
export async function countByStatus(db: Queryable): Promise<Record<string, number>> {
  const rows: Array<{ status: string; count: number | string }> = await db("subscriptions")
    .select("status")
    .count({ count: "*" })
    .groupBy("status");
  return Object.fromEntries(rows.map((row) => [row.status, Number(row.count)]));
}

export type NewAttempt = Omit<AttemptRow, "id">;

const ATTEMPTS_PER_INSERT = 400;

export async function insertAttempts(db: Queryable, attempts: NewAttempt[]): Promise<void> {
  for (const slice of chunks(attempts, ATTEMPTS_PER_INSERT)) {
    await db("ping_attempts").insert(
      slice.map((attempt) => ({
        subscription_id: attempt.subscriptionId,
        ping_id: attempt.pingId,
        at: attempt.at,
        head: attempt.head,
        status_code: attempt.statusCode,
        duration_ms: attempt.durationMs,
        error: attempt.error,
        test: attempt.test,
      })),
    );
  }
}

/**
 * Records, in `trx`, the attempt of a ping sent outside the schedule (a test ping) and answers it as stored, unless
 * its subscription was deleted while the ping was on its way: undefined then, and nothing is written.
 */
export async function insertAttemptIfKept(
  trx: Knex.Transaction,
  attempt: NewAttempt,
): Promise<AttemptRow | undefined> {
  const kept = await forKeyShare(
    trx,
    trx("subscriptions").select("id").where({ id: attempt.subscriptionId }),
  );
  if (kept.length === 0) return undefined;
  await insertAttempts(trx, [attempt]);
  return findAttempt(trx, attempt.subscriptionId, attempt.pingId, attempt.at);
}

/**
 * The newest attempt of the subscription's ping `pingId` made at `since` or later. (Not simply its newest attempt:
 * another, a test ping or a delivery from another node, may have been recorded after it.)
 */
export async function findAttempt(
  db: Queryable,
  subscriptionId: string,
  pingId: string,
  since: number,
): Promise<AttemptRow | undefined> {
  const row: Stored | undefined = await db("ping_attempts")
    .select("*")
    .where({ subscription_id: subscriptionId, ping_id: pingId })
    .andWhere("at", ">=", since)
    .orderBy("id", "desc")
    .first();
  return row ? toAttempt(row) : undefined;
}

/** Attempts of a subscription, newest first, with ids below `before`. */
export async function listAttempts(
  db: Queryable,
  subscriptionId: string,
  options: { before: number | undefined; limit: number },
): Promise<AttemptRow[]> {
  const query = db("ping_attempts")
    .select("*")
    .where("subscription_id", subscriptionId)
    .orderBy("id", "desc")
    .limit(options.limit);
  if (options.before !== undefined) query.andWhere("id", "<", options.before);
  return (await query).map(toAttempt);
}

/** The newest attempt of each of these subscriptions. */
export async function lastAttempts(
  db: Queryable,
  subscriptionIds: string[],
): Promise<Map<string, AttemptRow>> {
  const found = new Map<string, AttemptRow>();
  if (subscriptionIds.length === 0) return found;
  const newest = db("ping_attempts")
    .max("id")
    .whereIn("subscription_id", subscriptionIds)
    .groupBy("subscription_id");
  const rows: Stored[] = await db("ping_attempts").select("*").whereIn("id", newest);
  for (const row of rows) {
    const attempt = toAttempt(row);
    found.set(attempt.subscriptionId, attempt);
  }
  return found;
}

/**
 * Deletes attempts made before `cutoff`, at most `batch` of them; returns how many went. On PostgreSQL it passes
 * over attempts another transaction has locked (SKIP LOCKED): a subscription's delete removing its attempts, or
 * another node's prune. It never waits for a row, so it cannot hold some that such a delete waits for while
 * waiting for others the delete holds; what it passed over goes in a later prune, or with its subscription.
 */
export async function pruneAttempts(db: Queryable, cutoff: number, batch: number): Promise<number> {
  const oldest = db("ping_attempts").select("id").where("at", "<", cutoff).orderBy("id").limit(batch);
  if (onPostgres(db)) oldest.forUpdate().skipLocked();
  return db("ping_attempts").whereIn("id", oldest).delete();
}
