import Database from "better-sqlite3";

/**
 * One serving process per SQLite file. A second one would work on the same data, but its long-polls, streams and
 * pings would never hear of the first one's appends (the wake-up bus is in-process; several nodes need
 * PostgreSQL). So `serve` holds an exclusive lock on `<file>.lock` for its whole life: SQLite takes it with a POSIX
 * advisory lock, which the kernel releases when the process ends however it ends, so no lock is ever left stale.
 * `seintje backup` and `seintje migrate` do not take it.
 */

export class SqliteFileInUse extends Error {
  constructor(readonly filename: string) {
    super(
      `${filename} is served by another seintje process: a SQLite database serves one process (stop the other, or ` +
        "give this one its own SEINTJE_DATA_DIR or DATABASE_URL; for several processes on one database use " +
        "PostgreSQL, see docs/scale-out.md)",
    );
    this.name = "SqliteFileInUse";
  }
}

/** Takes the lock, or throws SqliteFileInUse; returns what releases it. */
export function lockSqliteFile(filename: string): () => void {
  const lock = new Database(`${filename}.lock`, { timeout: 0 });
  try {
    // In exclusive locking mode SQLite keeps the lock it takes until the connection closes.
    lock.pragma("locking_mode = EXCLUSIVE");
    lock.exec("BEGIN EXCLUSIVE; COMMIT;");
  } catch (error) {
    lock.close();
    if ((error as { code?: string }).code === "SQLITE_BUSY") throw new SqliteFileInUse(filename);
    throw error;
  }
  return () => lock.close();
}
