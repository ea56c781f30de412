import { randomUUID } from "node:crypto";
import { mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { dirname, join } from "node:path";

/**
 * A consumer's cursor in a file, so that it restarts where it stopped. Each save writes a new file, flushes it to
 * disk and renames it over the old one: after a crash or a power cut the file holds the old cursor or the new
 * one, never half of either.
 *
 * Save after handling an event, not before: a crash in between then means the event is handled again after the
 * restart (at least once), never skipped.
 */
export class FileCursorStore {
  constructor(readonly path: string) {}

  /** The saved cursor, or undefined when none was saved yet. */
  async load(): Promise<string | undefined> {
    let text: string;
    try {
      text = await readFile(this.path, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
    const cursor = text.trim();
    if (!/^(0|[1-9][0-9]*)$/.test(cursor))
      throw new Error(`${this.path} does not hold a cursor: "${cursor}"`);
    return cursor;
  }

  async save(cursor: string | number): Promise<void> {
    const text = `${cursor}\n`;
    if (!/^(0|[1-9][0-9]*)\n$/.test(text)) throw new Error(`not a cursor: "${cursor}"`);
    const directory = dirname(this.path);
    await mkdir(directory, { recursive: true });
    const temporary = join(directory, `.${randomUUID()}.cursor.tmp`);
    try {
      const file = await open(temporary, "wx", 0o600);
      try {
        await file.writeFile(text);
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(temporary, this.path);
    } finally {
      await rm(temporary, { force: true });
    }
  }
}
