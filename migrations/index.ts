import type { Knex } from "knex";
import * as feedsAndEvents from "./20261123_001_feeds_and_events.js";
import * as subscriptions from "./20261123_002_subscriptions.js";
import * as settings from "./20261123_003_settings.js";
import * as subscriptionsNeedRead from "./20261130_004_subscriptions_need_read.js";
import * as eventTypes from "./20261130_005_event_types.js";
import * as publicFeeds from "./20261130_006_public_feeds.js";
import * as pingAuthentication from "./20261130_007_ping_authentication.js";
import * as dueSubscriptions from "./20261130_008_due_subscriptions.js";
import * as appendCheck from "./20261201_009_append_check.js";

export interface Migration {
  up(knex: Knex): Promise<void>;
  down(knex: Knex): Promise<void>;
}

/**
 * Every migration, in order. Named without a file extension so that running from TypeScript sources (tests)
 * and from the build (`npm start`) share one migration history. Append; never rename or edit a released one.
 */
export const MIGRATIONS: ReadonlyArray<readonly [name: string, migration: Migration]> = [
  ["20261123_001_feeds_and_events", feedsAndEvents],
  ["20261123_002_subscriptions", subscriptions],
  ["20261123_003_settings", settings],
  ["20261130_004_subscriptions_need_read", subscriptionsNeedRead],
  ["20261130_005_event_types", eventTypes],
  ["20261130_006_public_feeds", publicFeeds],
  ["20261130_007_ping_authentication", pingAuthentication],
  ["20261130_008_due_subscriptions", dueSubscriptions],
  ["20261201_009_append_check", appendCheck],
];
