import { onPostgres, type Queryable } from "./database.js";

/**
 * Event type rows: the types a feed declares (`event_types`) and, per type it holds events of, how many and when
 * the newest was appended (`event_type_stats`). Schemas and examples are stored as the JSON text the admin sent.
 */

export interface DeclaredTypeRow {
  type: string;
  description: string | null;
  /** JSON text, or null when the type has no schema. */
  schema: string | null;
  /** JSON text, or null when the type has no example. */
  example: string | null;
  deprecated: boolean;
  createdAt: number;
  updatedAt: number;
}

export interface TypeStatsRow {
  type: string;
  count: number;
  lastPublished: number;
}

interface StoredDeclaredType {
  type: string;
  description: string | null;
  schema: string | null;
  example: string | null;
  deprecated: boolean | number;
  created_at: number | string;
  updated_at: number | string;
}

interface StoredStats {
  type: string;
  count: number | string;
  last_published: number | string;
}

const DECLARED = ["type", "description", "schema", "example", "deprecated", "created_at", "updated_at"];
const STATS = ["type", "count", "last_published"];

function toDeclared(row: StoredDeclaredType): DeclaredTypeRow {
  return {
    type: row.type,
    description: row.description,
    schema: row.schema,
    example: row.example,
    // SQLite keeps booleans as 0 and 1.
    deprecated: row.deprecated === true || row.deprecated === 1,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

function toStats(row: StoredStats): TypeStatsRow {
  return { type: row.type, count: Number(row.count), lastPublished: Number(row.last_published) };
}

export async function declaredTypes(db: Queryable, feedId: number): Promise<DeclaredTypeRow[]> {
  const rows: StoredDeclaredType[] = await db("event_types")
    .select(DECLARED)
    .where({ feed_id: feedId })
    .orderBy("type");
  return rows.map(toDeclared);
}

export async function declaredType(
  db: Queryable,
  feedId: number,
  type: string,
): Promise<DeclaredTypeRow | undefined> {
  const row: StoredDeclaredType | undefined = await db("event_types")
    .select(DECLARED)
    .where({ feed_id: feedId, type })
    .first();
  return row ? toDeclared(row) : undefined;
}

/** Creates or replaces the declaration; `createdAt` of a replaced one stays. Returns whether it was created. */
export async function upsertDeclaredType(
  db: Queryable,
  feedId: number,
  declared: Omit<DeclaredTypeRow, "createdAt" | "updatedAt">,
  now: number,
): Promise<boolean> {
  const values = {
    description: declared.description,
    schema: declared.schema,
    example: declared.example,
    deprecated: declared.deprecated,
    updated_at: now,
  };
  const updated = await db("event_types").where({ feed_id: feedId, type: declared.type }).update(values);
  if (updated > 0) return false;
  await db("event_types").insert({ feed_id: feedId, type: declared.type, ...values, created_at: now });
  return true;
}

export async function deleteDeclaredType(db: Queryable, feedId: number, type: string): Promise<boolean> {
  return (await db("event_types").where({ feed_id: feedId, type }).delete()) > 0;
}

export async function typeStats(db: Queryable, feedId: number): Promise<TypeStatsRow[]> {
  const rows: StoredStats[] = await db("event_type_stats")
    .select(STATS)
    .where({ feed_id: feedId })
    .orderBy("type");
  return rows.map(toStats);
}

export async function typeStatsOf(
  db: Queryable,
  feedId: number,
  type: string,
): Promise<TypeStatsRow | undefined> {
  const row: StoredStats | undefined = await db("event_type_stats")
    .select(STATS)
    .where({ feed_id: feedId, type })
    .first();
  return row ? toStats(row) : undefined;
}

/** Counts appended events, per type: `appended` maps a type to how many events of it were appended at `now`. */
export async function countAppended(
  db: Queryable,
  feedId: number,
  appended: Map<string, number>,
  now: number,
): Promise<void> {
  if (appended.size === 0) return;
  await db("event_type_stats")
    .insert([...appended].map(([type, count]) => ({ feed_id: feedId, type, count, last_published: now })))
    .onConflict(["feed_id", "type"])
    .merge({
      count: db.raw("?? + excluded.??", ["event_type_stats.count", "count"]),
      last_published: db.raw("excluded.??", ["last_published"]),
    });
}

/**
 * Uncounts removed events, per type. A type whose last event went is forgotten: the feed no longer holds any, so
 * it is no longer a type seen (a declared one stays declared).
 */
export async function countRemoved(
  db: Queryable,
  feedId: number,
  removed: Map<string, number>,
): Promise<void> {
  const emptied: string[] = [];
  for (const [type, count] of removed) {
    // Raw, because knex drops RETURNING on SQLite (which has it since 3.35).
    const result = await db.raw(
      "update event_type_stats set count = count - ? where feed_id = ? and type = ? returning count",
      [count, feedId, type],
    );
    const rows: Array<{ count: number | string }> = onPostgres(db) ? result.rows : result;
    if (rows.some((row) => Number(row.count) <= 0)) emptied.push(type);
  }
  if (emptied.length > 0) {
    await db("event_type_stats").where({ feed_id: feedId }).whereIn("type", emptied).delete();
  }
}
