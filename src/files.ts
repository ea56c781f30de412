import { randomUUID } from "node:crypto";
import { chmodSync, linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/**
 * Creates `path` with `content`, readable by the service's user only, unless it exists already. Written under a
 * temporary name with mode 0600, then linked into place: the file is never readable by others, never
 * half-written, and two processes starting at once cannot both create one (link fails when it exists).
 */
export function createPrivateFile(path: string, content: string): void {
  const temporary = `${path}.${randomUUID()}.tmp`;
  writeFileSync(temporary, content, { mode: 0o600, flag: "wx" });
  try {
    linkSync(temporary, path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  } finally {
    rmSync(temporary, { force: true });
  }
}

/**
 * The text of `name` in `dataDir`, a file only the service's user may read. On first use the file is created with
 * what `initial` makes (`created` says so); when two processes start at once, both read the one that was linked
 * into place first.
 */
export async function loadPrivateFile(
  dataDir: string,
  name: string,
  initial: () => string | Promise<string>,
): Promise<{ path: string; text: string; created: boolean }> {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const path = join(dataDir, name);
  try {
    const text = readFileSync(path, "utf8");
    chmodSync(path, 0o600);
    return { path, text, created: false };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  createPrivateFile(path, await initial());
  return { path, text: readFileSync(path, "utf8"), created: true };
}

/**
 * Where a key comes from: its text in a variable, a file a variable names, or else (empty) its file in the data
 * dir. `name` is the variable, for messages; the text itself never goes into one.
 */
export interface KeySource {
  text?: string;
  file?: string;
  name?: string;
}

/**
 * The text of a key and where it came from (`path`: the file, or the variable's name). From the data dir it is
 * created with `initial` on first use; given `initial` undefined, a key missing there is an ENOENT error.
 */
export async function loadKey(
  dataDir: string,
  name: string,
  source: KeySource,
  initial: (() => string | Promise<string>) | undefined,
): Promise<{ path: string; text: string; created: boolean }> {
  if (source.text !== undefined)
    return { path: source.name ?? "a variable", text: source.text, created: false };
  if (source.file !== undefined)
    return { path: source.file, text: readFileSync(source.file, "utf8"), created: false };
  if (initial) return loadPrivateFile(dataDir, name, initial);
  const path = join(dataDir, name);
  return { path, text: readFileSync(path, "utf8"), created: false };
}
