import Database from "better-sqlite3";
import { type Filters, type Page, rangeStatement, toPage } from "./events.js";
import { FEED_COLUMNS, type FeedRow, type StoredFeed, toFeed } from "./feeds.js";

const FEED = `select ${FEED_COLUMNS.join(", ")} from feeds where name = ?`;

/** Statements kept prepared: a range's text differs only by its number of type prefixes and its subject. */
const MOST_STATEMENTS = 64;

/**
 * SQLite's page reads, run synchronously on a read-only connection of their own. better-sqlite3 runs every
 * statement synchronously anyway; through knex a page of 1,000 events also paid for the query builder, the
 * transaction's and each query's promises and knex's handling of the rows, which took longer than SQLite took to
 * read them (docs/BENCHMARKS.md, "Page reads without knex"). The same statements as readRange and findFeed; each
 * read is one read transaction, so a page and the head it is bounded by are of one snapshot.
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

  feed(name: string): FeedRow | undefined {
    const row = this.statement(FEED).get(name) as StoredFeed | undefined;
    return row ? toFeed(row) : undefined;
  }

  /** readRange's rows, read now. */
  range(feedId: number, after: number, upTo: number, limit: number, filters: Filters): Page {
    const { sql, bindings } = rangeStatement(feedId, after, upTo, limit, filters);
    return toPage(this.statement(sql).all(...bindings) as Array<{ sequence: number; body: string }>);
  }

  private statement(sql: string): Database.Statement {
    let statement = this.statements.get(sql);
    if (!statement) {
      statement = this.connection.prepare(sql);
      // Few texts exist (the filters' shapes); should more appear, the oldest prepared is forgotten.
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
