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
