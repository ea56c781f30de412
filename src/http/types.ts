import Router from "@koa/router";
import type { EventType } from "../client/types.js";
import { type Pointed, validationProblem } from "../errors.js";
import { checkSchema } from "../events/schema.js";
import { checkFeedName, MAX_FEED_DESCRIPTION } from "../log/feeds.js";
import { checkTypeName, type Declaration, type TypeEntry } from "../log/types.js";
import { authorize, authorizeRead } from "./auth.js";
import { expectsContinue, readJson } from "./body.js";
import type { Services } from "./context.js";

/** `/v1/feeds/{feed}/types`: the feed's catalogue of event types. */

/** The largest declaration body: room for a sizeable schema and example, far below a publish request. */
export const MAX_DECLARATION_BYTES = 256 * 1024;

const iso = (epochMs: number | undefined) => (epochMs === undefined ? null : new Date(epochMs).toISOString());
const parsed = (text: string | null | undefined) =>
  text === null || text === undefined ? null : JSON.parse(text);

export function typeView(entry: TypeEntry): EventType {
  const { declared, stats } = entry;
  return {
    type: entry.type,
    declared: declared !== undefined,
    description: declared?.description ?? null,
    schema: parsed(declared?.schema),
    example: parsed(declared?.example),
    deprecated: declared ? declared.deprecated : null,
    count: stats?.count ?? 0,
    lastPublished: iso(stats?.lastPublished),
    createdAt: iso(declared?.createdAt),
    updatedAt: iso(declared?.updatedAt),
  };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * The PUT body: `{description?, schema?, example?, deprecated?}`, absent or null meaning none (not deprecated).
 * The schema must be a draft 2020-12 schema that compiles, and the example must match it.
 */
export function parseDeclaration(body: unknown): Declaration {
  if (!isObject(body)) throw validationProblem([{ pointer: "", detail: "must be a JSON object" }]);
  const errors: Pointed[] = [];
  for (const key of Object.keys(body)) {
    if (!["description", "schema", "example", "deprecated"].includes(key)) {
      errors.push({ pointer: `/${key}`, detail: "is not part of an event type's declaration" });
    }
  }
  const declaration: Declaration = {
    description: null,
    schema: undefined,
    example: undefined,
    deprecated: false,
  };
  const { description, schema, example, deprecated } = body;
  if (typeof description === "string" && description.length <= MAX_FEED_DESCRIPTION) {
    declaration.description = description;
  } else if (description !== undefined && description !== null) {
    errors.push({
      pointer: "/description",
      detail: `must be a string of at most ${MAX_FEED_DESCRIPTION} characters`,
    });
  }
  if (typeof deprecated === "boolean") declaration.deprecated = deprecated;
  else if (deprecated !== undefined && deprecated !== null) {
    errors.push({ pointer: "/deprecated", detail: "must be true or false" });
  }
  if (example !== null) declaration.example = example;
  if (schema !== undefined && schema !== null) {
    const found = checkSchema(
      schema,
      "/schema",
      declaration.example === undefined ? undefined : { value: declaration.example, prefix: "/example" },
    );
    if (found.length === 0) declaration.schema = schema;
    errors.push(...found);
  }
  if (errors.length > 0) throw validationProblem(errors);
  return declaration;
}

export function typeRouter(services: Services): Router {
  const router = new Router({ prefix: "/v1/feeds/:feed/types" });

  router.get("/", async (ctx) => {
    const feed = ctx.params.feed!;
    checkFeedName(feed);
    await authorizeRead(ctx, feed, services.feeds);
    ctx.body = { types: (await services.types.list(feed)).map(typeView) };
  });

  router.get("/:type", async (ctx) => {
    const { feed, type } = ctx.params as { feed: string; type: string };
    checkFeedName(feed);
    await authorizeRead(ctx, feed, services.feeds);
    checkTypeName(type);
    ctx.body = typeView(await services.types.get(feed, type));
  });

  router.put("/:type", async (ctx) => {
    const { feed, type } = ctx.params as { feed: string; type: string };
    checkFeedName(feed);
    authorize(ctx, "admin", feed);
    checkTypeName(type);
    // A client waiting for 100 Continue learns of a missing feed before it sends the body.
    if (expectsContinue(ctx)) await services.feeds.get(feed);
    const declaration = parseDeclaration(await readJson(ctx, MAX_DECLARATION_BYTES, {}));
    const { entry, created } = await services.types.put(feed, type, declaration);
    ctx.status = created ? 201 : 200;
    if (created) ctx.set("Location", `${services.publicUrl()}/v1/feeds/${feed}/types/${type}`);
    ctx.body = typeView(entry);
  });

  router.delete("/:type", async (ctx) => {
    const { feed, type } = ctx.params as { feed: string; type: string };
    checkFeedName(feed);
    authorize(ctx, "admin", feed);
    checkTypeName(type);
    await services.types.delete(feed, type);
    ctx.status = 204;
  });

  return router;
}
