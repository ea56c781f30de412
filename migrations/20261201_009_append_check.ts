import type { Knex } from "knex";

/**
 * PostgreSQL: the check with which an append's write statement (appendNumbered, src/db/append.ts) asks, under the
 * feed's lock, whether the feed holds any of the events it is about to store.
 *
 * It is a function for one reason: to be planned on every call, with the table as it is then. The write statement
 * is prepared, and PostgreSQL keeps a generic plan for it until the planner's statistics of its tables change. When
 * that plan was made while `events` was nearly empty (a new database, in its first minute before autovacuum's
 * ANALYZE), the probe through the `(feed_id, source, event_id)` index and a scan of the feed's events through the
 * primary key cost the same, and the planner sometimes kept the scan: every append then read all of its feed's
 * events, 100 ms at 20,000. A SQL function with a SET clause is never inlined into the statement; PostgreSQL 15
 * plans its query anew on each call, and should a later version cache the plans of SQL functions, force_custom_plan
 * keeps them custom.
 */
export async function up(knex: Knex): Promise<void> {
  if (knex.client.config.client !== "pg") return;
  await knex.raw(`
    create function seintje_feed_holds_any(feed integer, sources text[], event_ids text[]) returns boolean
      language sql stable
      set plan_cache_mode = force_custom_plan
      as $$
        select exists (
          select 1 from unnest(sources, event_ids) as wanted(source, event_id)
          cross join lateral (
            select 1 from events e
             where e.feed_id = feed and e.source = wanted.source and e.event_id = wanted.event_id
             limit 1
          ) stored
        )
      $$`);
}

export async function down(knex: Knex): Promise<void> {
  if (knex.client.config.client !== "pg") return;
  await knex.raw("drop function seintje_feed_holds_any(integer, text[], text[])");
}
