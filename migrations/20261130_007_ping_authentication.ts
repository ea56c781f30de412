import type { Knex } from "knex";

/**
 * Ping authentication (version 1.1):
 * - `signature`: `v1` (Standard Webhooks HMAC, the `secret` column holds the sealed `whsec_` secret) or `v1a`
 *   (Ed25519: `secret` holds the sealed private key, `whsk_` + base64 of its PKCS #8 form, and `public_key` the
 *   `whpk_` public key, which is shown). `previous_secret` signs beside `secret` during a rotation, either way.
 * - `authorization_type` (`jwt` or `static`, null for none) and, for `static`, the header value, sealed like the
 *   secrets.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable("subscriptions", (table) => {
    table.string("signature", 8).notNullable().defaultTo("v1");
    table.text("public_key").nullable();
    table.string("authorization_type", 16).nullable();
    table.text("authorization_value").nullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable("subscriptions", (table) => {
    table.dropColumn("authorization_value");
    table.dropColumn("authorization_type");
    table.dropColumn("public_key");
    table.dropColumn("signature");
  });
}
