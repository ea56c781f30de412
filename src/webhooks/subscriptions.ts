import { readSnapshot, type Storage } from "../db/database.js";
import { findFeed } from "../db/feeds.js";
import {
  type AttemptRow,
  deleteSubscription,
  findSubscription,
  insertSubscription,
  lastAttempts,
  listAttempts,
  listSubscriptions,
  type SubscriptionRow,
  type SubscriptionUpdate,
  updateSubscription,
} from "../db/subscriptions.js";
import { HttpProblem } from "../errors.js";
import { feedNotFound } from "../log/feeds.js";
import { uuidv7 } from "./ids.js";
import { generateSecret, type SecretBox } from "./secrets.js";

/**
 * Subscriptions: create, change, rotate the secret, delete, and read them with their attempts. The HTTP layer
 * parses and authorizes; this reads and writes.
 */

/** How long the old secret keeps signing beside the new one after a rotation. */
export const ROTATION_OVERLAP_MS = 24 * 3600 * 1000;

/** The longest description of a subscription, in characters. */
export const MAX_SUBSCRIPTION_DESCRIPTION = 1000;
/** `limit` of the lists: their defaults and most. */
export const LIST_LIMITS = {
  subscriptions: { default: 100, max: 1000 },
  attempts: { default: 20, max: 100 },
} as const;

export interface NewSubscriptionInput {
  feed: string;
  url: string;
  types: string[];
  subject: string | null;
  description: string | null;
  /** The cursor to start from; the feed's head when undefined. */
  after: number | undefined;
}

export interface SubscriptionChanges {
  url?: string;
  types?: string[];
  subject?: string | null;
  description?: string | null;
  status?: "active" | "disabled";
}

export function subscriptionNotFound(id: string): HttpProblem {
  return new HttpProblem(404, "subscriptionNotFound", `There is no subscription "${id}".`);
}

/** Creates a subscription; returns it with its secret in clear, which is shown this once. */
export async function createSubscription(
  storage: Storage,
  box: SecretBox,
  owner: string | null,
  input: NewSubscriptionInput,
  now = Date.now(),
): Promise<{ subscription: SubscriptionRow; secret: string }> {
  const id = uuidv7(now);
  const secret = generateSecret();
  const subscription = await storage.writer.transaction(async (trx) => {
    const feed = await findFeed(trx, input.feed);
    if (!feed) throw feedNotFound(input.feed);
    if (input.after !== undefined && input.after > feed.head) {
      throw new HttpProblem(
        400,
        "cursorAhead",
        `"after" is ${input.after}, but the feed's newest sequence is ${feed.head}.`,
        { head: String(feed.head), errors: [{ pointer: "/after", detail: "is ahead of the feed's head" }] },
      );
    }
    await insertSubscription(trx, {
      id,
      feedId: feed.id,
      owner,
      url: input.url,
      types: input.types,
      subject: input.subject,
      description: input.description,
      acked: input.after ?? feed.head,
      secret: box.seal(secret, id),
      now,
    });
    return (await findSubscription(trx, id))!;
  });
  return { subscription, secret };
}

/**
 * Applies a PATCH. A new URL or re-enabling starts a clean slate (no failure streak, due now); new filters or a
 * re-enable drop the pending ping, so the next one is built afresh and covers everything since `acked`.
 */
export async function changeSubscription(
  storage: Storage,
  id: string,
  changes: SubscriptionChanges,
  now = Date.now(),
): Promise<SubscriptionRow> {
  return storage.writer.transaction(async (trx) => {
    const current = await findSubscription(trx, id);
    if (!current) throw subscriptionNotFound(id);
    const update: SubscriptionUpdate = {};
    const freshPing = { acked: current.acked };
    if (changes.description !== undefined) update.description = changes.description;
    if (changes.types !== undefined) Object.assign(update, { types: changes.types, freshPing });
    if (changes.subject !== undefined) Object.assign(update, { subject: changes.subject, freshPing });
    if (changes.url !== undefined && changes.url !== current.url) {
      Object.assign(update, { url: changes.url, cleanSlate: true });
      if (current.status === "failing") update.status = "active";
    }
    if (changes.status === "active" && current.status !== "active") {
      Object.assign(update, { status: "active", disabledReason: null, cleanSlate: true, freshPing });
    } else if (changes.status === "disabled" && current.status !== "disabled") {
      Object.assign(update, {
        status: "disabled",
        disabledReason: "disabled on request",
        cleanSlate: true,
        freshPing,
      });
    }
    if (Object.keys(update).length > 0) await updateSubscription(trx, id, update, now);
    return (await findSubscription(trx, id))!;
  });
}

/** Gives the subscription a new secret; the old one keeps signing beside it for 24 hours. */
export async function rotateSecret(
  storage: Storage,
  box: SecretBox,
  id: string,
  now = Date.now(),
): Promise<string> {
  const secret = generateSecret();
  await storage.writer.transaction(async (trx) => {
    const current = await findSubscription(trx, id);
    if (!current) throw subscriptionNotFound(id);
    const sealed = box.seal(secret, id);
    const rotation = { sealed, previous: current.secret, previousUntil: now + ROTATION_OVERLAP_MS };
    await updateSubscription(trx, id, { secret: rotation }, now);
  });
  return secret;
}

/** A subscription with the last attempt recorded for it, as answers show them. */
export interface SubscriptionWithAttempt {
  row: SubscriptionRow;
  lastAttempt: AttemptRow | undefined;
}

/** Who may see a subscription: the HTTP layer decides from the token, this layer reads. */
export type Visibility = (row: SubscriptionRow) => boolean;

/** The subscription, if it exists and `visible` lets the caller see it. */
export async function findVisible(
  storage: Storage,
  id: string,
  visible: Visibility,
): Promise<SubscriptionRow | undefined> {
  const row = await findSubscription(storage.reader, id);
  return row && visible(row) ? row : undefined;
}

/**
 * The subscription with its last attempt, read in one snapshot: a delivery records its attempt and the
 * subscription's new state in one transaction, and read apart they showed the new attempt with the old status.
 */
export function readSubscription(
  storage: Storage,
  id: string,
  visible: Visibility,
): Promise<SubscriptionWithAttempt | undefined> {
  return readSnapshot(storage, async (trx) => {
    const row = await findSubscription(trx, id);
    if (!row || !visible(row)) return undefined;
    return { row, lastAttempt: (await lastAttempts(trx, [row.id])).get(row.id) };
  });
}

/** The last attempt of a subscription just written, to show with it. */
export async function lastAttemptOf(storage: Storage, id: string): Promise<AttemptRow | undefined> {
  return (await lastAttempts(storage.reader, [id])).get(id);
}

/**
 * A page of subscriptions (of `owner`, or all), in one snapshot with their last attempts. `read` is how many rows
 * the page took, visible or not, so that the caller knows whether there is a next page.
 */
export function readSubscriptions(
  storage: Storage,
  options: { owner: string | null | undefined; after: string | undefined; limit: number },
  visible: Visibility,
): Promise<{ read: number; last: string | undefined; shown: SubscriptionWithAttempt[] }> {
  return readSnapshot(storage, async (trx) => {
    const rows = await listSubscriptions(trx, options);
    const shown = rows.filter(visible);
    const last = await lastAttempts(
      trx,
      shown.map((row) => row.id),
    );
    return {
      read: rows.length,
      last: rows.at(-1)?.id,
      shown: shown.map((row) => ({ row, lastAttempt: last.get(row.id) })),
    };
  });
}

/** A subscription's attempts, newest first, before an attempt id. */
export function readAttempts(
  storage: Storage,
  id: string,
  options: { before: number | undefined; limit: number },
): Promise<AttemptRow[]> {
  return listAttempts(storage.reader, id, options);
}

/** Deletes a subscription; false when there was none. */
export function removeSubscription(storage: Storage, id: string): Promise<boolean> {
  return deleteSubscription(storage.writer, id);
}

/** The subscriptions of one storage, as the HTTP layer uses them (it holds this, never the storage). */
export class Subscriptions {
  constructor(
    private readonly storage: Storage,
    private readonly box: SecretBox,
  ) {}

  create(
    owner: string | null,
    input: NewSubscriptionInput,
  ): Promise<{ subscription: SubscriptionRow; secret: string }> {
    return createSubscription(this.storage, this.box, owner, input);
  }

  change(id: string, changes: SubscriptionChanges): Promise<SubscriptionRow> {
    return changeSubscription(this.storage, id, changes);
  }

  rotateSecret(id: string): Promise<string> {
    return rotateSecret(this.storage, this.box, id);
  }

  findVisible(id: string, visible: Visibility): Promise<SubscriptionRow | undefined> {
    return findVisible(this.storage, id, visible);
  }

  read(id: string, visible: Visibility): Promise<SubscriptionWithAttempt | undefined> {
    return readSubscription(this.storage, id, visible);
  }

  lastAttemptOf(id: string): Promise<AttemptRow | undefined> {
    return lastAttemptOf(this.storage, id);
  }

  list(
    options: { owner: string | null | undefined; after: string | undefined; limit: number },
    visible: Visibility,
  ): ReturnType<typeof readSubscriptions> {
    return readSubscriptions(this.storage, options, visible);
  }

  attempts(id: string, options: { before: number | undefined; limit: number }): Promise<AttemptRow[]> {
    return readAttempts(this.storage, id, options);
  }

  remove(id: string): Promise<boolean> {
    return removeSubscription(this.storage, id);
  }
}
