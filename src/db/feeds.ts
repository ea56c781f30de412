import { forKeyShare, forUpdate, onPostgres, type Queryable } from "./database.js";
import type { SqliteReads } from "./sqlite-reads.js";

/** Feed rows. Every function takes the pool or a transaction, so callers choose the transaction boundary. */

export interface FeedRow {
  id: number;
  name: string;
  description: string | null;
  retentionMaxAge: string | null;
  retentionMaxEvents: number | null;
  head: number;
  prunedThrough: number;
  typePolicy: TypePolicy;
  /** Anyone may read the feed's events, types and documents without a token. */
  public: boolean;
  /** Raised by every change to the feed's declared types: a cache of them is current while this is unchanged. */
  typesVersion: number;
  createdAt: number;
}

/** Whether a feed takes events of any type (`open`) or only of its declared types. */
export type TypePolicy = "open" | "declared";

export interface FeedSettings {
  description: string | null;
  retentionMaxAge: string | null;
  retentionMaxEvents: number | null;
  typePolicy: TypePolicy;
  public: boolean;
}

export interface StoredFeed {
  id: number | string;
  name: string;
  description: string | null;
  retention_max_age: string | null;
  retention_max_events: number | string | null;
  head: number | string;
  pruned_through: number | string;
  type_policy: string;
  public: boolean | number;
  types_version: number | string;
  created_at: number | string;
}

/** The columns a FeedRow is made of (toFeed). */
export const FEED_COLUMNS = [
  "id",
  "name",
  "description",
  "retention_max_age",
  "retention_max_events",
  "head",
  "pruned_through",
  "type_policy",
  "public",
  "types_version",
  "created_at",
];

// Numbers are converted anyway: a row may come from a driver that returns bigint as a string.
export function toFeed(row: StoredFeed): FeedRow {
  return {
    id: Number(row.id),
    name: row.name,
    description: row.description,
    retentionMaxAge: row.retention_max_age,
    retentionMaxEvents: row.retention_max_events === null ? null : Number(row.retention_max_events),
    head: Number(row.head),
    prunedThrough: Number(row.pruned_through),
    typePolicy: row.type_policy === "declared" ? "declared" : "open",
    // SQLite keeps booleans as 0 and 1.
    public: row.public === true || row.public === 1,
    typesVersion: Number(row.types_version),
    createdAt: Number(row.created_at),
  };
}

export async function findFeed(db: Queryable, name: string): Promise<FeedRow | undefined> {
  const row: StoredFeed | undefined = await db("feeds").select(FEED_COLUMNS).where({ name }).first();
  return row ? toFeed(row) : undefined;
}

const FEED_BY_NAME = `select ${FEED_COLUMNS.join(", ")} from feeds where name = ?`;

/** findFeed on SQLite, read now (SqliteReads). */
export function findFeedNow(reads: SqliteReads, name: string): FeedRow | undefined {
  const row = reads.get<StoredFeed>(FEED_BY_NAME, [name]);
  return row ? toFeed(row) : undefined;
}

/**
 * The feed, locked until the transaction ends (on PostgreSQL): whoever appends to a feed or changes it holds this
 * lock, so appends to one feed commit one after another in sequence order, whichever node makes them.
 */
export function lockFeed(trx: Queryable, name: string): Promise<FeedRow | undefined> {
  return findLocked(trx, { name }, forUpdate);
}

/** lockFeed by the feed's id: a feed deleted and created again under its name is not this one. */
export function lockFeedById(trx: Queryable, id: number): Promise<FeedRow | undefined> {
  return findLocked(trx, { id }, forUpdate);
}

/**
 * The feed, kept from being deleted until the transaction ends (on PostgreSQL), for a write that references it (a
 * subscription's insert): its delete waits, where it would otherwise fail that write's foreign key. The lock is
 * the one the foreign key's check takes anyway, taken before the feed is read.
 */
export function shareFeed(trx: Queryable, name: string): Promise<FeedRow | undefined> {
  return findLocked(trx, { name }, forKeyShare);
}

async function findLocked(
  trx: Queryable,
  which: { name: string } | { id: number },
  lock: typeof forUpdate,
): Promise<FeedRow | undefined> {
  const row: StoredFeed | undefined = await lock(trx, trx("feeds").select(FEED_COLUMNS).where(which)).first();
  return row ? toFeed(row) : undefined;
}

export async function listFeeds(db: Queryable): Promise<FeedRow[]> {
  const rows: StoredFeed[] = await db("feeds").select(FEED_COLUMNS).orderBy("name");
  return rows.map(toFeed);
}

export async function listFeedsWithRetention(db: Queryable): Promise<FeedRow[]> {
  const rows: StoredFeed[] = await db("feeds")
    .select(FEED_COLUMNS)
    .whereNotNull("retention_max_age")
    .orWhereNotNull("retention_max_events");
  return rows.map(toFeed);
}

/**
 * Creates the feed and returns it locked, or returns undefined when a feed of that name exists already (another
 * request or node created it first; nothing is changed then).
 */
export async function insertFeed(
  trx: Queryable,
  name: string,
  settings: FeedSettings,
  now: number,
): Promise<FeedRow | undefined> {
  const inserted = await trx("feeds")
    .insert({
      name,
      description: settings.description,
      retention_max_age: settings.retentionMaxAge,
      retention_max_events: settings.retentionMaxEvents,
      type_policy: settings.typePolicy,
      public: settings.public,
      head: 0,
      pruned_through: 0,
      created_at: now,
      updated_at: now,
    })
    .onConflict("name")
    .ignore()
    .returning(FEED_COLUMNS);
  // The new row stays locked by this transaction until it commits: no other transaction can see it before.
  const [row] = inserted as StoredFeed[];
  return row ? toFeed(row) : undefined;
}

export async function updateFeedSettings(
  db: Queryable,
  id: number,
  settings: FeedSettings,
  now: number,
): Promise<void> {
  await db("feeds")
    .where({ id })
    .update({
      description: settings.description,
      retention_max_age: settings.retentionMaxAge,
      retention_max_events: settings.retentionMaxEvents,
      type_policy: settings.typePolicy,
      public: settings.public,
      updated_at: now,
      // A new type policy changes what an append accepts, as a change of the declared types does.
      types_version: db.raw("case when type_policy = ? then types_version else types_version + 1 end", [
        settings.typePolicy,
      ]),
    });
}

/**
 * Removes the feed and its events; returns its id, or undefined when there was none. The events are deleted
 * explicitly, so this does not depend on SQLite's foreign_keys pragma for the ON DELETE CASCADE.
 *
 * On PostgreSQL the feed's subscriptions are locked first, in id order: the cascade would lock them in the order
 * its plan finds them, and a batch of ping outcomes holding some of them in another order (recordOutcomes)
 * could then hold a row the cascade waits for while waiting for one the cascade holds.
 */
export async function deleteFeed(trx: Queryable, name: string): Promise<number | undefined> {
  const feed = await lockFeed(trx, name);
  if (!feed) return undefined;
  if (onPostgres(trx)) {
    await trx("subscriptions").select("id").where({ feed_id: feed.id }).orderBy("id").forUpdate();
  }
  await trx("events").where({ feed_id: feed.id }).delete();
  await trx("event_types").where({ feed_id: feed.id }).delete();
  await trx("event_type_stats").where({ feed_id: feed.id }).delete();
  await trx("feeds").where({ id: feed.id }).delete();
  return feed.id;
}

/** Marks the feed's declared types as changed, so every node's cache of them is reloaded before the next append. */
export async function bumpTypesVersion(db: Queryable, id: number): Promise<void> {
  await db("feeds")
    .where({ id })
    .update({ types_version: db.raw("types_version + 1") });
}

export async function setHead(db: Queryable, id: number, head: number): Promise<void> {
  await db("feeds").where({ id }).update({ head });
}

export async function setPrunedThrough(db: Queryable, id: number, prunedThrough: number): Promise<void> {
  await db("feeds")
    .where({ id })
    .andWhere("pruned_through", "<", prunedThrough)
    .update({ pruned_through: prunedThrough });
}
