import Router from "@koa/router";
import { checkFeedName } from "../log/feeds.js";
import type { TypeEntry } from "../log/types.js";
import { PING_TYPE } from "../webhooks/ping.js";
import { authorizeRead } from "./auth.js";
import type { Services } from "./context.js";
import { API_VERSION, SCHEMAS } from "./openapi.js";

/**
 * AsyncAPI 3.0 documents of what seintje sends: the events of a feed (as a stream of Server-Sent Events and as
 * pages of the pull feed, one channel with one cursor) and the wake-up ping it posts to a subscription's callback.
 * `GET /v1/asyncapi.json` describes any feed; `GET /v1/feeds/{feed}/asyncapi.json` one feed, with a message per
 * declared type whose payload carries that type's schema as `data`. The payload schemas are the OpenAPI
 * document's, so the two descriptions cannot drift apart.
 *
 * The operations are seintje's own (AsyncAPI describes one application): it sends events on the feed's channel
 * and pings on the callback channel, whose address is the subscription's URL (`null`: set per subscription).
 */

const schemaRef = (name: string) => ({ $ref: `#/components/schemas/${name}` });

/** The OpenAPI schemas the payloads use, with those they refer to. */
const PAYLOAD_SCHEMAS = {
  Sequence: SCHEMAS.Sequence,
  StoredEvent: SCHEMAS.StoredEvent,
  Page: SCHEMAS.Page,
  Ping: SCHEMAS.Ping,
};

export interface FeedDescription {
  name: string;
  description: string | null;
  typePolicy: "open" | "declared";
  types: TypeEntry[];
}

/** `#/...` references inside a type's schema point into that schema, which sits at `base` in the document. */
function rebase(schema: unknown, base: string): unknown {
  if (Array.isArray(schema)) return schema.map((item) => rebase(item, base));
  if (typeof schema !== "object" || schema === null) return schema;
  return Object.fromEntries(
    Object.entries(schema).map(([key, value]) => [
      key,
      key === "$ref" && typeof value === "string" && value.startsWith("#")
        ? `#${base}${value.slice(1)}`
        : rebase(value, base),
    ]),
  );
}

/**
 * A type's schema as a component of the document: `$schema` and `$id` dropped (a draft 2020-12 schema does not
 * nest them), `#` references inside it rebased onto its place, and a boolean schema spelled as an object.
 */
function asComponent(schema: unknown, base: string): unknown {
  if (schema === true) return {};
  if (schema === false) return { not: {} };
  const { $schema: _dialect, $id: _id, ...body } = schema as Record<string, unknown>;
  return rebase(body, base);
}

/** A component key for a type: AsyncAPI keys take letters, digits, `.`, `-` and `_`, as reverse-DNS types do. */
const keyOf = (type: string) => type.replace(/[^A-Za-z0-9._-]/g, "_");

function typeMessages(types: TypeEntry[]) {
  const messages: Record<string, unknown> = {};
  const schemas: Record<string, unknown> = {};
  for (const { type, declared } of types) {
    if (!declared) continue;
    const key = keyOf(type);
    const base = `/components/schemas/${key}.data`;
    schemas[`${key}.data`] = declared.schema === null ? {} : asComponent(JSON.parse(declared.schema), base);
    messages[key] = {
      name: type,
      title: type,
      ...(declared.description === null ? {} : { summary: declared.description }),
      contentType: "application/cloudevents+json",
      payload: {
        allOf: [
          schemaRef("StoredEvent"),
          {
            type: "object",
            properties: { type: { const: type }, data: schemaRef(`${key}.data`) },
            ...(declared.deprecated ? { deprecated: true } : {}),
          },
        ],
      },
      ...(declared.example === null
        ? {}
        : {
            examples: [
              {
                name: "example",
                summary: "The type's example data.",
                payload: exampleEvent(type, JSON.parse(declared.example)),
              },
            ],
          }),
    };
  }
  return { messages, schemas };
}

function exampleEvent(type: string, data: unknown) {
  return {
    specversion: "1.0",
    id: "example-1",
    source: "urn:nld:example",
    type,
    datacontenttype: "application/json",
    data,
    sequence: "1",
    sequencetype: "Integer",
  };
}

/** The AsyncAPI document: generic (any feed), or of one feed with its declared types. */
export function asyncApiDocument(publicUrl: string, feed?: FeedDescription) {
  const url = new URL(publicUrl);
  const address = feed ? `/feeds/${feed.name}/events` : "/feeds/{feed}/events";
  const typed = feed ? typeMessages(feed.types) : { messages: {}, schemas: {} };
  const eventMessages: Record<string, unknown> = { ...typed.messages };
  // An open feed takes events of any type besides its declared ones.
  if (!feed || feed.typePolicy === "open") eventMessages.event = { $ref: "#/components/messages/event" };
  const eventRefs = Object.keys(eventMessages).map((key) => ({
    $ref: `#/channels/feedEvents/messages/${key}`,
  }));
  return {
    asyncapi: "3.0.0",
    info: {
      title: feed ? `seintje feed ${feed.name}` : "seintje",
      version: API_VERSION,
      description:
        feed?.description ??
        "Notification feeds for CloudEvents: pull, stream and wake-up pings on one cursor, the feed's sequence.",
      license: { name: "EUPL-1.2" },
    },
    defaultContentType: "application/json",
    servers: {
      seintje: {
        host: url.host,
        protocol: url.protocol === "https:" ? "https" : "http",
        pathname: "/v1",
        security: [{ $ref: "#/components/securitySchemes/bearer" }],
      },
    },
    channels: {
      feedEvents: {
        address,
        title: "A feed's events",
        description:
          "The feed's log in sequence order. `GET` with `Accept: text/event-stream` streams one message per event (`id: <sequence>`, `data: <the event>`), resumable with Last-Event-ID; without it, the same URL answers pages of the pull feed (`after`, `limit`, `wait`, `type`, `subject`).",
        ...(feed
          ? {}
          : { parameters: { feed: { description: "The feed's name: ^[a-z0-9][a-z0-9._-]{0,62}$." } } }),
        messages: { ...eventMessages, page: { $ref: "#/components/messages/page" } },
      },
      ping: {
        address: null,
        title: "A subscription's callback",
        description:
          "The callback URL of a subscription (POST /v1/subscriptions): seintje posts a signed wake-up ping there whenever the feed has matching events the subscriber was not told about.",
        messages: { ping: { $ref: "#/components/messages/ping" } },
      },
    },
    operations: {
      streamEvents: {
        action: "send",
        channel: { $ref: "#/channels/feedEvents" },
        title: "Stream the feed",
        summary: "Server-Sent Events: every event after the cursor, then each new one as it is appended.",
        messages: eventRefs,
      },
      pullEvents: {
        action: "send",
        channel: { $ref: "#/channels/feedEvents" },
        title: "Pull a page",
        summary: "A page of the pull feed; with `wait` it is held until an event arrives (long-poll).",
        messages: [{ $ref: "#/channels/feedEvents/messages/page" }],
      },
      sendPing: {
        action: "send",
        channel: { $ref: "#/channels/ping" },
        title: "Wake up a subscriber",
        summary:
          "Identifiers only, signed per Standard Webhooks; the subscriber then pulls after its cursor.",
        messages: [{ $ref: "#/channels/ping/messages/ping" }],
      },
    },
    components: {
      messages: {
        ...(eventMessages.event
          ? {
              event: {
                name: "event",
                title: feed ? "An event of any other type" : "An event",
                contentType: "application/cloudevents+json",
                payload: schemaRef("StoredEvent"),
              },
            }
          : {}),
        page: {
          name: "page",
          title: "A page of the pull feed",
          contentType: "application/json",
          payload: schemaRef("Page"),
        },
        ping: {
          name: PING_TYPE,
          title: "A wake-up ping",
          contentType: "application/cloudevents+json",
          headers: {
            type: "object",
            required: ["webhook-id", "webhook-timestamp", "webhook-signature"],
            properties: {
              "webhook-id": { type: "string", description: "Equal to the ping's id." },
              "webhook-timestamp": { type: "string", pattern: "^[0-9]+$" },
              "webhook-signature": {
                type: "string",
                description:
                  "v1,<base64 HMAC-SHA256 over id.timestamp.body>; two, space-separated, during a rotation.",
              },
            },
          },
          payload: schemaRef("Ping"),
        },
      },
      schemas: { ...PAYLOAD_SCHEMAS, ...typed.schemas },
      securitySchemes: {
        bearer: {
          type: "http",
          scheme: "bearer",
          bearerFormat: "JWT",
          description: "Grants in the scope claim: read (events), subscribe (pings).",
        },
      },
    },
  };
}

/** `GET /v1/asyncapi.json` (open, like the OpenAPI document) and `GET /v1/feeds/{feed}/asyncapi.json` (read). */
export function asyncApiRouter(services: Services): Router {
  const router = new Router();
  router.get("/v1/asyncapi.json", (ctx) => {
    ctx.set("Cache-Control", "public, max-age=300");
    ctx.body = asyncApiDocument(services.publicUrl());
  });
  router.get("/v1/feeds/:feed/asyncapi.json", async (ctx) => {
    const name = ctx.params.feed!;
    checkFeedName(name);
    await authorizeRead(ctx, name, services.feeds);
    const [feed, types] = await Promise.all([services.feeds.get(name), services.types.list(name)]);
    ctx.set("Cache-Control", "no-cache");
    ctx.body = asyncApiDocument(services.publicUrl(), {
      name,
      description: feed.description,
      typePolicy: feed.typePolicy,
      types,
    });
  });
  return router;
}
