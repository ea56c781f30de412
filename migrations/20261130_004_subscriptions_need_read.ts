import type { Knex } from "knex";

/**
 * Creating a subscription, changing its filters and re-enabling it now need `read` on the feed as well as
 * `subscribe`: a ping names event ids, types and subjects, which only a reader of the feed may learn. Until now a
 * token with `subscribe` alone could create one, and the service keeps no tokens, so it cannot tell which existing
 * subscriptions were made by a reader. Every one that is not disabled is disabled, with a reason that says how to
 * resume it: `PATCH {"status": "active"}` with a token that may read the feed. Nothing is lost meanwhile: `acked`
 * stays, and the first ping after re-enabling covers every event since.
 */

export const DISABLED_REASON =
  "subscribing now needs read on the feed: re-enable with a token that may read it (PATCH status active)";

export async function up(knex: Knex): Promise<void> {
  await knex("subscriptions")
    .whereNot("status", "disabled")
    .update({
      status: "disabled",
      disabled_reason: DISABLED_REASON,
      failures: 0,
      failing_since: null,
      next_attempt_at: null,
      ping_id: null,
      ping_head: null,
      ping_body: null,
      scanned: knex.ref("acked"),
      updated_at: Date.now(),
    });
}

/** Nothing to undo: which subscriptions were disabled here is not recorded, and re-enabling is the owner's. */
export async function down(): Promise<void> {}
