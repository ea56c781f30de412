import type { Storage } from "../db/database.js";
import type { FeedRow, FeedSettings } from "../db/feeds.js";
import * as feeds from "../db/feeds.js";
import { announceRemoval } from "../db/notify.js";
import { HttpProblem } from "../errors.js";
import type { WakeupBus } from "./wakeup.js";

/** Feeds: create or replace settings, look up, list, delete. */

export const FEED_NAME_PATTERN = "^[a-z0-9][a-z0-9._-]{0,62}$";
export const FEED_NAME = new RegExp(FEED_NAME_PATTERN);
/** The longest description of a feed, in characters. */
export const MAX_FEED_DESCRIPTION = 1000;

export function feedNotFound(name: string): HttpProblem {
  return new HttpProblem(404, "feedNotFound", `There is no feed named "${name}".`);
}

export function checkFeedName(name: string): void {
  if (!FEED_NAME.test(name)) {
    throw new HttpProblem(
      400,
      "invalidFeedName",
      "A feed name is 1 to 63 characters: lower-case letters, digits, '.', '_' and '-', starting with a letter or digit.",
    );
  }
}

const PUT_TURNS = 5;

export async function putFeed(
  storage: Storage,
  name: string,
  settings: FeedSettings,
  now = Date.now(),
): Promise<{ feed: FeedRow; created: boolean }> {
  return storage.writer.transaction(async (trx) => {
    // A feed created by another request (on any node) after the look found none is changed instead; one deleted
    // again before this request could lock it is created after all. Each further turn takes another request's
    // create and delete in between.
    for (let turn = 0; turn < PUT_TURNS; turn++) {
      const existing = await feeds.lockFeed(trx, name);
      if (existing) {
        await feeds.updateFeedSettings(trx, existing.id, settings, now);
        return { feed: { ...existing, ...settings }, created: false };
      }
      const feed = await feeds.insertFeed(trx, name, settings, now);
      if (feed) return { feed, created: true };
    }
    throw new HttpProblem(
      409,
      "conflict",
      `Other requests created and deleted the feed "${name}" while this one ran; try again.`,
    );
  });
}

export async function getFeed(storage: Storage, name: string): Promise<FeedRow> {
  const feed = await feeds.findFeed(storage.reader, name);
  if (!feed) throw feedNotFound(name);
  return feed;
}

export async function feedExists(storage: Storage, name: string): Promise<boolean> {
  return (await feeds.findFeed(storage.reader, name)) !== undefined;
}

export function listFeeds(storage: Storage): Promise<FeedRow[]> {
  return feeds.listFeeds(storage.reader);
}

export async function deleteFeed(storage: Storage, bus: WakeupBus, name: string): Promise<void> {
  const id = await storage.writer.transaction(async (trx) => {
    const removed = await feeds.deleteFeed(trx, name);
    if (removed !== undefined) await announceRemoval(trx, storage.node, removed);
    return removed;
  });
  if (id === undefined) throw feedNotFound(name);
  bus.removed(id);
}

/**
 * The feeds of one storage, as the HTTP layer uses them: it holds this, never the storage itself, so every read
 * and write it makes goes through the domain.
 */
export class Feeds {
  constructor(
    private readonly storage: Storage,
    private readonly bus: WakeupBus,
  ) {}

  put(name: string, settings: FeedSettings): Promise<{ feed: FeedRow; created: boolean }> {
    return putFeed(this.storage, name, settings);
  }

  /** The feed, or a 404 problem. */
  get(name: string): Promise<FeedRow> {
    return getFeed(this.storage, name);
  }

  exists(name: string): Promise<boolean> {
    return feedExists(this.storage, name);
  }

  /** Whether the feed exists and is public. */
  async isPublic(name: string): Promise<boolean> {
    return (await feeds.findFeed(this.storage.reader, name))?.public ?? false;
  }

  list(): Promise<FeedRow[]> {
    return listFeeds(this.storage);
  }

  delete(name: string): Promise<void> {
    return deleteFeed(this.storage, this.bus, name);
  }
}
