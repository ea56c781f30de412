import type { Logger } from "pino";
import type { Storage } from "./database.js";

/**
 * Storage failures that are not bugs: the disk (or the database's quota) is full, or the database cannot be
 * reached for a moment. Requests meet them as 507 and 503 with Retry-After instead of a bare 500, and /readyz
 * answers 503 while writes fail, so that a load balancer sends writes elsewhere.
 */

export type StorageFailure = "full" | "unavailable" | "conflict";

/** PostgreSQL SQLSTATEs of a full disk or quota (class 53, insufficient resources). */
const PG_FULL = new Set(["53100", "53400"]);
/** PostgreSQL SQLSTATEs worth retrying: connection exceptions (class 08), shutdowns, too many connections. */
const PG_TRANSIENT = /^(08...|57P0[1-3]|53300|53200)$/;
/**
 * PostgreSQL SQLSTATEs of a transaction undone because it met another: a serialization failure, a deadlock. The
 * request may be sent again; a deadlock is a bug in the order in which seintje takes its locks.
 */
const PG_CONFLICT = new Set(["40001", "40P01"]);
/** SQLite result codes of a database that is there but cannot take this request now. */
const SQLITE_TRANSIENT = /^SQLITE_(BUSY|LOCKED|IOERR|READONLY|CANTOPEN|PROTOCOL)/;
/** Socket errors of a lost or refused database connection. */
const SOCKET_ERRORS = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENOTFOUND",
]);
/** What pg and knex say, without a code, when a connection dies under a query or none can be had. */
const LOST_CONNECTION =
  /Connection terminated|connection error and is not queryable|Timeout acquiring a connection/i;

/**
 * Whether `error` is a full or an unreachable storage, or a transaction the database undid because it met
 * another (or an append that met a change of its feed in every try), and which; undefined for everything else.
 */
export function storageFailure(error: unknown): StorageFailure | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const { code, name, message } = error as { code?: unknown; name?: unknown; message?: unknown };
  if (code === "SQLITE_FULL" || (typeof code === "string" && PG_FULL.has(code))) return "full";
  if ((typeof code === "string" && PG_CONFLICT.has(code)) || error instanceof FeedKeptChanging)
    return "conflict";
  if (
    typeof code === "string" &&
    (PG_TRANSIENT.test(code) || SQLITE_TRANSIENT.test(code) || SOCKET_ERRORS.has(code))
  )
    return "unavailable";
  if (name === "KnexTimeoutError") return "unavailable";
  if (typeof message === "string" && LOST_CONNECTION.test(message)) return "unavailable";
  return undefined;
}

/**
 * An append that found its feed changed by another writer in every one of its tries (PostgreSQL, where nodes
 * append without holding the feed between their read and their write): nothing of it was stored, and it may be
 * sent again, like a transaction the database undid.
 */
export class FeedKeptChanging extends Error {
  override readonly name = "FeedKeptChanging";

  constructor(feed: string, tries: number, last: string) {
    super(`the feed ${feed} changed under each of ${tries} tries of an append (last: ${last})`);
  }
}

/** Whether `error` is PostgreSQL refusing a row that a unique index already holds (SQLSTATE 23505). */
export function uniqueViolation(error: unknown): boolean {
  return typeof error === "object" && error !== null && (error as { code?: unknown }).code === "23505";
}

/** How often a full storage is tried again while writes fail. */
const PROBE_INTERVAL_MS = 5_000;
/** A probe writes a row of this size, more than a page, so that it needs new space as real writes do. */
const PROBE_BYTES = 8 * 1024;
/** At most one warning per this long while the database cannot be reached. */
const UNAVAILABLE_LOG_INTERVAL_MS = 10_000;

/**
 * Whether writes fail for want of space. The first failure is logged once as an error and makes /readyz answer
 * 503; from then on a probe writes and removes a row every few seconds, and the first one that commits ends the
 * state (logged once too). Failures are seen on every query of the writer, from requests and background work
 * alike.
 */
export class WriteHealth {
  private failingSince: number | undefined;
  private probing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastUnavailableLog = 0;
  /** Errors already noted: a failed write's error comes both from the writer's query-error event and its answer. */
  private readonly noted = new WeakSet<object>();

  constructor(
    private readonly storage: Storage,
    private readonly logger: Logger,
  ) {
    storage.writer.on("query-error", (error: unknown) => this.saw(error));
  }

  /** True while writes fail because storage is full. */
  get full(): boolean {
    return this.failingSince !== undefined;
  }

  /**
   * Notes a failed query: a full storage begins the failing state, an unreachable one is logged (rate-limited), and
   * so is a transaction undone for meeting another (each one: they are rare, and a deadlock is a bug).
   */
  saw(error: unknown): void {
    if (typeof error === "object" && error !== null) {
      if (this.noted.has(error)) return;
      this.noted.add(error);
    }
    const failure = storageFailure(error);
    if (failure === "conflict") {
      const what =
        error instanceof FeedKeptChanging
          ? "an append met another writer's change of its feed in every try"
          : "the database undid a transaction that met another (a deadlock or a serialization failure)";
      this.logger.warn({ err: error }, `${what}; its request gets 503 with Retry-After`);
      return;
    }
    if (failure === "unavailable") {
      const now = Date.now();
      if (now - this.lastUnavailableLog >= UNAVAILABLE_LOG_INTERVAL_MS) {
        this.lastUnavailableLog = now;
        this.logger.warn(
          { err: error },
          "the database could not be reached; requests get 503 with Retry-After",
        );
      }
      return;
    }
    if (failure !== "full" || this.failingSince !== undefined) return;
    this.failingSince = Date.now();
    this.logger.error(
      { err: error },
      "storage is full: writes fail (507) and /readyz answers 503 until space is freed",
    );
    this.timer = setInterval(() => void this.probe(), PROBE_INTERVAL_MS);
    this.timer.unref();
  }

  /** Tries a write now when writes were failing; resolves once the state is known again. */
  probe(): Promise<void> {
    if (this.failingSince === undefined) return Promise.resolve();
    this.probing ??= this.tryWrite().finally(() => {
      this.probing = undefined;
    });
    return this.probing;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async tryWrite(): Promise<void> {
    const name = `probe:${this.storage.node}`.slice(0, 64);
    try {
      await this.storage
        .writer("settings")
        .insert({ name, value: "x".repeat(PROBE_BYTES), created_at: Date.now() })
        .onConflict("name")
        .merge();
      await this.storage.writer("settings").where({ name }).delete();
    } catch {
      // Still failing (and seen by the query-error listener); the next probe tries again.
      return;
    }
    const seconds = Math.round((Date.now() - this.failingSince!) / 1000);
    this.failingSince = undefined;
    clearInterval(this.timer);
    this.logger.info({ failedForSeconds: seconds }, "storage takes writes again");
  }
}
