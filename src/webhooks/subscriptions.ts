import { readSnapshot, type Storage } from "../db/database.js";
import { shareFeed } from "../db/feeds.js";
import {
  type AttemptRow,
  deleteSubscription,
  findSubscription,
  insertSubscription,
  lastAttempts,
  listAttempts,
  listSubscriptions,
  lockSubscription,
  type PingAuthorization,
  type SignatureScheme,
  type SubscriptionRow,
  type SubscriptionUpdate,
  updateSubscription,
} from "../db/subscriptions.js";
import { HttpProblem } from "../errors.js";
import { feedNotFound } from "../log/feeds.js";
import { uuidv7 } from "./ids.js";
import { generateSecret, generateSigningKeyPair, type SecretBox } from "./secrets.js";

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
  signature: SignatureScheme;
  authorization: AuthorizationInput;
}

/** What a ping's Authorization header carries, as asked for: a JWT, a static value, or nothing. */
export type AuthorizationInput = { type: "jwt" } | { type: "static"; value: string } | null;

/** What a subscription gets shown once: its `whsec_` secret (v1). A v1a subscription's public key is always shown. */
export interface Credentials {
  secret?: string;
}

export interface SubscriptionChanges {
  url?: string;
  types?: string[];
  subject?: string | null;
  description?: string | null;
  status?: "active" | "disabled";
  signature?: SignatureScheme;
  authorization?: AuthorizationInput;
}

/** The additional authenticated data a static Authorization value is sealed with: it opens for this alone. */
const authorizationAad = (id: string) => `${id}:authorization`;

function sealAuthorization(box: SecretBox, id: string, input: AuthorizationInput): PingAuthorization {
  if (input === null || input.type === "jwt") return input;
  return { type: "static", sealed: box.seal(input.value, authorizationAad(id)) };
}

/** New signing material for a scheme: a v1 secret (shown once) or a v1a key pair (its public key shown). */
function newKeys(box: SecretBox, id: string, scheme: SignatureScheme) {
  if (scheme === "v1") {
    const secret = generateSecret();
    return { sealed: box.seal(secret, id), publicKey: null, shown: { secret } };
  }
  const pair = generateSigningKeyPair();
  return { sealed: box.seal(pair.privateKey, id), publicKey: pair.publicKey, shown: {} };
}

export function subscriptionNotFound(id: string): HttpProblem {
  return new HttpProblem(404, "subscriptionNotFound", `There is no subscription "${id}".`);
}

/** Creates a subscription; returns it with its v1 secret in clear, which is shown this once. */
export async function createSubscription(
  storage: Storage,
  box: SecretBox,
  owner: string | null,
  input: NewSubscriptionInput,
  now = Date.now(),
): Promise<{ subscription: SubscriptionRow } & Credentials> {
  const id = uuidv7(now);
  const keys = newKeys(box, id, input.signature);
  const subscription = await storage.writer.transaction(async (trx) => {
    const feed = await shareFeed(trx, input.feed);
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
      secret: keys.sealed,
      signature: input.signature,
      publicKey: keys.publicKey,
      authorization: sealAuthorization(box, id, input.authorization),
      now,
    });
    return (await findSubscription(trx, id))!;
  });
  return { subscription, ...keys.shown };
}

/**
 * Applies a PATCH. A new URL or re-enabling starts a clean slate (no failure streak, due now); new filters or a
 * re-enable drop the pending ping, so the next one is built afresh and covers everything since `acked`. A new
 * signature scheme brings new keys at once (a new v1 secret is returned, to be shown once); the old ones stop
 * signing.
 */
export async function changeSubscription(
  storage: Storage,
  box: SecretBox,
  id: string,
  changes: SubscriptionChanges,
  now = Date.now(),
): Promise<{ subscription: SubscriptionRow } & Credentials> {
  let shown: Credentials = {};
  return storage.writer.transaction(async (trx) => {
    // Locked, so that a delete or another change on the way waits for this one, or this one for it.
    const current = await lockSubscription(trx, id);
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
    if (changes.signature !== undefined && changes.signature !== current.signature) {
      const keys = newKeys(box, id, changes.signature);
      update.secret = { sealed: keys.sealed, previous: null, previousUntil: null };
      update.signature = { scheme: changes.signature, publicKey: keys.publicKey };
      shown = keys.shown;
    }
    if (changes.authorization !== undefined) {
      update.authorization = sealAuthorization(box, id, changes.authorization);
    }
    if (Object.keys(update).length > 0) await updateSubscription(trx, id, update, now);
    return { subscription: (await findSubscription(trx, id))!, ...shown };
  });
}

/**
 * Gives the subscription new signing keys of its scheme: a new secret (v1), answered in clear, or a new key pair
 * (v1a), whose public key is answered. The old key keeps signing beside the new one for 24 hours.
 */
export async function rotateSecret(
  storage: Storage,
  box: SecretBox,
  id: string,
  now = Date.now(),
): Promise<{ secret: string } | { publicKey: string }> {
  return storage.writer.transaction(async (trx) => {
    // Locked: two rotations at once must keep the first's new key as the second's previous one.
    const current = await lockSubscription(trx, id);
    if (!current) throw subscriptionNotFound(id);
    const keys = newKeys(box, id, current.signature);
    const rotation = {
      sealed: keys.sealed,
      previous: current.secret,
      previousUntil: now + ROTATION_OVERLAP_MS,
    };
    const update: SubscriptionUpdate = { secret: rotation };
    if (keys.publicKey !== null) update.signature = { scheme: current.signature, publicKey: keys.publicKey };
    await updateSubscription(trx, id, update, now);
    return keys.shown.secret !== undefined ? { secret: keys.shown.secret } : { publicKey: keys.publicKey! };
  });
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
  ): Promise<{ subscription: SubscriptionRow } & Credentials> {
    return createSubscription(this.storage, this.box, owner, input);
  }

  change(id: string, changes: SubscriptionChanges): Promise<{ subscription: SubscriptionRow } & Credentials> {
    return changeSubscription(this.storage, this.box, id, changes);
  }

  rotateSecret(id: string): Promise<{ secret: string } | { publicKey: string }> {
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
