import { randomUUID } from "node:crypto";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import type BetterSqlite3 from "better-sqlite3";
import knex, { type Knex } from "knex";
import pg from "pg";
import { MIGRATIONS, type Migration } from "../../migrations/index.js";
import { cachePreparedStatements, SqliteReads } from "./sqlite-reads.js";

/** Which database to open: what the configuration (DATABASE_URL, SEINTJE_DB_POOL_*) says. */
export type DatabaseConfig =
  | { dialect: "sqlite"; filename: string }
  | { dialect: "postgres"; url: string; pool: { min: number; max: number } };

/** Anything a query can run on: the pool or an open transaction. */
export type Queryable = Knex | Knex.Transaction;

/**
 * The storage handles. `writer` takes every write and every transaction. `reader` serves reads: on SQLite it is
 * a second connection to the same WAL file, so a read never waits behind an open group-commit transaction (WAL
 * readers see the last committed state without taking the write lock). On a server database both are one pool.
 */
export interface Storage {
  readonly dialect: DatabaseConfig["dialect"];
  /** This process among the nodes sharing the database (a random id per start). */
  readonly node: string;
  readonly writer: Knex;
  readonly reader: Knex;
  /** On SQLite, page reads without knex, on a third connection (see SqliteReads); undefined on PostgreSQL. */
  readonly sqliteReads: SqliteReads | undefined;
  close(): Promise<void>;
}

/**
 * SQLite settings, applied to every connection.
 * - WAL: readers and the writer do not block each other.
 * - synchronous=FULL: every commit fsyncs the WAL, so an acknowledged event survives a power cut, not only a
 *   process crash. (NORMAL would only survive process crashes.) Group commit amortises the fsync.
 * - busy_timeout: the reader may briefly meet a checkpoint; wait instead of failing.
 */
function configureSqlite(connection: BetterSqlite3.Database): void {
  connection.pragma("journal_mode = WAL");
  connection.pragma("synchronous = FULL");
  connection.pragma("foreign_keys = ON");
  connection.pragma("busy_timeout = 5000");
}

function sqlite(filename: string, readonly: boolean): Knex {
  return knex({
    client: "better-sqlite3",
    connection: { filename, options: { readonly } },
    useNullAsDefault: true,
    // better-sqlite3 is synchronous: one connection per role is all one thread can use.
    pool: {
      min: 1,
      max: 1,
      afterCreate(
        connection: BetterSqlite3.Database,
        done: (error: Error | null, connection: unknown) => void,
      ) {
        try {
          if (!readonly) configureSqlite(connection);
          else connection.pragma("busy_timeout = 5000");
          cachePreparedStatements(connection);
          done(null, connection);
        } catch (error) {
          done(error as Error, connection);
        }
      },
    },
  });
}

/**
 * PostgreSQL returns bigint (int8) as a string, since it may exceed 2^53. Sequences, times in milliseconds and
 * counts here stay far below that, so they are read as numbers, as SQLite gives them.
 */
export const pgTypes = {
  getTypeParser(oid: number, format?: string) {
    if (oid === pg.types.builtins.INT8 && format !== "binary") return Number;
    return pg.types.getTypeParser(oid, format as "text");
  },
};

/** Where knex's own warnings go (a lost connection, a failed acquire): the service's log, not the console. */
export interface StorageLog {
  warn(fields: object, message: string): void;
}

function postgres(config: Extract<DatabaseConfig, { dialect: "postgres" }>, log?: StorageLog): Knex {
  const say = (message: unknown) => log?.warn({ detail: String(message) }, "database connection");
  return knex({
    client: "pg",
    connection: { connectionString: config.url, application_name: "seintje", types: pgTypes },
    pool: { min: config.pool.min, max: config.pool.max },
    acquireConnectionTimeout: 10_000,
    ...(log ? { log: { warn: say, error: say, deprecate: say, debug: () => undefined } } : {}),
  });
}

/**
 * `items` in consecutive slices of at most `size`: statements with many rows or pairs are split so that their
 * bound parameters stay far below SQLite's limit of 32,766.
 */
export function chunks<T>(items: readonly T[], size: number): T[][] {
  const slices: T[][] = [];
  for (let start = 0; start < items.length; start += size) slices.push(items.slice(start, start + size));
  return slices;
}

/**
 * `items` in consecutive slices whose lengths are powers of two, at most `most` (a power of two), largest first:
 * 100 items as 64, 32 and 4. A statement written for each length then has few texts (log2(most) + 1), so a
 * connection keeps them all prepared, where one text per count would be parsed anew each time.
 */
export function powerOfTwoSlices<T>(items: readonly T[], most: number): T[][] {
  const slices: T[][] = [];
  let at = 0;
  while (at < items.length) {
    let size = most;
    while (size > items.length - at) size /= 2;
    slices.push(items.slice(at, at + size));
    at += size;
  }
  return slices;
}

/** Whether queries on `db` run on PostgreSQL (several nodes: rows that decide an order must be locked). */
export function onPostgres(db: Queryable): boolean {
  return db.client.config.client === "pg";
}

/**
 * Locks the rows a query selects until the transaction ends, on PostgreSQL. SQLite needs no row locks: its one
 * writer connection already runs write transactions one after another.
 */
export function forUpdate<T extends Knex.QueryBuilder>(db: Queryable, query: T): T {
  return onPostgres(db) ? (query.forUpdate() as T) : query;
}

/**
 * Keeps the rows a query selects from being deleted (or their keys changed) until the transaction ends, on
 * PostgreSQL, while other writes to them go on; rows that reference them can then be inserted safely. On SQLite
 * nothing can delete them meanwhile: write transactions run one after another there.
 */
export function forKeyShare<T extends Knex.QueryBuilder>(db: Queryable, query: T): T {
  return onPostgres(db) ? (query.forKeyShare() as T) : query;
}

/**
 * Runs several reads on one snapshot of the database, so that rows one transaction wrote together are seen
 * together (a subscription's state and the attempt recorded with it). On SQLite a read transaction on the WAL file
 * is a snapshot already; PostgreSQL's default, READ COMMITTED, gives each statement its own, so there it is
 * REPEATABLE READ, read only.
 */
export function readSnapshot<T>(storage: Storage, reads: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
  const config = onPostgres(storage.reader)
    ? { isolationLevel: "repeatable read" as const, readOnly: true }
    : {};
  return storage.reader.transaction(reads, config);
}

export async function openStorage(config: DatabaseConfig, log?: StorageLog): Promise<Storage> {
  const node = randomUUID();
  if (config.dialect === "postgres") {
    const pool = postgres(config, log);
    try {
      await pool.raw("select 1");
    } catch (error) {
      await pool.destroy();
      throw error;
    }
    let closed = false;
    return {
      dialect: "postgres",
      node,
      writer: pool,
      reader: pool,
      sqliteReads: undefined,
      async close() {
        if (closed) return;
        closed = true;
        await pool.destroy();
      },
    };
  }
  mkdirSync(dirname(config.filename), { recursive: true });
  const writer = sqlite(config.filename, false);
  // Creating the file and switching it to WAL has to happen before a read-only connection can open it.
  await writer.raw("select 1");
  const reader = sqlite(config.filename, true);
  let sqliteReads: SqliteReads;
  try {
    sqliteReads = new SqliteReads(config.filename);
  } catch (error) {
    await reader.destroy();
    await writer.destroy();
    throw error;
  }
  let closed = false;
  return {
    dialect: "sqlite",
    node,
    writer,
    reader,
    sqliteReads,
    async close() {
      if (closed) return;
      closed = true;
      sqliteReads.close();
      await reader.destroy();
      await writer.destroy();
    },
  };
}

class MigrationSource implements Knex.MigrationSource<Migration> {
  async getMigrations(): Promise<Migration[]> {
    return MIGRATIONS.map(([, migration]) => migration);
  }

  getMigrationName(migration: Migration): string {
    const entry = MIGRATIONS.find(([, candidate]) => candidate === migration);
    if (!entry) throw new Error("unknown migration");
    return entry[0];
  }

  async getMigration(migration: Migration): Promise<Migration> {
    return migration;
  }
}

const migrationConfig: Knex.MigratorConfig = {
  migrationSource: new MigrationSource(),
  tableName: "seintje_migrations",
};

/** Brings the schema up to date; returns the names of the migrations it ran. */
export async function migrate(storage: Storage): Promise<string[]> {
  const [, names] = (await storage.writer.migrate.latest(migrationConfig)) as [number, string[]];
  return names;
}

/** Whether the database answers (a query on the writer, which takes every write); throws when it does not. */
export async function ping(storage: Storage): Promise<void> {
  await storage.writer.raw("select 1");
}

/** The migrations that exist in the code but have not run on this database (read-only: no table is created). */
export async function pendingMigrations(storage: Storage): Promise<string[]> {
  const table = migrationConfig.tableName as string;
  const done = (await storage.reader.schema.hasTable(table))
    ? new Set((await storage.reader(table).select("name")).map((row: { name: string }) => row.name))
    : new Set<string>();
  return MIGRATIONS.map(([name]) => name).filter((name) => !done.has(name));
}
