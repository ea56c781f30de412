import { onPostgres, type Queryable } from "./database.js";
import { type EventRow, findByIdentity, insertEvents, type StoredIdentity } from "./events.js";
import { FEED_COLUMNS, type FeedRow, lockFeed, type StoredFeed, setHead, toFeed } from "./feeds.js";
import { CHANNEL } from "./notify.js";

/**
 * The statements of a group commit. On PostgreSQL, where several nodes append to one feed and take turns on its
 * row's lock, a feed's part of a group is at most two round trips: a read without the lock (which a node skips
 * for a feed it read before), and one statement that takes the lock, checks what the read decided, writes and
 * commits, so the lock is held for that statement and its commit alone. (It was eight round trips in one
 * transaction, holding the lock for six of them.) SQLite runs in this process with one writer: its group is one
 * transaction of plain statements.
 */

/** What appendNumbered stores of an event (a PreparedEvent has it). */
export interface NumberedEvent {
  source: string;
  id: string;
  type: string;
  subject: string | null;
  digest: string;
  /** Structured JSON as published, without sequence. */
  json: string;
}

/**
 * The write, which holds the feed's lock, is prepared once per connection (a named statement, which knex passes to
 * pg): planning it anew took PostgreSQL 0.6 to 1 ms, more than running it. Its text never changes, and a generic
 * plan serves for every feed and size, because the one part whose best plan depends on how many events the table
 * holds, the look for events the feed already has, is a function planned on each call (seintje_feed_holds_any,
 * migration 009). Inside the statement, a generic plan made while the table was nearly empty sometimes scanned
 * the feed's events by the primary key, and kept doing so as the feed grew. (The read is not prepared: its generic
 * plan, which cannot see how many pairs it gets, scanned the feed's events.)
 */
const PREPARED_WRITE = { name: "seintje_append_write" };

export interface Found {
  row: FeedRow;
  /** The feed's stored events with the (source, id) pairs asked about. */
  known: StoredIdentity[];
}

interface FoundRow extends StoredFeed {
  known_source: string | null;
  known_event_id: string | null;
  known_sequence: number | string | null;
  known_digest: string | null;
}

/**
 * The feed's row and the events it holds with these (source, id) pairs; undefined when there is no such feed.
 * On PostgreSQL the pairs go in as two arrays joined with `unnest`: given `(source, event_id) IN (...)` where every
 * pair has the same source (the usual batch), its planner seeks on (feed_id, source) and filters every event of
 * that source, a cost that grows with the feed.
 * On SQLite the row is locked for the caller's transaction (its one writer is the lock); on PostgreSQL nothing is
 * locked, and it is one statement: appendNumbered takes the lock and copes with what changed since.
 */
export async function findForAppend(
  db: Queryable,
  name: string,
  pairs: Array<[source: string, eventId: string]>,
): Promise<Found | undefined> {
  if (!onPostgres(db)) {
    const row = await lockFeed(db, name);
    return row ? { row, known: await findByIdentity(db, row.id, pairs) } : undefined;
  }
  const result: { rows: FoundRow[] } = await db.raw(
    `with feed as (select ${FEED_COLUMNS.join(", ")} from feeds where name = ?)
     select feed.*, known.source as known_source, known.event_id as known_event_id,
            known.sequence as known_sequence, known.digest as known_digest
       from feed left join lateral (
         select e.source, e.event_id, e.sequence, e.digest
           from unnest(?::text[], ?::text[]) as wanted(source, event_id)
           join events e on e.feed_id = feed.id and e.source = wanted.source and e.event_id = wanted.event_id
       ) known on true`,
    [name, pairs.map((pair) => pair[0]), pairs.map((pair) => pair[1])],
  );
  const [first] = result.rows;
  if (!first) return undefined;
  const known: StoredIdentity[] = [];
  for (const row of result.rows) {
    if (row.known_source === null) continue;
    known.push({
      source: row.known_source,
      eventId: row.known_event_id!,
      sequence: Number(row.known_sequence),
      digest: row.known_digest!,
    });
  }
  return { row: toFeed(first), known };
}

/**
 * SQLite: writes a group's events (numbered, their bodies made), counts them per type and moves each feed's head,
 * in the caller's transaction.
 */
export async function writeAppend(
  trx: Queryable,
  rows: EventRow[],
  heads: Map<number, number>,
): Promise<void> {
  if (rows.length === 0) return;
  await insertEvents(trx, rows);
  for (const [feedId, head] of heads) await setHead(trx, feedId, head);
}

export interface Numbered {
  feedId: number;
  /** The feed's types_version the events were checked against. */
  typesVersion: number;
  /** In the order they are numbered. */
  events: NumberedEvent[];
  now: number;
}

/**
 * PostgreSQL: one statement, committed on its own. It locks the feed's row, numbers the events from the head it
 * finds there, stores them with `sequence` and `sequencetype` added to their JSON (as storedBody does), counts
 * them per type, moves the head and tells the other nodes, all on commit. Data-modifying WITH clauses run once
 * and to completion whether or not the query reads them.
 *
 * Answers the head it numbered after; "gone" when the feed was deleted since it was read; "types-changed" when
 * its types or type policy changed since they were checked; "known" when the feed holds an event with one of these
 * (source, id) pairs. Nothing is written in those three cases.
 *
 * The "known" look (seintje_feed_holds_any, a STABLE function, so it reads the statement's snapshot) sees what was
 * committed before the statement began: an event with the same (source, id) that another node committed while this
 * statement waited for the lock is refused by the unique index on (feed_id, source, event_id) instead; the
 * statement fails and nothing is written. Since what it sees is fixed when the statement begins, it runs before
 * the lock is taken (the feed's scan waits for its answer), not while the lock is held: a sixth of the statement's
 * time for 20 events, which appends to the feed from every node would otherwise wait through.
 */
export async function appendNumbered(
  db: Queryable,
  node: string,
  append: Numbered,
): Promise<{ head: number } | "gone" | "types-changed" | "known"> {
  const column = <K extends keyof NumberedEvent>(key: K) => append.events.map((event) => event[key]);
  const result: { rows: Array<{ head: number | string; types_version: number | string; known: boolean }> } =
    await db
      .raw(
        `with known as (
       select seintje_feed_holds_any(?, ?::text[], ?::text[]) as found
     ), feed as (
       select id, head, types_version from feeds where id = ? and (select found from known) is not null for update
     ), r as (
       select * from unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[])
         with ordinality as r(source, event_id, type, subject, digest, json, n)
     ), fresh as (
       select feed.id as feed_id, feed.head + r.n as sequence, r.source, r.event_id, r.type, r.subject, r.digest,
              left(r.json, -1) || ',"sequence":"' || (feed.head + r.n) || '","sequencetype":"Integer"}' as body
         from feed, known, r
        where feed.types_version = ? and not known.found
     ), appended as (
       insert into events (feed_id, sequence, source, event_id, type, subject, digest, body, appended_at)
       select feed_id, sequence, source, event_id, type, subject, digest, body, ? from fresh
     ), counted as (
       insert into event_type_stats (feed_id, type, count, last_published)
       select feed_id, type, count(*), ? from fresh group by feed_id, type
       on conflict (feed_id, type)
       do update set count = event_type_stats.count + excluded.count, last_published = excluded.last_published
     ), moved as (
       update feeds set head = feeds.head + ?
         from known
        where feeds.id = ? and feeds.types_version = ? and not known.found
     )
     select feed.head, feed.types_version, known.found as known,
            case when feed.types_version = ? and not known.found then pg_notify(?, json_build_object(
              'node', ?::text, 'appended', json_build_array(json_build_array(feed.id, feed.head + ?)))::text)
            end as notified
       from feed, known`,
        [
          append.feedId,
          column("source"),
          column("id"),
          append.feedId,
          column("source"),
          column("id"),
          column("type"),
          // A null in a text[] is an SQL NULL: an event without a subject.
          column("subject") as string[],
          column("digest"),
          column("json"),
          append.typesVersion,
          append.now,
          append.now,
          append.events.length,
          append.feedId,
          append.typesVersion,
          append.typesVersion,
          CHANNEL,
          node,
          append.events.length,
        ],
      )
      .options(PREPARED_WRITE);
  const [row] = result.rows;
  if (!row) return "gone";
  if (Number(row.types_version) !== append.typesVersion) return "types-changed";
  if (row.known) return "known";
  return { head: Number(row.head) };
}
