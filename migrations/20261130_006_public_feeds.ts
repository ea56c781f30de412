import type { Knex } from "knex";

/** Public feeds (version 1.1): anyone may read a public feed's events, types and documents without a token. */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable("feeds", (table) => {
    table.boolean("public").notNullable().defaultTo(false);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable("feeds", (table) => {
    table.dropColumn("public");
  });
}
