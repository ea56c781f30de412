import { randomUUID } from "node:crypto";
import { closeSync, existsSync, fsyncSync, openSync, renameSync, rmSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import Database from "better-sqlite3";

/**
 * An online backup of the SQLite database while the service runs: `VACUUM INTO` on a read-only connection copies
 * one consistent snapshot (a read transaction, which in WAL mode never blocks the writer, and which the writer
 * never restarts, unlike the page-by-page backup API under steady writes). SQLite does not fsync what VACUUM INTO
 * writes, so the copy is written under a temporary name, fsynced, checked, and only then renamed into place: a
 * crash leaves either no backup or a whole one.
 */

export interface BackupResult {
  path: string;
  bytes: number;
  feeds: number;
  events: number;
}

function fsyncPath(path: string): void {
  const fd = openSync(path, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function backupSqlite(filename: string, target: string): BackupResult {
  if (!existsSync(filename)) throw new Error(`there is no database at ${filename}`);
  if (existsSync(target)) throw new Error(`${target} exists already; choose a new file name`);
  const temporary = join(dirname(target), `.${randomUUID()}.backup.tmp`);
  const source = new Database(filename, { readonly: true, fileMustExist: true });
  try {
    source.pragma("busy_timeout = 5000");
    source.prepare("VACUUM INTO ?").run(temporary);
  } finally {
    source.close();
  }
  try {
    fsyncPath(temporary);
    const copy = new Database(temporary, { readonly: true, fileMustExist: true });
    let counts: { feeds: number; events: number };
    try {
      const check = copy.pragma("quick_check", { simple: true });
      if (check !== "ok") throw new Error(`the copy failed its check: ${String(check)}`);
      counts = copy
        .prepare("SELECT (SELECT count(*) FROM feeds) AS feeds, (SELECT count(*) FROM events) AS events")
        .get() as { feeds: number; events: number };
    } finally {
      copy.close();
    }
    renameSync(temporary, target);
    fsyncPath(dirname(target));
    return { path: target, bytes: statSync(target).size, ...counts };
  } finally {
    rmSync(temporary, { force: true });
  }
}
