import Database from "better-sqlite3";

/** Statements kept prepared: the page reads' texts, which differ by the shape of their filters. */
const MOST_STATEMENTS = 64;

/**
 * Reads on SQLite, run synchronously on a read-only connection of their own. better-sqlite3 runs every statement
 * synchronously anyway; through knex a page of 1,000 events also paid for the query builder, the transaction's and
 * each query's promises and knex's handling of the rows, which took longer than SQLite took to read them
 * (docs/BENCHMARKS.md, "Page reads without knex"). What is read, and how rows become values, is the business of
 * the modules that own the tables (findFeedNow, readRangeNow); this is the connection, its prepared statements
 * and its snapshots.
 *
 * A connection of its own, not the knex reader's: that one may be inside a snapshot (readSnapshot) that awaits
 * between its statements, and a read here must not land in it.
 */
export class SqliteReads {
  private readonly connection: Database.Database;
  /** Prepared when first used: the storage is opened before its tables are made. */
  private readonly statements = new Map<string, Database.Statement>();

  constructor(filename: string) {
    this.connection = new Database(filename, { readonly: true, fileMustExist: true });
    try {
      // A read may meet a checkpoint for a moment: wait instead of failing, as the knex reader does.
      this.connection.pragma("busy_timeout = 5000");
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
    return this.statement(sql).all(...bindings) as Row[];
  }

  /** The first row of `sql`, or undefined. */
  get<Row>(sql: string, bindings: readonly unknown[]): Row | undefined {
    return this.statement(sql).get(...bindings) as Row | undefined;
  }

  private statement(sql: string): Database.Statement {
    let statement = this.statements.get(sql);
    if (!statement) {
      statement = this.connection.prepare(sql);
      // Few texts exist; should more appear, the oldest prepared is forgotten.
      if (this.statements.size >= MOST_STATEMENTS)
        this.statements.delete(this.statements.keys().next().value!);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  close(): void {
    this.connection.close();
  }
}
