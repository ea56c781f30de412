import type { Knex } from "knex";

/**
 * Webhook subscriptions and their delivery attempts. All delivery state lives here (the pending ping, its due
 * time, the lease of the node sending it, the failure streak), so a restart or a crash loses no ping.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable("subscriptions", (table) => {
    table.string("id", 36).primary();
    table.integer("feed_id").notNullable().references("id").inTable("feeds").onDelete("CASCADE");
    // The token `sub` that created it: lists show a caller its own subscriptions.
    table.text("owner").nullable();
    table.text("url").notNullable();
    // JSON array of type prefixes; empty means every type.
    table.text("types").notNullable();
    table.text("subject").nullable();
    table.text("description").nullable();
    table.string("status", 16).notNullable();
    table.text("disabled_reason").nullable();
    // The newest sequence the subscriber was successfully told about.
    table.bigInteger("acked").notNullable();
    // The feed's head when the dispatcher last looked for matching events: nothing to do until the head passes it.
    table.bigInteger("scanned").notNullable();
    // Sealed secrets (see src/webhooks/secrets.ts); the previous one signs beside the new one until it expires.
    table.text("secret").notNullable();
    table.text("previous_secret").nullable();
    table.bigInteger("previous_secret_until").nullable();
    // The pending ping: its id and exact body never change; a retry resends them.
    table.string("ping_id", 36).nullable();
    table.bigInteger("ping_head").nullable();
    table.text("ping_body").nullable();
    // The failure streak and when to try next.
    table.integer("failures").notNullable().defaultTo(0);
    table.bigInteger("failing_since").nullable();
    table.bigInteger("next_attempt_at").nullable();
    // The node sending the ping now, and until when that claim holds (it lapses if the node dies).
    table.string("lease_owner", 64).nullable();
    table.bigInteger("lease_until").nullable();
    table.bigInteger("created_at").notNullable();
    table.bigInteger("updated_at").notNullable();
    table.index(["feed_id"]);
    table.index(["owner"]);
    // The dispatcher's timer looks for the earliest retry.
    table.index(["next_attempt_at"]);
  });

  await knex.schema.createTable("ping_attempts", (table) => {
    table.bigIncrements("id").primary();
    table
      .string("subscription_id", 36)
      .notNullable()
      .references("id")
      .inTable("subscriptions")
      .onDelete("CASCADE");
    table.string("ping_id", 36).notNullable();
    table.bigInteger("at").notNullable();
    table.bigInteger("head").notNullable();
    table.integer("status_code").nullable();
    table.integer("duration_ms").notNullable();
    table.text("error").nullable();
    table.boolean("test").notNullable().defaultTo(false);
    table.index(["subscription_id", "id"]);
    table.index(["at"]);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable("ping_attempts");
  await knex.schema.dropTable("subscriptions");
}
