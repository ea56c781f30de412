import type { Knex } from "knex";

/**
 * Indexes for the dispatcher's look for due subscriptions (`findDue`), so that its cost follows how many are due,
 * not how many there are. Before, every look scanned all subscriptions: 5 ms at 9,000, once or twice per claim.
 * - `(feed_id, scanned)`: subscriptions whose feed's head passed what the dispatcher scanned, found from each
 *   feed by a range. It replaces the index on `feed_id` alone, which it also serves.
 * - `ping_id` where there is one: the subscriptions with a ping pending (a retry waiting, a ping handed back).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable("subscriptions", (table) => {
    table.index(["feed_id", "scanned"]);
    table.index(["ping_id"], "subscriptions_pending_ping_index", { predicate: knex.whereNotNull("ping_id") });
    table.dropIndex(["feed_id"]);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable("subscriptions", (table) => {
    table.index(["feed_id"]);
    table.dropIndex(["ping_id"], "subscriptions_pending_ping_index");
    table.dropIndex(["feed_id", "scanned"]);
  });
}
