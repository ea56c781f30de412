import { randomUUID } from "node:crypto";
import { linkSync, rmSync, writeFileSync } from "node:fs";

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
