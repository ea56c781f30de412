import type { Knex } from "knex";

/**
 * Facts about the installation that every node must agree on, such as which key seals the webhook secrets (its
 * check value, never the key).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable("settings", (table) => {
    table.string("name", 64).primary();
    table.text("value").notNullable();
    table.bigInteger("created_at").notNullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable("settings");
}
