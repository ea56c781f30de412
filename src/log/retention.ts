import type { Logger } from "pino";
import type { Storage } from "../db/database.js";
import { deleteThrough, lastAppendedBefore } from "../db/events.js";
import { type FeedRow, listFeedsWithRetention, lockFeedById, setPrunedThrough } from "../db/feeds.js";
import type { Metrics } from "../metrics.js";
import { parseDuration, subtractDuration } from "./duration.js";

/**
 * Retention: removes a feed's oldest events beyond `maxEvents` or older than `maxAge` (by append time), always a
 * prefix of the log, and records how far it removed in `pruned_through`, which is what makes `oldest` and the
 * 410 for old cursors. It deletes in batches of BATCH events, each its own short transaction, so publishing
 * (which shares the one SQLite writer) waits at most one batch. A pass stops between batches when the service
 * stops, so shutdown never waits for a long backlog of deletions; the next start carries on.
 */

const BATCH = 1_000;

/** Prunes one feed; returns how many events it removed. Stops between batches once `signal` aborts. */
export async function pruneFeed(
  storage: Storage,
  feed: FeedRow,
  now = Date.now(),
  signal?: AbortSignal,
): Promise<number> {
  let target = feed.prunedThrough;
  if (feed.retentionMaxEvents !== null) target = Math.max(target, feed.head - feed.retentionMaxEvents);
  const maxAge = feed.retentionMaxAge === null ? undefined : parseDuration(feed.retentionMaxAge);
  // A maxAge whose cut-off leaves the range of dates (refused when set, but stored by an older version) keeps
  // every event: no arithmetic out of range may ever remove one.
  const cutoff = maxAge === undefined ? undefined : subtractDuration(now, maxAge);
  let removed = 0;
  let pruned = feed.prunedThrough;
  while (!signal?.aborted) {
    let end = Math.min(target, pruned + BATCH);
    if (cutoff !== undefined && end < pruned + BATCH) {
      end = Math.max(end, await lastAppendedBefore(storage.reader, feed.id, pruned, cutoff, BATCH));
    }
    if (end <= pruned) return removed;
    const through = end;
    const count = await storage.writer.transaction(async (trx) => {
      // The feed's lock first, as every other writer of a feed takes it (appends, changes, its delete). Taken
      // last, by the update of pruned_through, it closed a cycle with them on PostgreSQL: this transaction held
      // event and type-count rows that theirs wanted while they held the feed (found as deadlocks).
      if (!(await lockFeedById(trx, feed.id))) return undefined;
      const deleted = await deleteThrough(trx, feed.id, through);
      await setPrunedThrough(trx, feed.id, through);
      return deleted;
    });
    // Deleted meanwhile: its events went with it.
    if (count === undefined) return removed;
    removed += count;
    pruned = through;
  }
  return removed;
}

/** Runs a retention pass over every feed that has a limit, every `intervalSeconds`. */
export class RetentionScheduler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number> | undefined;
  private readonly stopping = new AbortController();

  constructor(
    private readonly storage: Storage,
    private readonly intervalSeconds: number,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      this.running ??= this.pass().finally(() => {
        this.running = undefined;
      });
    }, this.intervalSeconds * 1000);
    this.timer.unref();
  }

  /** One pass over all feeds; errors are logged per feed and do not stop the others. */
  async pass(now = Date.now()): Promise<number> {
    let removed = 0;
    for (const feed of await listFeedsWithRetention(this.storage.reader)) {
      if (this.stopping.signal.aborted) break;
      try {
        const count = await pruneFeed(this.storage, feed, now, this.stopping.signal);
        if (count > 0) {
          this.metrics.retentionDeleted.inc({ feed: feed.name }, count);
          this.logger.info({ feed: feed.name, removed: count }, "retention removed events");
        }
        removed += count;
      } catch (error) {
        this.logger.error({ err: error, feed: feed.name }, "retention pass failed for feed");
      }
    }
    return removed;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.stopping.abort();
    await this.running;
  }
}
