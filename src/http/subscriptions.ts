import Router from "@koa/router";
import type { Context } from "koa";
import { allows } from "../auth/grants.js";
import type { Principal } from "../auth/verifier.js";
import type { Attempt, Subscription } from "../client/types.js";
import type { AttemptRow, SubscriptionRow } from "../db/subscriptions.js";
import { HttpProblem, type Pointed, validationProblem } from "../errors.js";
import { FILTER_LIMITS } from "../log/bounds.js";
import { FEED_NAME } from "../log/feeds.js";
import { parseSequence } from "../log/sequence.js";
import { UUID } from "../webhooks/ids.js";
import {
  LIST_LIMITS,
  MAX_SUBSCRIPTION_DESCRIPTION,
  type NewSubscriptionInput,
  type SubscriptionChanges,
  subscriptionNotFound,
  type Visibility,
} from "../webhooks/subscriptions.js";
import { authorize } from "./auth.js";
import { readJson } from "./body.js";
import type { Services } from "./context.js";
import { limitParameter, stringParameter } from "./query.js";

/**
 * `/v1/subscriptions`: webhook wake-up ping subscriptions and their attempts. What they answer is typed by the
 * SDK's wire types, so the SDK and the server cannot disagree on a field.
 */

function attemptView(attempt: AttemptRow): Attempt {
  return {
    id: String(attempt.id),
    pingId: attempt.pingId,
    at: new Date(attempt.at).toISOString(),
    head: String(attempt.head),
    statusCode: attempt.statusCode,
    durationMs: attempt.durationMs,
    error: attempt.error,
    test: attempt.test,
  };
}

function subscriptionView(row: SubscriptionRow, lastAttempt: AttemptRow | undefined): Subscription {
  return {
    id: row.id,
    feed: row.feedName,
    url: row.url,
    types: row.types,
    subject: row.subject,
    description: row.description,
    status: row.status,
    disabledReason: row.disabledReason,
    acked: String(row.acked),
    head: String(row.feedHead),
    lastAttempt: lastAttempt ? attemptView(lastAttempt) : null,
    failingSince: row.failingSince === null ? null : new Date(row.failingSince).toISOString(),
    signature: row.signature,
    publicKey: row.publicKey,
    authorization: row.authorization === null ? null : { type: row.authorization.type },
    createdAt: new Date(row.createdAt).toISOString(),
  };
}

/** The longest static Authorization value a subscription takes, in characters. */
export const MAX_AUTHORIZATION_LENGTH = 4096;
/** What a header value may hold: visible ASCII and spaces (RFC 9110 field-value, without obs-text). */
const HEADER_VALUE = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/;

/** `signature` and `authorization` of a POST or PATCH body. */
function parseAuthentication(
  body: Record<string, unknown>,
  errors: Pointed[],
): Pick<SubscriptionChanges, "signature" | "authorization"> {
  const parsed: Pick<SubscriptionChanges, "signature" | "authorization"> = {};
  const { signature, authorization } = body;
  if (signature !== undefined) {
    if (signature === "v1" || signature === "v1a") parsed.signature = signature;
    else errors.push({ pointer: "/signature", detail: 'must be "v1" (HMAC-SHA256) or "v1a" (Ed25519)' });
  }
  if (authorization === null) parsed.authorization = null;
  else if (authorization !== undefined) {
    const type = isObject(authorization) ? authorization.type : undefined;
    const extra = isObject(authorization)
      ? Object.keys(authorization).filter((key) => key !== "type" && !(type === "static" && key === "value"))
      : [];
    for (const key of extra) errors.push({ pointer: `/authorization/${key}`, detail: "is not part of it" });
    if (type === "jwt") parsed.authorization = { type: "jwt" };
    else if (type === "static") {
      const value = (authorization as Record<string, unknown>).value;
      if (typeof value === "string" && value.length <= MAX_AUTHORIZATION_LENGTH && HEADER_VALUE.test(value)) {
        parsed.authorization = { type: "static", value };
      } else {
        errors.push({
          pointer: "/authorization/value",
          detail: `must be a header value: visible ASCII, at most ${MAX_AUTHORIZATION_LENGTH} characters`,
        });
      }
    } else {
      errors.push({
        pointer: "/authorization",
        detail: 'must be null, {"type": "jwt"} or {"type": "static", "value": "..."}',
      });
    }
  }
  return parsed;
}

const MAX_BODY_BYTES = 16 * 1024;
const MAX_TYPES = FILTER_LIMITS.types;
const MAX_FILTER_LENGTH = FILTER_LIMITS.length;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Parses the fields shared by POST and PATCH; collects errors with pointers. */
function parseFields(
  body: Record<string, unknown>,
  allowed: readonly string[],
  errors: Pointed[],
): SubscriptionChanges & { feed?: string; after?: number } {
  const fields: SubscriptionChanges & { feed?: string; after?: number } = {};
  for (const key of Object.keys(body)) {
    if (!allowed.includes(key)) errors.push({ pointer: `/${key}`, detail: "is not a subscription field" });
  }
  const { feed, url, types, subject, description, after, status } = body;
  if (feed !== undefined) {
    if (typeof feed === "string" && FEED_NAME.test(feed)) fields.feed = feed;
    else errors.push({ pointer: "/feed", detail: "must be a feed name" });
  }
  if (url !== undefined) {
    if (typeof url === "string") fields.url = url;
    else errors.push({ pointer: "/url", detail: "must be a string" });
  }
  if (types !== undefined) {
    if (!Array.isArray(types) || types.length > MAX_TYPES) {
      errors.push({ pointer: "/types", detail: `must be an array of at most ${MAX_TYPES} type prefixes` });
    } else {
      types.forEach((type, index) => {
        if (typeof type !== "string" || type === "" || type.length > MAX_FILTER_LENGTH) {
          errors.push({ pointer: `/types/${index}`, detail: "must be a non-empty string" });
        }
      });
      fields.types = types as string[];
    }
  }
  if (subject !== undefined) {
    if (
      subject === null ||
      (typeof subject === "string" && subject !== "" && subject.length <= MAX_FILTER_LENGTH)
    )
      fields.subject = subject;
    else errors.push({ pointer: "/subject", detail: "must be a non-empty string or null" });
  }
  if (description !== undefined) {
    if (
      description === null ||
      (typeof description === "string" && description.length <= MAX_SUBSCRIPTION_DESCRIPTION)
    )
      fields.description = description;
    else
      errors.push({
        pointer: "/description",
        detail: `must be a string of at most ${MAX_SUBSCRIPTION_DESCRIPTION} characters`,
      });
  }
  if (after !== undefined) {
    const sequence = typeof after === "string" ? parseSequence(after) : undefined;
    if (sequence !== undefined) fields.after = sequence;
    else errors.push({ pointer: "/after", detail: 'must be a sequence, a decimal string such as "42"' });
  }
  if (status !== undefined) {
    if (status === "active" || status === "disabled") fields.status = status;
    else errors.push({ pointer: "/status", detail: 'must be "active" (re-enable) or "disabled" (pause)' });
  }
  return fields;
}

/**
 * Whether a change makes pings name events they did not name before: new filters, or pings resuming. A ping names
 * event ids, types and subjects, which only a reader of the feed may learn, so these need `read` on the feed as
 * creating a subscription does.
 */
function disclosesMore(changes: SubscriptionChanges): boolean {
  return changes.types !== undefined || changes.subject !== undefined || changes.status === "active";
}

/** Whether the principal may see this subscription: its creator, or an admin of its feed. */
function visible(principal: Principal, row: SubscriptionRow): boolean {
  return (
    (row.owner === (principal.subject ?? null) || allows(principal.grants, "admin", row.feedName)) &&
    allows(principal.grants, "subscribe", row.feedName)
  );
}

export function subscriptionRouter(services: Services): Router {
  const router = new Router({ prefix: "/v1/subscriptions" });
  const { webhooks } = services;

  /**
   * What `find` reads of the subscription named in the path, if the caller may see it; 404 otherwise (which says
   * nothing more).
   */
  async function named<T>(
    ctx: Context,
    find: (id: string, visibility: Visibility) => Promise<T | undefined>,
  ) {
    const principal = authorize(ctx, "subscribe");
    const id = ctx.params.id!;
    const found = UUID.test(id) ? await find(id, (row) => visible(principal, row)) : undefined;
    if (found === undefined) throw subscriptionNotFound(id);
    return found;
  }

  /** The subscription named in the path. */
  function load(ctx: Context): Promise<SubscriptionRow> {
    return named(ctx, (id, visibility) => webhooks.subscriptions.findVisible(id, visibility));
  }

  /** A subscription just written, with its last attempt. */
  async function view(row: SubscriptionRow): Promise<Subscription> {
    return subscriptionView(row, await webhooks.subscriptions.lastAttemptOf(row.id));
  }

  router.post("/", async (ctx) => {
    const principal = authorize(ctx, "subscribe");
    const body = await readJson(ctx, MAX_BODY_BYTES);
    if (!isObject(body)) throw validationProblem([{ pointer: "", detail: "must be a JSON object" }]);
    const errors: Pointed[] = [];
    const fields = parseFields(
      body,
      ["feed", "url", "types", "subject", "description", "after", "signature", "authorization"],
      errors,
    );
    const authentication = parseAuthentication(body, errors);
    if (body.feed === undefined) errors.push({ pointer: "/feed", detail: "is required" });
    if (body.url === undefined) errors.push({ pointer: "/url", detail: "is required" });
    if (errors.length > 0) throw validationProblem(errors);
    authorize(ctx, "subscribe", fields.feed!);
    authorize(ctx, "read", fields.feed!);
    const url = webhooks.callbacks.parse(fields.url!);
    await webhooks.callbacks.verify(url);
    const input: NewSubscriptionInput = {
      feed: fields.feed!,
      url,
      types: fields.types ?? [],
      subject: fields.subject ?? null,
      description: fields.description ?? null,
      after: fields.after,
      signature: authentication.signature ?? "v1",
      authorization: authentication.authorization ?? null,
    };
    const { subscription, secret } = await webhooks.subscriptions.create(principal.subject ?? null, input);
    webhooks.dispatcher.subscriptionsChanged();
    ctx.status = 201;
    ctx.set("Location", `${services.publicUrl()}/v1/subscriptions/${subscription.id}`);
    ctx.set("Cache-Control", "no-store");
    ctx.body = { ...subscriptionView(subscription, undefined), ...(secret === undefined ? {} : { secret }) };
  });

  router.get("/", async (ctx) => {
    const principal = authorize(ctx, "subscribe");
    const limit = limitParameter(ctx.query, LIST_LIMITS.subscriptions);
    const after = stringParameter(ctx.query, "after", 64);
    const anyAdmin = principal.grants.some((grant) => grant.action === "admin");
    const page = await webhooks.subscriptions.list(
      { owner: anyAdmin ? undefined : (principal.subject ?? null), after, limit },
      (row) => visible(principal, row),
    );
    const next =
      page.read === limit
        ? `${services.publicUrl()}/v1/subscriptions?${new URLSearchParams({ after: page.last!, limit: String(limit) })}`
        : null;
    ctx.body = {
      subscriptions: page.shown.map(({ row, lastAttempt }) => subscriptionView(row, lastAttempt)),
      next,
    };
  });

  router.get("/:id", async (ctx) => {
    const found = await named(ctx, (id, visibility) => webhooks.subscriptions.read(id, visibility));
    ctx.body = subscriptionView(found.row, found.lastAttempt);
  });

  router.patch("/:id", async (ctx) => {
    const row = await load(ctx);
    authorize(ctx, "subscribe", row.feedName);
    const body = await readJson(ctx, MAX_BODY_BYTES);
    if (!isObject(body)) throw validationProblem([{ pointer: "", detail: "must be a JSON object" }]);
    const errors: Pointed[] = [];
    const changes = parseFields(
      body,
      ["url", "types", "subject", "description", "status", "signature", "authorization"],
      errors,
    );
    Object.assign(changes, parseAuthentication(body, errors));
    if (body.url === null) errors.push({ pointer: "/url", detail: "cannot be removed" });
    if (errors.length > 0) throw validationProblem(errors);
    if (disclosesMore(changes)) authorize(ctx, "read", row.feedName);
    if (changes.url !== undefined) {
      changes.url = webhooks.callbacks.parse(changes.url);
      if (changes.url !== row.url) await webhooks.callbacks.verify(changes.url);
    }
    const { subscription, secret } = await webhooks.subscriptions.change(row.id, changes);
    webhooks.dispatcher.subscriptionsChanged();
    if (secret !== undefined) ctx.set("Cache-Control", "no-store");
    ctx.body = { ...(await view(subscription)), ...(secret === undefined ? {} : { secret }) };
  });

  router.delete("/:id", async (ctx) => {
    const row = await load(ctx);
    authorize(ctx, "subscribe", row.feedName);
    if (!(await webhooks.subscriptions.remove(row.id))) throw subscriptionNotFound(row.id);
    ctx.status = 204;
  });

  router.post("/:id/test", async (ctx) => {
    const row = await load(ctx);
    authorize(ctx, "subscribe", row.feedName);
    ctx.body = attemptView(await webhooks.dispatcher.test(row));
  });

  router.post("/:id/retry", async (ctx) => {
    const row = await load(ctx);
    authorize(ctx, "subscribe", row.feedName);
    ctx.body = attemptView(await webhooks.dispatcher.retry(row.id));
  });

  router.get("/:id/attempts", async (ctx) => {
    const row = await load(ctx);
    const limit = limitParameter(ctx.query, LIST_LIMITS.attempts);
    const beforeText = stringParameter(ctx.query, "before", 64);
    const before = beforeText === undefined ? undefined : parseSequence(beforeText);
    if (beforeText !== undefined && before === undefined) {
      throw new HttpProblem(400, "badRequest", '"before" must be an attempt id.', { parameter: "before" });
    }
    const attempts = await webhooks.subscriptions.attempts(row.id, { before, limit });
    const next =
      attempts.length === limit
        ? `${services.publicUrl()}/v1/subscriptions/${row.id}/attempts?${new URLSearchParams({ before: String(attempts.at(-1)!.id), limit: String(limit) })}`
        : null;
    ctx.body = { attempts: attempts.map(attemptView), next };
  });

  router.post("/:id/rotate-secret", async (ctx) => {
    const row = await load(ctx);
    authorize(ctx, "subscribe", row.feedName);
    // A secret must not be kept by any cache between the service and the one who asked.
    ctx.set("Cache-Control", "no-store");
    ctx.body = await webhooks.subscriptions.rotateSecret(row.id);
  });

  return router;
}
