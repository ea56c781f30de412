import { spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";

/**
 * `npm run build` (which `npm install` and `npm start` run): builds dist/ safely when several start at once
 * (docs/scale-out.md starts two): one build at a time (a lock directory), only when a source changed since the
 * last build (a stamp), and into a fresh directory that then takes dist/'s place, so that no process ever imports
 * a half-written module. Before, `prestart` ran
 * tsc into dist/ for every start, and a second start's rebuild crashed the first ("does not provide an export").
 */

const ROOT = new URL("..", import.meta.url).pathname;
const DIST = join(ROOT, "dist");
const LOCK = join(ROOT, "dist.lock");
const STAMP = ".built";
const SOURCES = ["src", "migrations", "package.json", "tsconfig.json", "tsconfig.build.json"];
/** A lock older than this was left by a build that died. */
const STALE_LOCK_MS = 10 * 60 * 1000;
/** How long a start waits for another one's build. */
const WAIT_MS = 5 * 60 * 1000;

/** The newest modification time among the sources, in ms. */
function newestSource(path = ROOT, names = SOURCES): number {
  let newest = 0;
  for (const name of names) {
    const full = join(path, name);
    if (!existsSync(full)) continue;
    const stat = statSync(full);
    newest = Math.max(newest, stat.isDirectory() ? newestSource(full, readdirSync(full)) : stat.mtimeMs);
  }
  return newest;
}

function upToDate(sources: number): boolean {
  const stamp = join(DIST, STAMP);
  return existsSync(stamp) && Number(readFileSync(stamp, "utf8")) >= sources;
}

async function lock(): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    try {
      mkdirSync(LOCK);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    if (Date.now() - statSync(LOCK, { throwIfNoEntry: false })!.mtimeMs > STALE_LOCK_MS) {
      rmSync(LOCK, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline) throw new Error(`another build holds ${LOCK}; remove it if no build runs`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

await lock();
try {
  const sources = newestSource();
  if (!upToDate(sources)) {
    const next = `${DIST}.next-${process.pid}`;
    rmSync(next, { recursive: true, force: true });
    const tsc = spawnSync(
      join(ROOT, "node_modules/.bin/tsc"),
      ["-p", "tsconfig.build.json", "--outDir", next],
      {
        cwd: ROOT,
        stdio: "inherit",
      },
    );
    if (tsc.status !== 0) {
      rmSync(next, { recursive: true, force: true });
      process.exitCode = tsc.status ?? 1;
    } else {
      writeFileSync(join(next, STAMP), String(sources));
      const old = `${DIST}.old-${process.pid}`;
      if (existsSync(DIST)) renameSync(DIST, old);
      renameSync(next, DIST);
      rmSync(old, { recursive: true, force: true });
    }
  }
} finally {
  rmSync(LOCK, { recursive: true, force: true });
}
