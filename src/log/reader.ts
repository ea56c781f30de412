import { readSnapshot, type Storage } from "../db/database.js";
import { type Filters, type Page, readOne, readRange, readRangeNow } from "../db/events.js";
import { type FeedRow, findFeed, findFeedNow } from "../db/feeds.js";
import { HttpProblem } from "../errors.js";
import { MAX_PAGE_BYTES } from "./bounds.js";
import { feedNotFound } from "./feeds.js";
import type { WakeupBus } from "./wakeup.js";

/**
 * The read side of the log: a page after a cursor, and the long-poll that waits for one.
 *
 * Every read is bounded by the feed's `head` as read in the same read transaction: the head is written in the
 * transaction that appends its events, so every event up to it is committed and visible, and a page never
 * skips one that commits later.
 */

export interface ReadQuery {
  /** The cursor; undefined or 0 reads from the oldest kept event. */
  after: number | undefined;
  limit: number;
  filters: Filters;
}

export interface FeedPage {
  feed: FeedRow;
  sequences: number[];
  /** The stored JSON of each event, served as is. */
  bodies: string[];
  /** The cursor for the next read: past every event this read scanned, matching or not. */
  next: number;
  head: number;
}

/**
 * With filters, one read scans at most this many sequences (and `next` moves past them), so a selective filter
 * on a long feed costs a bounded range scan per page instead of a scan to the end.
 */
export const SCAN_WINDOW = 10_000;
/** A long-poll scans at most this many windows before it answers with an empty page and an advanced `next`. */
const SCAN_ROUNDS = 10;

/**
 * Rows the first query of a page reads. Later queries read as many as the budget left allows at the average size
 * seen so far, so a page of small events takes one or two queries, and reading a page of the largest events holds
 * at most FIRST_READ x 64 KiB (6.4 MiB) for a moment before the budget trims it.
 */
const FIRST_READ = 100;

const filtered = (filters: Filters) => filters.types.length > 0 || filters.subject !== undefined;

export function oldestKept(feed: FeedRow): number | null {
  return feed.head > feed.prunedThrough ? feed.prunedThrough + 1 : null;
}

/**
 * Throws the problem a cursor has against this feed: 400 when it is ahead of the head, 410 when retention removed
 * events after it (unless `gone` is false, for callers that answer that case themselves).
 */
export function checkCursor(feed: FeedRow, after: number, gone = true): void {
  if (after > feed.head) {
    throw new HttpProblem(
      400,
      "cursorAhead",
      `The cursor ${after} is ahead of the feed's head ${feed.head}: the feed was reset, or the cursor belongs to another feed.`,
      { head: String(feed.head) },
    );
  }
  if (gone && after > 0 && after < feed.prunedThrough) {
    const oldest = oldestKept(feed);
    throw new HttpProblem(
      410,
      "cursorGone",
      `Events after ${after} up to ${feed.prunedThrough} were removed by retention; resume from the oldest kept event.`,
      { oldest: oldest === null ? null : String(oldest), head: String(feed.head) },
    );
  }
}

/**
 * Reads in flight per storage, by what they read. Requests that ask for the same page at the same time share one
 * read: when an append wakes thousands of long-polls (or streams open together) at one cursor, the database is
 * read once, not once per request.
 *
 * A read is shared only with those that may take its snapshot. Each read notes the moment it began, on the read
 * clock; a caller that passes `since` joins only a read that began at or after it, so a reader told of an append
 * before it asked (a publisher's 201, a ping, a wake-up) never gets a page read before that append. On SQLite a
 * read is synchronous and ends in the tick it began; on PostgreSQL it takes a round trip, and a request that
 * joined a read begun before the append its client had just seen acknowledged got a page without it.
 */
interface InFlight {
  page: Promise<FeedPage>;
  began: number;
}
const inFlight = new WeakMap<Storage, Map<string, InFlight>>();

/** The read clock: a read begun at or after a moment on it sees every append committed before that moment. */
export const readClock: () => number = () => performance.now();

/** What a read reads, as a key: requests with equal keys may share one read, or one wait. */
export function readKey(name: string, query: ReadQuery): string {
  // A feed name holds no space; filters, which may hold anything, are quoted (and left out when there are none).
  const filters = filtered(query.filters) ? JSON.stringify([query.filters.types, query.filters.subject]) : "";
  return `${name} ${query.after ?? 0} ${query.limit} ${filters}`;
}

/**
 * A page of the feed after `query.after`: one read transaction, bounded by the head it reads. It shares a read in
 * flight that began at or after `since` (a moment on readClock; by default any).
 */
export function readPage(
  storage: Storage,
  name: string,
  query: ReadQuery,
  since = Number.NEGATIVE_INFINITY,
): Promise<FeedPage> {
  let reads = inFlight.get(storage);
  if (!reads) {
    reads = new Map();
    inFlight.set(storage, reads);
  }
  const key = readKey(name, query);
  const current = reads.get(key);
  if (current && current.began >= since) return current.page;
  const shared = reads;
  // The clock is read before the read begins: its snapshot is no older than `began`.
  const began = readClock();
  const read: InFlight = { page: readPageAlone(storage, name, query), began };
  read.page = read.page.finally(() => {
    if (shared.get(key) === read) shared.delete(key);
  });
  reads.set(key, read);
  return read.page;
}

/**
 * One page, read in one read transaction. On SQLite synchronously, on a connection without knex (SqliteReads);
 * on PostgreSQL through knex, REPEATABLE READ (readSnapshot): under READ COMMITTED each statement sees what was
 * committed when it began, and a retention pass that committed between the feed's read and the events' read made
 * a cursor it had just passed read on from after the removed events, a silent skip instead of a 410. Both run the
 * same steps (pageSteps).
 */
async function readPageAlone(storage: Storage, name: string, query: ReadQuery): Promise<FeedPage> {
  const sqlite = storage.sqliteReads;
  if (sqlite) {
    return sqlite.snapshot(() => {
      const steps = pageSteps(findFeedNow(sqlite, name), name, query);
      let step = steps.next();
      while (!step.done) step = steps.next(readRangeNow(sqlite, ...step.value));
      return step.value;
    });
  }
  return readSnapshot(storage, async (trx) => {
    const steps = pageSteps(await findFeed(trx, name), name, query);
    let step = steps.next();
    while (!step.done) step = steps.next(await readRange(trx, ...step.value));
    return step.value;
  });
}

/** The arguments of a range read (readRange's, after its database): the feed, after, upTo, limit and filters. */
type RangeAsk = [feedId: number, after: number, upTo: number, limit: number, filters: Filters];

/**
 * A page of `feed` (as read in the page's transaction): yields each range it needs read, gets back its rows, and
 * returns the page. Throws the feed's 404 and the cursor's 400 or 410.
 */
function* pageSteps(
  feed: FeedRow | undefined,
  name: string,
  query: ReadQuery,
): Generator<RangeAsk, FeedPage, Page> {
  if (!feed) throw feedNotFound(name);
  const after = query.after ?? 0;
  checkCursor(feed, after);
  const start = Math.max(after, feed.prunedThrough);
  const upTo = filtered(query.filters) ? Math.min(feed.head, start + SCAN_WINDOW) : feed.head;
  const page = yield* budgeted(feed.id, start, upTo, query);
  const next = page.full
    ? page.sequences.at(-1)!
    : filtered(query.filters)
      ? upTo
      : (page.sequences.at(-1) ?? start);
  return { feed, sequences: page.sequences, bodies: page.bodies, next, head: feed.head };
}

/**
 * The events of a page within `limit` and MAX_PAGE_BYTES, read in as few ranges as the budget allows. `full`
 * when it stopped at either bound, not at the end of the range.
 */
function* budgeted(
  feedId: number,
  start: number,
  upTo: number,
  query: ReadQuery,
): Generator<RangeAsk, Page & { full: boolean }, Page> {
  const sequences: number[] = [];
  const bodies: string[] = [];
  let bytes = 0;
  let cursor = start;
  while (sequences.length < query.limit) {
    const left = query.limit - sequences.length;
    const want =
      sequences.length === 0
        ? Math.min(left, FIRST_READ)
        : Math.min(left, Math.floor((MAX_PAGE_BYTES - bytes) / (bytes / sequences.length)) + 1);
    const chunk = yield [feedId, cursor, upTo, want, query.filters];
    for (let index = 0; index < chunk.sequences.length; index += 1) {
      const body = chunk.bodies[index]!;
      const size = Buffer.byteLength(body);
      if (sequences.length > 0 && bytes + size > MAX_PAGE_BYTES) return { sequences, bodies, full: true };
      sequences.push(chunk.sequences[index]!);
      bodies.push(body);
      bytes += size;
    }
    if (chunk.sequences.length < want) return { sequences, bodies, full: false };
    cursor = sequences.at(-1)!;
  }
  return { sequences, bodies, full: true };
}

/** How a poll waits, and how fresh its reads are. */
export interface PollOptions {
  /** How long to wait for an event when nothing is newer; 0 answers at once. */
  waitMs: number;
  signal?: AbortSignal | undefined;
  /** The page a read without waiting gave, when there was one: it is not read again. */
  first?: FeedPage | undefined;
  /**
   * The moment (on readClock) the caller's reads must not be older than: a request's arrival, so that its
   * client sees every append acknowledged before it asked. By default a read in flight is shared whenever it began.
   */
  since?: number | undefined;
}

/**
 * Reads a page (or takes `first`, one read already); when it is empty and nothing newer is stored, waits up to
 * `waitMs` for an append and reads again, in a read that began after the wake-up. With filters it keeps waiting
 * until a matching event arrives or the time is up.
 */
export async function pollPage(
  storage: Storage,
  bus: WakeupBus,
  name: string,
  query: ReadQuery,
  options: PollOptions,
): Promise<FeedPage> {
  const { waitMs, signal } = options;
  const deadline = Date.now() + waitMs;
  let since = options.since;
  let page = options.first ?? (await readPage(storage, name, query, since));
  let rounds = 1;
  while (page.sequences.length === 0) {
    if (page.next < page.head) {
      // Filters skipped a whole window; keep scanning, within bounds.
      if (rounds >= SCAN_ROUNDS) break;
      rounds += 1;
    } else if (await bus.waitBeyond(page.feed.id, page.head, deadline - Date.now(), signal)) {
      since = readClock();
    } else {
      break;
    }
    page = await readPage(storage, name, { ...query, after: page.next }, since);
  }
  return page;
}

export async function readEvent(
  storage: Storage,
  name: string,
  sequence: number,
): Promise<{ feed: FeedRow; body: string }> {
  const feed = await findFeed(storage.reader, name);
  if (!feed) throw feedNotFound(name);
  const body = sequence > feed.prunedThrough ? await readOne(storage.reader, feed.id, sequence) : undefined;
  if (body === undefined) {
    throw new HttpProblem(404, "eventNotFound", `Feed "${name}" holds no event at sequence ${sequence}.`);
  }
  return { feed, body };
}

/** The read side of one storage's log, as the HTTP layer uses it (see Feeds). */
export class FeedReader {
  constructor(
    private readonly storage: Storage,
    private readonly bus: WakeupBus,
  ) {}

  /** A page after the cursor, waiting up to `options.waitMs` for one when nothing is newer (see pollPage). */
  poll(name: string, query: ReadQuery, options: PollOptions): Promise<FeedPage> {
    return pollPage(this.storage, this.bus, name, query, options);
  }

  /** One event's stored JSON with its feed, or a 404 problem. */
  event(name: string, sequence: number): Promise<{ feed: FeedRow; body: string }> {
    return readEvent(this.storage, name, sequence);
  }
}
