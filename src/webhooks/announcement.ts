import { randomUUID } from "node:crypto";
import type { Queryable } from "../db/database.js";
import { type Filters, type Identity, matchingIdentities, newestMatching } from "../db/events.js";
import type { SubscriptionRow } from "../db/subscriptions.js";
import { PING_EVENTS, pingBody } from "./ping.js";

/**
 * What a ping announces: the newest matching sequence beyond what the subscriber knows, and the body that says so.
 * One Announcement serves one claim (or one test ping) and remembers its event lookups: subscriptions of one feed
 * mostly stand at the same cursor with the same filters, so a claim of a thousand subscriptions costs two
 * queries, not two thousand.
 */

/** A ping ready to send to a subscription. */
export interface PreparedPing {
  subscription: SubscriptionRow;
  pingId: string;
  head: number;
  body: string;
}

export interface AnnouncementOptions {
  /** CloudEvents `source` of pings. */
  source: string;
  publicUrl(): string;
}

function filtersOf(subscription: Pick<SubscriptionRow, "types" | "subject">): Filters {
  return { types: subscription.types, subject: subscription.subject ?? undefined };
}

export class Announcement {
  private readonly memo = new Map<string, Promise<unknown>>();

  constructor(
    private readonly db: Queryable,
    private readonly options: AnnouncementOptions,
  ) {}

  /**
   * The ping a due subscription gets: the pending one unchanged, or a new one when matching events arrived beyond
   * it (or there is none yet). Undefined when no matching event lies beyond `acked`.
   */
  async prepare(subscription: SubscriptionRow, now: number): Promise<PreparedPing | undefined> {
    const announced = subscription.pingHead ?? subscription.acked;
    const newest = await this.newest(subscription, announced, subscription.feedHead);
    if (newest === undefined) {
      if (subscription.pingId === null || subscription.pingBody === null) return undefined;
      return {
        subscription,
        pingId: subscription.pingId,
        head: subscription.pingHead ?? subscription.acked,
        body: subscription.pingBody,
      };
    }
    const pingId = randomUUID();
    const body = await this.body(subscription, pingId, newest, new Date(now), false);
    return { subscription, pingId, head: newest, body };
  }

  /** A test ping: what a ping would announce now, marked `test: true`. */
  async test(subscription: SubscriptionRow, now: number): Promise<PreparedPing> {
    const newest = await this.newest(subscription, subscription.acked, subscription.feedHead);
    const head = newest ?? subscription.acked;
    const pingId = randomUUID();
    return {
      subscription,
      pingId,
      head,
      body: await this.body(subscription, pingId, head, new Date(now), true),
    };
  }

  private async body(
    subscription: SubscriptionRow,
    pingId: string,
    head: number,
    time: Date,
    test: boolean,
  ): Promise<string> {
    const events = await this.identities(subscription, subscription.acked, head);
    return pingBody(pingId, this.options.source, time, this.options.publicUrl(), {
      feed: subscription.feedName,
      subscription: subscription.id,
      after: subscription.acked,
      head,
      types: subscription.types,
      subject: subscription.subject,
      events: events.slice(0, PING_EVENTS),
      truncated: events.length > PING_EVENTS,
      ...(subscription.acked < subscription.feedPrunedThrough
        ? { oldest: subscription.feedPrunedThrough + 1 }
        : {}),
      ...(test ? { test: true } : {}),
    });
  }

  /** The newest matching sequence in (after, upTo]. */
  private newest(subscription: SubscriptionRow, after: number, upTo: number): Promise<number | undefined> {
    const filters = filtersOf(subscription);
    return this.cached(["newest", subscription.feedId, after, upTo, filters], () =>
      newestMatching(this.db, subscription.feedId, after, upTo, filters),
    );
  }

  /** The first PING_EVENTS + 1 matching identities in (after, upTo]. */
  private identities(subscription: SubscriptionRow, after: number, upTo: number): Promise<Identity[]> {
    const filters = filtersOf(subscription);
    return this.cached(["identities", subscription.feedId, after, upTo, filters], () =>
      matchingIdentities(this.db, subscription.feedId, after, upTo, PING_EVENTS + 1, filters),
    );
  }

  private cached<T>(key: unknown[], read: () => Promise<T>): Promise<T> {
    const text = JSON.stringify(key);
    let found = this.memo.get(text) as Promise<T> | undefined;
    if (!found) {
      found = read();
      this.memo.set(text, found);
    }
    return found;
  }
}
