import Database from "better-sqlite3";

/** Statements each SQLite connection keeps prepared, the least recently used forgotten first. */
const PREPARED_STATEMENTS = 256;

/**
 * Makes the connection keep the statements it prepares. knex prepares every query anew, and for the append path
 * (a lookup, a multi-row insert and an update per group commit) parsing the SQL took about as long as running it:
 * 0.6 s of 7.7 s busy when publishing single events. A statement is only ever run to completion (knex calls all()
 * or run(), never iterate(); so does SqliteReads), so one prepared statement can serve every query with the same
 * SQL.
 */
export function cachePreparedStatements(connection: Database.Database): void {
  const prepared = new Map<string, Database.Statement>();
  const prepare = connection.prepare.bind(connection);
  connection.prepare = ((sql: string) => {
    let statement = prepared.get(sql);
    if (statement) {
      prepared.delete(sql);
    } else {
      statement = prepare(sql);
      if (prepared.size >= PREPARED_STATEMENTS) prepared.delete(prepared.keys().next().value!);
    }
    prepared.set(sql, statement);
    return statement;
  }) as typeof connection.prepare;
}

/**
 * Reads on SQLite, run synchronously on a read-only connection of their own. better-sqlite3 runs every statement
 * synchronously anyway; through knex a page of 1,000 events also paid for the query builder, the transaction's and
 * each query's promises and knex's handling of the rows, which took longer than SQLite took to read them
 * (docs/benchmarks-log.md, "Page reads without knex"). What is read, and how rows become values, is the business of
 * the modules that own the tables (findFeedNow, readRangeNow); this is the connection, its prepared statements
 * and its snapshots.
 *
 * A connection of its own, not the knex reader's: that one may be inside a snapshot (readSnapshot) that awaits
 * between its statements, and a read here must not land in it.
 */
export class SqliteReads {
  private readonly connection: Database.Database;

  constructor(filename: string) {
    this.connection = new Database(filename, { readonly: true, fileMustExist: true });
    try {
      // A read may meet a checkpoint for a moment: wait instead of failing, as the knex reader does.
      this.connection.pragma("busy_timeout = 5000");
      // Statements are prepared when first used (the storage is opened before its tables are made), and kept.
      cachePreparedStatements(this.connection);
    } catch (error) {
      this.connection.close();
      throw error;
    }
  }

  /** Runs `reads` in one read transaction: every read in it sees the same committed state. */
  snapshot<T>(reads: () => T): T {
    return this.connection.transaction(reads).deferred();
  }

  /** The rows of `sql`. */
  all<Row>(sql: string, bindings: readonly unknown[]): Row[] {
    return this.connection.prepare(sql).all(...bindings) as Row[];
  }

  /** The first row of `sql`, or undefined. */
  get<Row>(sql: string, bindings: readonly unknown[]): Row | undefined {
    return this.connection.prepare(sql).get(...bindings) as Row | undefined;
  }

  close(): void {
    this.connection.close();
  }
}
