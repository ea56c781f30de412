import type { Knex } from "knex";

/**
 * Feeds and their events. Portable types only, so PostgreSQL runs the same migration:
 * sequences and times are bigint (epoch milliseconds for times), text is text.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable("feeds", (table) => {
    // A surrogate key: a feed deleted and created again under the same name is a new feed that starts at 1.
    table.increments("id").primary();
    table.string("name", 63).notNullable().unique();
    table.text("description").nullable();
    table.string("retention_max_age", 64).nullable();
    table.bigInteger("retention_max_events").nullable();
    // The newest sequence. Updated in the same transaction as the inserts, so head committed means every
    // event up to head committed: readers bound their reads by it.
    table.bigInteger("head").notNullable().defaultTo(0);
    // Everything up to here was removed by retention; the oldest kept event is pruned_through + 1.
    table.bigInteger("pruned_through").notNullable().defaultTo(0);
    table.bigInteger("created_at").notNullable();
    table.bigInteger("updated_at").notNullable();
  });

  await knex.schema.createTable("events", (table) => {
    table.integer("feed_id").notNullable().references("id").inTable("feeds").onDelete("CASCADE");
    table.bigInteger("sequence").notNullable();
    table.text("source").notNullable();
    table.text("event_id").notNullable();
    table.text("type").notNullable();
    table.text("subject").nullable();
    // sha256 of the event as published (canonical JSON), to tell an identical repeat from a conflict.
    table.string("digest", 64).notNullable();
    // The event as served: structured JSON with sequence and sequencetype, written once, never re-serialized.
    table.text("body").notNullable();
    table.bigInteger("appended_at").notNullable();
    // Reads are index seeks on (feed_id, sequence): the same cost at sequence 10,000,000 as at 1.
    table.primary(["feed_id", "sequence"]);
    table.unique(["feed_id", "source", "event_id"]);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable("events");
  await knex.schema.dropTable("feeds");
}
