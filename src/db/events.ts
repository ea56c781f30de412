import type { Knex } from "knex";
import { onPostgres, powerOfTwoSlices, type Queryable } from "./database.js";
import type { SqliteReads } from "./sqlite-reads.js";
import { countAppended, countRemoved } from "./types.js";

/** Event rows: append, look up by identity, read after a cursor, prune from the bottom. */

export interface EventRow {
  feedId: number;
  sequence: number;
  source: string;
  eventId: string;
  type: string;
  subject: string | null;
  digest: string;
  body: string;
  appendedAt: number;
}

export interface StoredIdentity {
  source: string;
  eventId: string;
  sequence: number;
  digest: string;
}

export interface Page {
  sequences: number[];
  /** Each event's stored JSON, served as it is: never parsed or serialized again. */
  bodies: string[];
}

export interface Filters {
  /** Prefixes of `type`; an event matches when its type starts with any of them. */
  types: string[];
  subject: string | undefined;
}

/**
 * The most rows one INSERT takes and pairs one lookup asks for: 9 x 256 and 2 x 256 bound parameters stay far below
 * SQLite's limit of 32,766.
 */
const MOST_PER_STATEMENT = 256;

/** `text(n)` for n = 1, 2, 4 ... MOST_PER_STATEMENT: the statements of powerOfTwoSlices. */
function perSize(text: (count: number) => string): Map<number, string> {
  const texts = new Map<number, string>();
  for (let count = 1; count <= MOST_PER_STATEMENT; count *= 2) texts.set(count, text(count));
  return texts;
}

const INSERTS = perSize(
  (rows) =>
    "insert into events (feed_id, sequence, source, event_id, type, subject, digest, body, appended_at) values " +
    Array(rows).fill("(?, ?, ?, ?, ?, ?, ?, ?, ?)").join(", "),
);

const LOOKUPS = perSize(
  (pairs) =>
    "select source, event_id, sequence, digest from events where feed_id = ? and (source, event_id) in (values " +
    `${Array(pairs).fill("(?, ?)").join(", ")})`,
);

/**
 * Inserts the rows and counts them in the per-type figures, in the caller's transaction.
 *
 * The rows go in as INSERTs of a power of two rows each (powerOfTwoSlices), so the connection keeps their nine
 * texts prepared; building a multi-row INSERT with the query builder took longer than SQLite took to run it.
 */
export async function insertEvents(db: Queryable, rows: EventRow[]): Promise<void> {
  const counts = new Map<number, Map<string, number>>();
  let now = 0;
  for (const row of rows) {
    let types = counts.get(row.feedId);
    if (!types) {
      types = new Map();
      counts.set(row.feedId, types);
    }
    types.set(row.type, (types.get(row.type) ?? 0) + 1);
    now = Math.max(now, row.appendedAt);
  }
  for (const [feedId, types] of counts) await countAppended(db, feedId, types, now);
  for (const slice of powerOfTwoSlices(rows, MOST_PER_STATEMENT)) {
    const values: Array<string | number | null> = [];
    for (const row of slice) {
      values.push(
        row.feedId,
        row.sequence,
        row.source,
        row.eventId,
        row.type,
        row.subject,
        row.digest,
        row.body,
        row.appendedAt,
      );
    }
    await db.raw(INSERTS.get(slice.length)!, values);
  }
}

interface StoredIdentityRow {
  source: string;
  event_id: string;
  sequence: number | string;
  digest: string;
}

/**
 * The stored events of a feed with any of these (source, id) pairs, one index lookup per pair. SQLite's: on
 * PostgreSQL the append looks them up in the statement that reads the feed (findForAppend).
 */
export async function findByIdentity(
  db: Queryable,
  feedId: number,
  pairs: Array<[source: string, eventId: string]>,
): Promise<StoredIdentity[]> {
  const found: StoredIdentity[] = [];
  for (const slice of powerOfTwoSlices(pairs, MOST_PER_STATEMENT)) {
    const rows: StoredIdentityRow[] = await db.raw(LOOKUPS.get(slice.length)!, [feedId, ...slice.flat()]);
    for (const row of rows) {
      found.push({
        source: row.source,
        eventId: row.event_id,
        sequence: Number(row.sequence),
        digest: row.digest,
      });
    }
  }
  return found;
}

/** Events of one feed with after < sequence <= upTo: a range on the primary key. */
function range(db: Queryable, feedId: number, after: number, upTo: number): Knex.QueryBuilder {
  return db("events")
    .where("feed_id", feedId)
    .andWhere("sequence", ">", after)
    .andWhere("sequence", "<=", upTo);
}

/**
 * The filters as SQL to add to a WHERE on events, with its bindings (the same rule as `matches`): empty without
 * filters. Its text depends only on how many type prefixes there are and whether a subject is asked for, so a
 * connection that keeps its statements prepared has few texts to keep.
 */
function filterClause(filters: Filters): { sql: string; bindings: Array<string | number> } {
  let sql = "";
  const bindings: Array<string | number> = [];
  if (filters.types.length > 0) {
    // substr, not LIKE: LIKE is case-insensitive in SQLite and would need escaping of % and _.
    sql += ` and (${filters.types.map(() => "substr(type, 1, ?) = ?").join(" or ")})`;
    for (const prefix of filters.types) bindings.push(prefix.length, prefix);
  }
  if (filters.subject !== undefined) {
    sql += " and subject = ?";
    bindings.push(filters.subject);
  }
  return { sql, bindings };
}

/** Adds the filters to a query on events (filterClause). */
function filtered<T extends Knex.QueryBuilder>(query: T, filters: Filters): T {
  const clause = filterClause(filters);
  if (clause.sql !== "") query.andWhereRaw(clause.sql.slice(" and ".length), clause.bindings);
  return query;
}

/**
 * readRange's statement, as text and bindings: written out rather than built, so that a read costs what SQLite
 * or PostgreSQL take to run it (see SqliteReads).
 */
function rangeStatement(
  feedId: number,
  after: number,
  upTo: number,
  limit: number,
  filters: Filters,
): { sql: string; bindings: Array<string | number> } {
  const clause = filterClause(filters);
  return {
    sql: `select sequence, body from events where feed_id = ? and sequence > ? and sequence <= ?${clause.sql} order by sequence limit ?`,
    bindings: [feedId, after, upTo, ...clause.bindings, limit],
  };
}

/** The rows of readRange's statement as a page. */
function toPage(rows: Array<{ sequence: number | string; body: string }>): Page {
  return { sequences: rows.map((row) => Number(row.sequence)), bodies: rows.map((row) => row.body) };
}

/**
 * Events with after < sequence <= upTo that pass the filters, oldest first, at most `limit`.
 * A range on the primary key (feed_id, sequence): an index seek, whatever the depth.
 */
export async function readRange(
  db: Queryable,
  feedId: number,
  after: number,
  upTo: number,
  limit: number,
  filters: Filters,
): Promise<Page> {
  const { sql, bindings } = rangeStatement(feedId, after, upTo, limit, filters);
  const result = await db.raw(sql, bindings);
  return toPage(onPostgres(db) ? result.rows : result);
}

/** readRange on SQLite, read now (SqliteReads). */
export function readRangeNow(
  reads: SqliteReads,
  feedId: number,
  after: number,
  upTo: number,
  limit: number,
  filters: Filters,
): Page {
  const { sql, bindings } = rangeStatement(feedId, after, upTo, limit, filters);
  return toPage(reads.all(sql, bindings));
}

export async function readOne(db: Queryable, feedId: number, sequence: number): Promise<string | undefined> {
  const row = await db("events").select("body").where({ feed_id: feedId, sequence }).first();
  return row?.body;
}

/**
 * The highest sequence, scanning at most `scan` events upwards from `after`, below which every event was
 * appended before `cutoff`. Append times rise with sequence, so the scan stops at the first newer event.
 */
export async function lastAppendedBefore(
  db: Queryable,
  feedId: number,
  after: number,
  cutoff: number,
  scan: number,
): Promise<number> {
  const rows: Array<{ sequence: number | string; appended_at: number | string }> = await db("events")
    .select("sequence", "appended_at")
    .where("feed_id", feedId)
    .andWhere("sequence", ">", after)
    .orderBy("sequence")
    .limit(scan);
  let last = after;
  for (const row of rows) {
    if (Number(row.appended_at) >= cutoff) break;
    last = Number(row.sequence);
  }
  return last;
}

/**
 * Deletes the feed's events up to `sequence` and uncounts them in the per-type figures, in the caller's
 * transaction. The types are those of the rows this statement deleted (RETURNING), so two nodes pruning the same
 * range at once cannot uncount an event twice. Returns how many it deleted.
 */
export async function deleteThrough(db: Queryable, feedId: number, sequence: number): Promise<number> {
  // Raw, because knex drops RETURNING on SQLite (which has it since 3.35).
  const result = await db.raw("delete from events where feed_id = ? and sequence <= ? returning type", [
    feedId,
    sequence,
  ]);
  const rows: Array<{ type: string }> = onPostgres(db) ? result.rows : result;
  const removed = new Map<string, number>();
  for (const { type } of rows) removed.set(type, (removed.get(type) ?? 0) + 1);
  await countRemoved(db, feedId, removed);
  return rows.length;
}

export interface Entry {
  sequence: number;
  type: string;
  subject: string | null;
  body: string;
}

/** Events with after < sequence <= upTo, oldest first, at most `limit`, with what filters look at. */
export async function readEntries(
  db: Queryable,
  feedId: number,
  after: number,
  upTo: number,
  limit: number,
): Promise<Entry[]> {
  const rows: Array<{ sequence: number | string; type: string; subject: string | null; body: string }> =
    await range(db, feedId, after, upTo)
      .select("sequence", "type", "subject", "body")
      .orderBy("sequence")
      .limit(limit);
  return rows.map((row) => ({
    sequence: Number(row.sequence),
    type: row.type,
    subject: row.subject,
    body: row.body,
  }));
}

/** Whether an event passes a reader's filters (the same rule as readRange's SQL). */
export function matches(filters: Filters, type: string, subject: string | null): boolean {
  if (filters.subject !== undefined && subject !== filters.subject) return false;
  return filters.types.length === 0 || filters.types.some((prefix) => type.startsWith(prefix));
}

/** What a ping announces of an event: identifiers only. */
export interface Identity {
  sequence: number;
  id: string;
  type: string;
  subject: string | null;
}

/** The identities of matching events with after < sequence <= upTo, oldest first, at most `limit`. */
export async function matchingIdentities(
  db: Queryable,
  feedId: number,
  after: number,
  upTo: number,
  limit: number,
  filters: Filters,
): Promise<Identity[]> {
  const query = range(db, feedId, after, upTo)
    .select("sequence", "event_id", "type", "subject")
    .orderBy("sequence")
    .limit(limit);
  const rows: Array<{ sequence: number | string; event_id: string; type: string; subject: string | null }> =
    await filtered(query, filters);
  return rows.map((row) => ({
    sequence: Number(row.sequence),
    id: row.event_id,
    type: row.type,
    subject: row.subject,
  }));
}

/** The newest matching sequence with after < sequence <= upTo, or undefined when there is none. */
export async function newestMatching(
  db: Queryable,
  feedId: number,
  after: number,
  upTo: number,
  filters: Filters,
): Promise<number | undefined> {
  const query = range(db, feedId, after, upTo).select("sequence").orderBy("sequence", "desc").first();
  const row: { sequence: number | string } | undefined = await filtered(query, filters);
  return row === undefined ? undefined : Number(row.sequence);
}
