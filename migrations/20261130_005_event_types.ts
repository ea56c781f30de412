import type { Knex } from "knex";

/**
 * Event types (version 1.1): a catalogue per feed, and per type how many events the feed holds and when the newest
 * was appended.
 * - `event_types`: the declared types, each with an optional JSON Schema for `data` and an example, both kept as
 *   the JSON text the admin sent.
 * - `event_type_stats`: one row per type the feed holds events of, kept by the append (in its transaction) and by
 *   retention (which counts the rows it deletes), so listing types costs a row per type, not a scan of the log.
 *   Filled here from the events already stored.
 * - `feeds.type_policy`: `open` (any type is taken) or `declared` (only declared types).
 * - `feeds.types_version`: raised by every change to a feed's declared types, in the same transaction. An
 *   appender reads it with the feed's lock and recompiles its cached schemas when it moved, so a change made on
 *   any node applies to the next publish.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable("feeds", (table) => {
    table.string("type_policy", 16).notNullable().defaultTo("open");
    table.bigInteger("types_version").notNullable().defaultTo(0);
  });

  await knex.schema.createTable("event_types", (table) => {
    table.integer("feed_id").notNullable().references("id").inTable("feeds").onDelete("CASCADE");
    table.text("type").notNullable();
    table.text("description").nullable();
    table.text("schema").nullable();
    table.text("example").nullable();
    table.boolean("deprecated").notNullable().defaultTo(false);
    table.bigInteger("created_at").notNullable();
    table.bigInteger("updated_at").notNullable();
    table.primary(["feed_id", "type"]);
  });

  await knex.schema.createTable("event_type_stats", (table) => {
    table.integer("feed_id").notNullable().references("id").inTable("feeds").onDelete("CASCADE");
    table.text("type").notNullable();
    table.bigInteger("count").notNullable();
    table.bigInteger("last_published").notNullable();
    table.primary(["feed_id", "type"]);
  });

  await knex.raw(
    `insert into event_type_stats (feed_id, type, count, last_published)
     select feed_id, type, count(*), max(appended_at) from events group by feed_id, type`,
  );
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable("event_type_stats");
  await knex.schema.dropTable("event_types");
  await knex.schema.alterTable("feeds", (table) => {
    table.dropColumn("types_version");
    table.dropColumn("type_policy");
  });
}
