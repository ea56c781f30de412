import Router from "@koa/router";
import { allows } from "../auth/grants.js";
import type { Feed } from "../client/types.js";
import type { FeedRow, FeedSettings } from "../db/feeds.js";
import { type Pointed, validationProblem } from "../errors.js";
import { durationProblem } from "../log/duration.js";
import { checkFeedName, MAX_FEED_DESCRIPTION } from "../log/feeds.js";
import { oldestKept } from "../log/reader.js";
import { authorize, authorizeRead } from "./auth.js";
import { readJson } from "./body.js";
import type { Services } from "./context.js";

/** `/v1/feeds`: the Feed resource, typed by the SDK's wire type. */

export function feedView(feed: FeedRow): Feed {
  const oldest = oldestKept(feed);
  return {
    name: feed.name,
    description: feed.description,
    head: String(feed.head),
    oldest: oldest === null ? null : String(oldest),
    retention: { maxAge: feed.retentionMaxAge, maxEvents: feed.retentionMaxEvents },
    typePolicy: feed.typePolicy,
    public: feed.public,
    createdAt: new Date(feed.createdAt).toISOString(),
  };
}

const MAX_SETTINGS_BYTES = 16 * 1024;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * The PUT body: `{description?, retention?: {maxAge?, maxEvents?}, typePolicy?, public?}`; absent or null means
 * none (for typePolicy: `open`; for public: false).
 */
export function parseFeedSettings(body: unknown): FeedSettings {
  const errors: Pointed[] = [];
  const settings: FeedSettings = {
    description: null,
    retentionMaxAge: null,
    retentionMaxEvents: null,
    typePolicy: "open",
    public: false,
  };
  if (!isObject(body)) throw validationProblem([{ pointer: "", detail: "must be a JSON object" }]);
  for (const key of Object.keys(body)) {
    if (!["description", "retention", "typePolicy", "public"].includes(key))
      errors.push({ pointer: `/${key}`, detail: "is not a feed setting" });
  }
  const { description, retention, typePolicy } = body;
  if (typeof body.public === "boolean") settings.public = body.public;
  else if (body.public !== undefined && body.public !== null) {
    errors.push({ pointer: "/public", detail: "must be true or false" });
  }
  if (typePolicy === "open" || typePolicy === "declared") settings.typePolicy = typePolicy;
  else if (typePolicy !== undefined && typePolicy !== null) {
    errors.push({ pointer: "/typePolicy", detail: 'must be "open" or "declared"' });
  }
  if (typeof description === "string" && description.length <= MAX_FEED_DESCRIPTION)
    settings.description = description;
  else if (description !== undefined && description !== null) {
    errors.push({
      pointer: "/description",
      detail: `must be a string of at most ${MAX_FEED_DESCRIPTION} characters`,
    });
  }
  if (isObject(retention)) {
    for (const key of Object.keys(retention)) {
      if (key !== "maxAge" && key !== "maxEvents") {
        errors.push({ pointer: `/retention/${key}`, detail: "is not a retention setting" });
      }
    }
    const { maxAge, maxEvents } = retention;
    if (maxAge !== undefined && maxAge !== null) {
      const problem =
        typeof maxAge === "string" ? durationProblem(maxAge) : "must be an ISO 8601 duration, e.g. P30D";
      if (problem === undefined) settings.retentionMaxAge = maxAge as string;
      else errors.push({ pointer: "/retention/maxAge", detail: problem });
    }
    if (Number.isSafeInteger(maxEvents) && (maxEvents as number) >= 1)
      settings.retentionMaxEvents = maxEvents as number;
    else if (maxEvents !== undefined && maxEvents !== null) {
      errors.push({ pointer: "/retention/maxEvents", detail: "must be a whole number of at least 1" });
    }
  } else if (retention !== undefined && retention !== null) {
    errors.push({ pointer: "/retention", detail: "must be an object" });
  }
  if (errors.length > 0) throw validationProblem(errors);
  return settings;
}

export function feedRouter(services: Services): Router {
  const router = new Router({ prefix: "/v1/feeds" });

  router.get("/", async (ctx) => {
    const { grants } = authorize(ctx, "read");
    const readable = (await services.feeds.list()).filter((feed) => allows(grants, "read", feed.name));
    ctx.body = { feeds: readable.map(feedView) };
  });

  router.put("/:feed", async (ctx) => {
    const name = ctx.params.feed!;
    checkFeedName(name);
    authorize(ctx, "admin", name);
    const body = await readJson(ctx, MAX_SETTINGS_BYTES, {});
    const { feed, created } = await services.feeds.put(name, parseFeedSettings(body));
    ctx.status = created ? 201 : 200;
    if (created) ctx.set("Location", `${services.publicUrl()}/v1/feeds/${name}`);
    ctx.body = feedView(feed);
  });

  router.get("/:feed", async (ctx) => {
    checkFeedName(ctx.params.feed!);
    await authorizeRead(ctx, ctx.params.feed!, services.feeds);
    ctx.body = feedView(await services.feeds.get(ctx.params.feed!));
  });

  router.delete("/:feed", async (ctx) => {
    checkFeedName(ctx.params.feed!);
    authorize(ctx, "admin", ctx.params.feed!);
    await services.feeds.delete(ctx.params.feed!);
    services.metrics.feedRemoved(ctx.params.feed!);
    ctx.status = 204;
  });

  return router;
}
