import Router from "@koa/router";
import { MAX_EVENT_BYTES, MAX_EVENTS_PER_REQUEST } from "../events/encoding.js";
import { REVERSE_DNS } from "../events/validate.js";
import { MAX_DATA_DEPTH } from "../json.js";
import { FILTER_LIMITS, MAX_PAGE_BYTES, MAX_WAIT_SECONDS, PAGE_LIMIT } from "../log/bounds.js";
import { FEED_NAME_PATTERN, MAX_FEED_DESCRIPTION } from "../log/feeds.js";
import { SEQUENCE_PATTERN } from "../log/sequence.js";
import { MAX_TYPE_LENGTH } from "../log/types.js";
import { PING_DATA_SCHEMA_PATH, PING_EVENTS, PING_TYPE } from "../webhooks/ping.js";
import { LIST_LIMITS, MAX_SUBSCRIPTION_DESCRIPTION } from "../webhooks/subscriptions.js";
import type { Services } from "./context.js";
import { MAX_DECLARATION_BYTES } from "./types.js";

/**
 * The OpenAPI 3.1 document of the HTTP API, served at /v1/openapi.json. It is written here, by hand, as the
 * contract's description; the tests keep it true: it must validate as OpenAPI 3.1, name every route the routers
 * register (and no other), and describe what the server really answers (real responses are validated against its
 * schemas). Extensions to the contract are marked `x-seintje-extension`.
 */

/** The semantic version of the HTTP API, sent on every response (NL API Design Rules) and in the document. */
export const API_VERSION = "1.1.0";

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const problemRef = (name: string) => ({ $ref: `#/components/responses/${name}` });
const json = (schema: object) => ({ "application/json": { schema } });

/** The header every answer carries (NL API Design Rules, /core/version-header). */
const API_VERSION_HEADER = { $ref: "#/components/headers/API-Version" };

/** A sequence: a decimal string, the one cursor of every channel. */
const SEQUENCE = {
  type: "string",
  pattern: SEQUENCE_PATTERN,
  description: "A feed's position: a decimal string, gap-free and strictly increasing within a feed.",
  examples: ["42"],
};

const FEED_PARAMETER = {
  name: "feed",
  in: "path",
  required: true,
  description: "The feed's name.",
  schema: { type: "string", pattern: FEED_NAME_PATTERN },
};

const TYPE_PARAMETER = {
  name: "type",
  in: "path",
  required: true,
  description: "The event type, in reverse-DNS form.",
  schema: { type: "string", pattern: REVERSE_DNS.source, maxLength: MAX_TYPE_LENGTH },
};

const TYPE_POLICY = {
  enum: ["open", "declared"],
  description: "open: events of any type are taken; declared: only events of the feed's declared types.",
};

const SUBSCRIPTION_PARAMETER = {
  name: "id",
  in: "path",
  required: true,
  description: "The subscription's id (a UUIDv7: ids sort in creation order).",
  schema: { type: "string", format: "uuid" },
};

/**
 * A public feed's GET paths need no token (a sent token is still verified): a token or none. Where no token is sent
 * and the feed is not public, the answer is the 401 of a missing token.
 */
const READ_SECURITY = [{ bearer: [] }, {}];

const IF_NONE_MATCH = {
  name: "If-None-Match",
  in: "header",
  description: "The ETag of a copy the client holds: a 304 without a body when it is still this one.",
  schema: { type: "string" },
};

/** The validators and cache lifetime of a cacheable read, on its 200 and its 304 alike. */
const CACHE_HEADERS = {
  ETag: {
    description: 'Strong; a compressed answer\'s names its encoding ("...-br").',
    schema: { type: "string" },
  },
  "Cache-Control": {
    description:
      "`public` (a public feed) or `private`, `max-age=31536000, immutable` for what can never change (a complete page, an event); at the head `public, max-age=2` or `private, no-cache`.",
    schema: { type: "string" },
  },
  Vary: { schema: { type: "string" }, description: "Accept, Accept-Encoding (and Origin with CORS)." },
};

const NOT_MODIFIED = {
  description: "Not modified: the client's copy (If-None-Match) is current.",
  headers: CACHE_HEADERS,
};

const SIGNATURE = {
  enum: ["v1", "v1a"],
  description: "How pings are signed: v1 Standard Webhooks HMAC-SHA256 (the default), v1a Ed25519.",
};

const AUTHORIZATION = {
  description:
    'What each ping\'s Authorization header carries: null (nothing, the default); {"type": "jwt"}, a JWT signed with the service\'s key (see /.well-known/jwks.json), aud the callback URL, jti the webhook-id, five minutes valid, sha256 the base64url SHA-256 of the body; or {"type": "static", "value": "..."}, sent verbatim, sealed at rest and never shown again.',
  anyOf: [
    { type: "null" },
    {
      type: "object",
      required: ["type"],
      properties: { type: { const: "jwt" } },
      additionalProperties: false,
    },
    {
      type: "object",
      required: ["type", "value"],
      properties: { type: { const: "static" }, value: { type: "string", minLength: 1, maxLength: 4096 } },
      additionalProperties: false,
    },
  ],
};

/** The answers every authenticated operation may give. */
const AUTH_RESPONSES = {
  "401": problemRef("Unauthorized"),
  "403": problemRef("Forbidden"),
};

const READ_FILTERS = [
  {
    name: "type",
    in: "query",
    description: "Only events whose type starts with this prefix; repeatable (any prefix matches).",
    schema: {
      type: "array",
      maxItems: FILTER_LIMITS.types,
      items: { type: "string", minLength: 1, maxLength: FILTER_LIMITS.length },
    },
    style: "form",
    explode: true,
  },
  {
    name: "subject",
    in: "query",
    description: "Only events with exactly this subject.",
    schema: { type: "string", minLength: 1, maxLength: FILTER_LIMITS.length },
  },
];

const CLOUD_EVENT_ATTRIBUTES = {
  specversion: { const: "1.0" },
  id: { type: "string", minLength: 1 },
  source: { type: "string", minLength: 1, format: "uri-reference" },
  type: {
    type: "string",
    minLength: 1,
    description: "Reverse-DNS, e.g. nl.kadaster.brk.perceel-overgedragen.",
  },
  subject: { type: "string" },
  time: { type: "string", format: "date-time" },
  datacontenttype: { type: "string" },
  dataschema: { type: "string", format: "uri" },
  dataref: { type: "string", format: "uri" },
  data: {
    description: `Any JSON value, nested at most ${MAX_DATA_DEPTH} levels, with numbers a 64-bit double holds exactly (others are refused, never changed).`,
  },
  data_base64: { type: "string", contentEncoding: "base64" },
};

export const SCHEMAS = {
  Sequence: SEQUENCE,
  CloudEvent: {
    type: "object",
    description: `A CloudEvent 1.0 in structured JSON form, as published: at most ${MAX_EVENT_BYTES} bytes serialized. \`sequence\` and \`sequencetype\` are the feed's to set.`,
    required: ["specversion", "id", "source", "type"],
    properties: CLOUD_EVENT_ATTRIBUTES,
    not: { anyOf: [{ required: ["sequence"] }, { required: ["sequencetype"] }] },
    propertyNames: { pattern: "^([a-z0-9]{1,}|data_base64)$" },
    additionalProperties: true,
  },
  StoredEvent: {
    type: "object",
    description: "A CloudEvent as a feed serves it: as published, with the feed's sequence.",
    required: ["specversion", "id", "source", "type", "sequence", "sequencetype"],
    properties: {
      ...CLOUD_EVENT_ATTRIBUTES,
      sequence: ref("Sequence"),
      sequencetype: { const: "Integer" },
    },
    additionalProperties: true,
  },
  Pointed: {
    type: "object",
    required: ["pointer", "detail"],
    properties: {
      pointer: {
        type: "string",
        description: "A JSON Pointer into the request (the structured form's path).",
      },
      detail: { type: "string" },
    },
    additionalProperties: false,
  },
  Problem: {
    type: "object",
    description: "RFC 9457. `type` is a stable URN `urn:seintje:problem:<kind>`.",
    required: ["type", "title", "status"],
    properties: {
      type: { type: "string", pattern: "^urn:seintje:problem:[a-z-]+$" },
      title: { type: "string" },
      status: { type: "integer", minimum: 400, maximum: 599 },
      detail: { type: "string" },
      errors: { type: "array", items: ref("Pointed") },
      parameter: { type: "string", description: "The malformed query parameter or header." },
      oldest: {
        anyOf: [ref("Sequence"), { type: "null" }],
        description: "cursor-gone: the oldest kept event.",
      },
      head: { ...ref("Sequence"), description: "cursor-ahead and cursor-gone: the feed's head." },
      pending: { type: "array", items: { type: "string" }, description: "/readyz: migrations not yet run." },
    },
    additionalProperties: true,
  },
  Retention: {
    type: "object",
    required: ["maxAge", "maxEvents"],
    properties: {
      maxAge: {
        type: ["string", "null"],
        description: "An ISO 8601 duration (P30D, PT12H); null: no limit.",
      },
      maxEvents: { type: ["integer", "null"], minimum: 1, description: "null: no limit." },
    },
    additionalProperties: false,
  },
  FeedSettings: {
    type: "object",
    description:
      "An absent or null member means none: no description, no retention limit, typePolicy open, not public.",
    properties: {
      description: { type: ["string", "null"], maxLength: MAX_FEED_DESCRIPTION },
      retention: {
        type: ["object", "null"],
        properties: {
          maxAge: { type: ["string", "null"] },
          maxEvents: { type: ["integer", "null"], minimum: 1 },
        },
        additionalProperties: false,
      },
      typePolicy: { anyOf: [TYPE_POLICY, { type: "null" }] },
      public: { type: ["boolean", "null"] },
    },
    additionalProperties: false,
  },
  Feed: {
    type: "object",
    required: ["name", "description", "head", "oldest", "retention", "typePolicy", "public", "createdAt"],
    properties: {
      name: FEED_PARAMETER.schema,
      description: { type: ["string", "null"] },
      head: { ...ref("Sequence"), description: 'The newest event\'s sequence; "0" for an empty feed.' },
      oldest: {
        anyOf: [ref("Sequence"), { type: "null" }],
        description: "The oldest kept event; null when none is.",
      },
      retention: ref("Retention"),
      typePolicy: TYPE_POLICY,
      public: {
        type: "boolean",
        description: "Anyone may read the feed's events, types and documents without a token.",
      },
      createdAt: { type: "string", format: "date-time" },
    },
    additionalProperties: false,
  },
  FeedList: {
    type: "object",
    required: ["feeds"],
    properties: { feeds: { type: "array", items: ref("Feed") } },
    additionalProperties: false,
  },
  Page: {
    type: "object",
    required: ["events", "next", "head"],
    properties: {
      events: { type: "array", items: ref("StoredEvent") },
      next: {
        ...ref("Sequence"),
        description: "Pass as `after` next time; with filters it moves past what was scanned.",
      },
      head: ref("Sequence"),
    },
    additionalProperties: false,
  },
  PublishResult: {
    type: "object",
    required: ["events"],
    properties: {
      events: {
        type: "array",
        items: {
          type: "object",
          required: ["id", "source", "sequence"],
          properties: { id: { type: "string" }, source: { type: "string" }, sequence: ref("Sequence") },
          additionalProperties: false,
        },
      },
      warnings: {
        type: "array",
        items: ref("Pointed"),
        description:
          "The NL GOV profile's recommendations that the events do not follow, and events of deprecated types.",
      },
    },
    additionalProperties: false,
  },
  EventType: {
    type: "object",
    description:
      "A type of a feed: declared by an admin, or only seen in the feed's events (then declared is false and the members a declaration sets are null).",
    required: [
      "type",
      "declared",
      "description",
      "schema",
      "example",
      "deprecated",
      "count",
      "lastPublished",
      "createdAt",
      "updatedAt",
    ],
    properties: {
      type: TYPE_PARAMETER.schema,
      declared: { type: "boolean" },
      description: { type: ["string", "null"] },
      schema: {
        type: ["object", "boolean", "null"],
        description: "A JSON Schema (draft 2020-12) that every event's data must match; null: any data.",
      },
      example: { description: "Example data of this type; null when none was given." },
      deprecated: { type: ["boolean", "null"] },
      count: { type: "integer", minimum: 0, description: "How many events of this type the feed holds now." },
      lastPublished: {
        type: ["string", "null"],
        format: "date-time",
        description: "When the newest of them was appended; null when the feed holds none.",
      },
      createdAt: { type: ["string", "null"], format: "date-time" },
      updatedAt: { type: ["string", "null"], format: "date-time" },
    },
    additionalProperties: false,
  },
  EventTypeList: {
    type: "object",
    required: ["types"],
    properties: { types: { type: "array", items: ref("EventType") } },
    additionalProperties: false,
  },
  EventTypeDeclaration: {
    type: "object",
    description: "An absent or null member means none (not deprecated).",
    properties: {
      description: { type: ["string", "null"], maxLength: MAX_FEED_DESCRIPTION },
      schema: {
        type: ["object", "boolean", "null"],
        description:
          "A JSON Schema (draft 2020-12) for the events' data; it must compile, and references may not leave it.",
      },
      example: { description: "Example data; it must match the schema." },
      deprecated: { type: ["boolean", "null"] },
    },
    additionalProperties: false,
  },
  Attempt: {
    type: "object",
    required: ["id", "pingId", "at", "head", "statusCode", "durationMs", "error", "test"],
    properties: {
      id: { type: "string", pattern: "^[1-9][0-9]*$" },
      pingId: { type: "string" },
      at: { type: "string", format: "date-time" },
      head: ref("Sequence"),
      statusCode: { type: ["integer", "null"], description: "null on a network error or timeout." },
      durationMs: { type: "integer", minimum: 0 },
      error: { type: ["string", "null"] },
      test: { type: "boolean" },
    },
    additionalProperties: false,
  },
  Subscription: {
    type: "object",
    required: [
      "id",
      "feed",
      "url",
      "types",
      "subject",
      "description",
      "status",
      "disabledReason",
      "acked",
      "head",
      "lastAttempt",
      "failingSince",
      "signature",
      "publicKey",
      "authorization",
      "createdAt",
    ],
    properties: {
      id: { type: "string", format: "uuid" },
      feed: FEED_PARAMETER.schema,
      url: { type: "string", format: "uri" },
      types: { type: "array", items: { type: "string" } },
      subject: { type: ["string", "null"], minLength: 1, maxLength: FILTER_LIMITS.length },
      description: { type: ["string", "null"], maxLength: MAX_SUBSCRIPTION_DESCRIPTION },
      status: { enum: ["active", "failing", "disabled"] },
      disabledReason: { type: ["string", "null"], "x-seintje-extension": true },
      acked: { ...ref("Sequence"), description: "The newest event the subscriber was told about." },
      head: { ...ref("Sequence"), description: "The feed's head." },
      lastAttempt: { anyOf: [ref("Attempt"), { type: "null" }] },
      failingSince: { type: ["string", "null"], format: "date-time" },
      signature: SIGNATURE,
      publicKey: {
        type: ["string", "null"],
        pattern: "^whpk_",
        description: "v1a: the Ed25519 public key that verifies pings (base64 of 32 bytes); null for v1.",
      },
      authorization: {
        anyOf: [
          {
            type: "object",
            required: ["type"],
            properties: { type: { enum: ["jwt", "static"] } },
            additionalProperties: false,
          },
          { type: "null" },
        ],
        description: "What each ping's Authorization header carries; a static value is never shown again.",
      },
      createdAt: { type: "string", format: "date-time" },
      secret: {
        type: "string",
        pattern: "^whsec_",
        description:
          "Only in the answer to a create of a v1 subscription, or a change to v1: the signing secret, shown this once.",
      },
    },
    additionalProperties: false,
  },
  NewSubscription: {
    type: "object",
    required: ["feed", "url"],
    properties: {
      feed: FEED_PARAMETER.schema,
      url: {
        type: "string",
        format: "uri",
        description: "https, and public unless the configuration allows.",
      },
      types: {
        type: "array",
        maxItems: FILTER_LIMITS.types,
        items: { type: "string", minLength: 1, maxLength: FILTER_LIMITS.length },
      },
      subject: { type: "string", minLength: 1, maxLength: FILTER_LIMITS.length },
      description: { type: "string", maxLength: MAX_SUBSCRIPTION_DESCRIPTION },
      after: { ...ref("Sequence"), description: "Start after this sequence; the feed's head when absent." },
      signature: SIGNATURE,
      authorization: AUTHORIZATION,
    },
    additionalProperties: false,
  },
  SubscriptionChanges: {
    type: "object",
    properties: {
      url: { type: "string", format: "uri" },
      types: {
        type: "array",
        maxItems: FILTER_LIMITS.types,
        items: { type: "string", minLength: 1, maxLength: FILTER_LIMITS.length },
      },
      subject: { type: ["string", "null"] },
      description: { type: ["string", "null"] },
      status: {
        enum: ["active", "disabled"],
        description: '"active" re-enables; "disabled" pauses (an extension).',
      },
      signature: {
        ...SIGNATURE,
        description: "A new scheme brings new keys at once; the old ones stop signing.",
      },
      authorization: AUTHORIZATION,
    },
    additionalProperties: false,
  },
  SubscriptionList: {
    type: "object",
    required: ["subscriptions", "next"],
    properties: {
      subscriptions: { type: "array", items: ref("Subscription") },
      next: { type: ["string", "null"], format: "uri", description: "The next page's URL." },
    },
    additionalProperties: false,
  },
  AttemptList: {
    type: "object",
    required: ["attempts", "next"],
    properties: {
      attempts: { type: "array", items: ref("Attempt") },
      next: { type: ["string", "null"], format: "uri" },
    },
    additionalProperties: false,
  },
  Ping: {
    type: "object",
    description: "A wake-up ping: identifiers only, never event data.",
    required: [
      "specversion",
      "id",
      "source",
      "type",
      "time",
      "subject",
      "datacontenttype",
      "dataschema",
      "data",
    ],
    properties: {
      specversion: { const: "1.0" },
      id: { type: "string", description: "Equal to the webhook-id header." },
      source: { type: "string" },
      type: { const: PING_TYPE },
      time: { type: "string", format: "date-time" },
      subject: { type: "string", description: "The feed." },
      datacontenttype: { const: "application/json" },
      dataschema: {
        type: "string",
        format: "uri",
        description: `The JSON Schema of data, served at ${PING_DATA_SCHEMA_PATH} (versioned in its path).`,
      },
      data: {
        type: "object",
        required: ["feed", "subscription", "after", "head", "url", "events", "truncated"],
        properties: {
          feed: { type: "string" },
          subscription: { type: "string" },
          after: { ...ref("Sequence"), description: "The subscription's acked: read after it." },
          head: { ...ref("Sequence"), description: "The newest matching sequence." },
          url: { type: "string", format: "uri", description: "The feed URL with after and the filters." },
          events: {
            type: "array",
            maxItems: PING_EVENTS,
            items: {
              type: "object",
              required: ["sequence", "id", "type", "subject"],
              properties: {
                sequence: ref("Sequence"),
                id: { type: "string" },
                type: { type: "string" },
                subject: { type: ["string", "null"] },
              },
              additionalProperties: false,
            },
          },
          truncated: { type: "boolean", description: "More matching events lie between after and head." },
          cursorGone: {
            const: true,
            "x-seintje-extension": true,
            description: "Retention removed events after `after` before the subscriber was told of them.",
          },
          oldest: { ...ref("Sequence"), "x-seintje-extension": true, description: "With cursorGone." },
          test: {
            const: true,
            "x-seintje-extension": true,
            description: "A test ping; it acknowledges nothing.",
          },
        },
        additionalProperties: false,
      },
    },
    additionalProperties: false,
  },
  Health: {
    type: "object",
    required: ["status"],
    properties: { status: { enum: ["ok", "ready"] } },
    additionalProperties: false,
  },
};

function problemResponse(description: string) {
  return { description, content: { "application/problem+json": { schema: ref("Problem") } } };
}

const responses = {
  BadRequest: problemResponse(
    "The request is malformed; `errors` points into the body, `parameter` names a query parameter.",
  ),
  Unauthorized: {
    ...problemResponse("No token, or not a valid one."),
    headers: {
      "WWW-Authenticate": {
        schema: { type: "string" },
        description: 'Bearer, with error="invalid_token" for a bad token.',
      },
    },
  },
  Forbidden: {
    ...problemResponse("The token lacks the grant."),
    headers: {
      "WWW-Authenticate": { schema: { type: "string" }, description: 'Bearer error="insufficient_scope".' },
    },
  },
  NotFound: problemResponse("No such feed, event or subscription."),
  Unavailable: {
    ...problemResponse(
      "Shutting down, the database does not answer, or a limit on held requests is reached.",
    ),
    headers: { "Retry-After": { schema: { type: "integer" } } },
  },
  StorageFull: {
    ...problemResponse("The service's storage is full (problem type storage-full); nothing was stored."),
    headers: { "Retry-After": { schema: { type: "integer" } } },
  },
  UnsupportedMediaType: problemResponse("The body is not JSON (application/json or another +json type)."),
};
for (const response of Object.values(responses) as Array<{ headers?: Record<string, unknown> }>) {
  response.headers = { "API-Version": API_VERSION_HEADER, ...response.headers };
}

type Operation = { responses: Record<string, { $ref?: string; headers?: Record<string, unknown> }> };

/**
 * What holds for every operation, added in one place: API-Version on every answer, a 507 on every write (any
 * write may meet a full storage), a 400 wherever a feed name is in the path (an invalid name). The /v1 paths are
 * written relative to the server URL `/v1` (/core/uri-version); the operational ones name `/` as theirs.
 */
function finishPaths(table: Record<string, Record<string, unknown>>): Record<string, unknown> {
  const finished: Record<string, unknown> = {};
  for (const [path, source] of Object.entries(table)) {
    const item = structuredClone(source);
    for (const method of ["get", "put", "post", "patch", "delete"]) {
      const operation = item[method] as Operation | undefined;
      if (!operation) continue;
      if (method !== "get") operation.responses["507"] = problemRef("StorageFull");
      if (path.includes("{feed}")) operation.responses["400"] ??= problemRef("BadRequest");
      for (const response of Object.values(operation.responses)) {
        if (response.$ref === undefined)
          response.headers = { "API-Version": API_VERSION_HEADER, ...response.headers };
      }
    }
    if (path.startsWith("/v1/")) finished[path.slice("/v1".length)] = item;
    else finished[path] = { servers: [{ url: "/" }], ...item };
  }
  return finished;
}

const publishExamples = {
  structured: {
    specversion: "1.0",
    id: "f3dce042-cd6e-4977-844d-05be8dce7cea",
    source: "urn:nld:oin:00000001823288444000:systeem:BRK",
    type: "nl.kadaster.brk.perceel-overgedragen",
    subject: "perceel-4711",
    time: "2026-11-23T09:14:00Z",
    data: { perceel: "4711" },
  },
};

const paths = {
  "/v1/feeds": {
    get: {
      operationId: "listFeeds",
      summary: "The feeds the token may read",
      tags: ["feeds"],
      responses: { "200": { description: "The feeds.", content: json(ref("FeedList")) }, ...AUTH_RESPONSES },
    },
  },
  "/v1/feeds/{feed}": {
    parameters: [FEED_PARAMETER],
    put: {
      operationId: "putFeed",
      summary: "Create a feed or replace its settings (grant admin)",
      tags: ["feeds"],
      requestBody: { required: false, content: json(ref("FeedSettings")) },
      responses: {
        "200": { description: "Replaced.", content: json(ref("Feed")) },
        "201": {
          description: "Created.",
          content: json(ref("Feed")),
          headers: { Location: { schema: { type: "string", format: "uri" } } },
        },
        "400": problemRef("BadRequest"),
        ...AUTH_RESPONSES,
        "409": problemResponse("Other requests kept creating and deleting the feed meanwhile; try again."),
        "415": problemRef("UnsupportedMediaType"),
      },
    },
    get: {
      operationId: "getFeed",
      summary: "A feed (grant read, or none on a public feed)",
      tags: ["feeds"],
      security: READ_SECURITY,
      responses: {
        "200": { description: "The feed.", content: json(ref("Feed")) },
        "404": problemRef("NotFound"),
        ...AUTH_RESPONSES,
      },
    },
    delete: {
      operationId: "deleteFeed",
      summary: "Delete a feed with its events and subscriptions (grant admin)",
      tags: ["feeds"],
      responses: { "204": { description: "Deleted." }, "404": problemRef("NotFound"), ...AUTH_RESPONSES },
    },
  },
  "/v1/feeds/{feed}/events": {
    parameters: [FEED_PARAMETER],
    post: {
      operationId: "publish",
      summary: "Publish events in any CloudEvents HTTP mode (grant publish)",
      description: `Structured (one event), batch (at most ${MAX_EVENTS_PER_REQUEST} events, appended all or none, in order) or binary (\`ce-*\` headers, the data as body). Idempotent on (source, id): a repeat answers its original sequence with 200. The events are durable before the answer.`,
      tags: ["events"],
      parameters: [
        {
          name: "ce-specversion",
          in: "header",
          required: false,
          description: "Binary mode: every attribute as a ce- header (ce-id, ce-source, ce-type, ...).",
          schema: { type: "string" },
        },
      ],
      requestBody: {
        required: true,
        content: {
          "application/cloudevents+json": {
            schema: ref("CloudEvent"),
            examples: { event: { value: publishExamples.structured } },
          },
          "application/cloudevents-batch+json": {
            schema: {
              type: "array",
              minItems: 1,
              maxItems: MAX_EVENTS_PER_REQUEST,
              items: ref("CloudEvent"),
            },
          },
          "*/*": {
            schema: { description: "Binary mode: the event's data, with its attributes in ce- headers." },
          },
        },
      },
      responses: {
        "200": {
          description: "Every event was stored before; nothing new was stored.",
          content: json(ref("PublishResult")),
        },
        "201": { description: "Stored.", content: json(ref("PublishResult")) },
        "400": problemRef("BadRequest"),
        ...AUTH_RESPONSES,
        "404": problemRef("NotFound"),
        "409": problemResponse("The same (source, id) is stored with other content."),
        "413": problemResponse(`An event over ${MAX_EVENT_BYTES} bytes, or a request over its limits.`),
        "415": problemResponse("Not in any CloudEvents HTTP mode."),
        "429": {
          ...problemResponse("Over the token's publish rate (SEINTJE_PUBLISH_RATE)."),
          headers: { "Retry-After": { schema: { type: "integer" } } },
          "x-seintje-extension": true,
        },
        "503": problemRef("Unavailable"),
      },
    },
    get: {
      operationId: "readFeed",
      summary:
        "Read the feed after a cursor: a page, a long-poll, or a Server-Sent Events stream (grant read)",
      description: [
        "With `Accept: text/event-stream` the answer is a stream: `retry:`, then one message per event (`id: <sequence>`, `data: <CloudEvent>`), then each new event as it is appended; with filters, bare `id:` messages move the cursor past skipped events. `event: reset` (with the problem) when retention passed the cursor; `event: token-expiring` before a stream's token expires. Browsers may pass the token as `access_token`.",
        `A page holds at most \`limit\` events and at most ${MAX_PAGE_BYTES} bytes of them (the first event always fits); \`next\` says where it stopped.`,
      ].join("\n\n"),
      tags: ["events"],
      security: READ_SECURITY,
      parameters: [
        {
          name: "after",
          in: "query",
          description: "The cursor; absent or 0: from the oldest kept event.",
          schema: ref("Sequence"),
        },
        {
          name: "limit",
          in: "query",
          schema: { type: "integer", minimum: 1, maximum: PAGE_LIMIT.max, default: PAGE_LIMIT.default },
        },
        {
          name: "wait",
          in: "query",
          description: "Seconds to hold the request while nothing is newer than `after` (long-poll).",
          schema: { type: "number", minimum: 0, maximum: MAX_WAIT_SECONDS, default: 0 },
        },
        ...READ_FILTERS,
        {
          name: "Last-Event-ID",
          in: "header",
          description: "Streams: the cursor of a reconnecting EventSource; wins over `after`.",
          schema: ref("Sequence"),
        },
        {
          name: "access_token",
          in: "query",
          description:
            "Streams only: the bearer token, for browsers' EventSource, which cannot send headers.",
          schema: { type: "string" },
        },
        IF_NONE_MATCH,
      ],
      responses: {
        "200": {
          description: "A page of events, or the stream.",
          headers: {
            Link: { schema: { type: "string" }, description: 'The next page: <...>; rel="next".' },
            ...CACHE_HEADERS,
          },
          content: {
            "application/json": { schema: ref("Page") },
            "text/event-stream": { schema: { type: "string", description: "Server-Sent Events." } },
          },
        },
        "400": {
          ...problemResponse("A malformed parameter, or (`cursor-ahead`) a cursor beyond the feed's head."),
        },
        ...AUTH_RESPONSES,
        "404": problemRef("NotFound"),
        "304": NOT_MODIFIED,
        "410": problemResponse("Retention removed events after the cursor; `oldest` says where to resume."),
        "503": problemRef("Unavailable"),
      },
    },
  },
  "/v1/feeds/{feed}/events/{sequence}": {
    parameters: [FEED_PARAMETER, { name: "sequence", in: "path", required: true, schema: ref("Sequence") }],
    get: {
      operationId: "readEvent",
      summary: "One event (grant read, or none on a public feed)",
      tags: ["events"],
      security: READ_SECURITY,
      parameters: [IF_NONE_MATCH],
      responses: {
        "200": { description: "The event.", content: json(ref("StoredEvent")), headers: CACHE_HEADERS },
        "304": NOT_MODIFIED,
        "404": problemRef("NotFound"),
        ...AUTH_RESPONSES,
      },
    },
  },
  "/v1/subscriptions": {
    post: {
      operationId: "createSubscription",
      summary: "Subscribe a callback to wake-up pings (grants subscribe and read on the feed)",
      description:
        "The callback must pass the CloudEvents webhook handshake (OPTIONS with WebHook-Request-Origin) and the address guard; else 400 and nothing is stored.",
      tags: ["subscriptions"],
      requestBody: { required: true, content: json(ref("NewSubscription")) },
      responses: {
        "201": {
          description: "Created; the answer holds the secret, this once.",
          content: json(ref("Subscription")),
          headers: { Location: { schema: { type: "string", format: "uri" } } },
        },
        "400": problemRef("BadRequest"),
        ...AUTH_RESPONSES,
        "404": problemRef("NotFound"),
        "415": problemRef("UnsupportedMediaType"),
      },
    },
    get: {
      operationId: "listSubscriptions",
      summary: "The subscriptions the token's sub created (all of a feed's for its admin)",
      tags: ["subscriptions"],
      parameters: [
        {
          name: "limit",
          in: "query",
          schema: {
            type: "integer",
            minimum: 1,
            maximum: LIST_LIMITS.subscriptions.max,
            default: LIST_LIMITS.subscriptions.default,
          },
        },
        {
          name: "after",
          in: "query",
          description: "A subscription id: the page after it.",
          schema: { type: "string" },
        },
      ],
      responses: {
        "200": { description: "A page.", content: json(ref("SubscriptionList")) },
        "400": problemRef("BadRequest"),
        ...AUTH_RESPONSES,
      },
    },
  },
  "/v1/subscriptions/{id}": {
    parameters: [SUBSCRIPTION_PARAMETER],
    get: {
      operationId: "getSubscription",
      summary: "A subscription",
      tags: ["subscriptions"],
      responses: {
        "200": { description: "The subscription.", content: json(ref("Subscription")) },
        "404": problemRef("NotFound"),
        ...AUTH_RESPONSES,
      },
    },
    patch: {
      operationId: "changeSubscription",
      summary: 'Change url, filters or description, or re-enable with status "active"',
      tags: ["subscriptions"],
      requestBody: {
        required: true,
        content: {
          ...json(ref("SubscriptionChanges")),
          "application/merge-patch+json": { schema: ref("SubscriptionChanges") },
        },
      },
      responses: {
        "200": { description: "Changed.", content: json(ref("Subscription")) },
        "400": problemRef("BadRequest"),
        "404": problemRef("NotFound"),
        ...AUTH_RESPONSES,
        "415": problemRef("UnsupportedMediaType"),
      },
    },
    delete: {
      operationId: "deleteSubscription",
      summary: "Delete a subscription",
      tags: ["subscriptions"],
      responses: { "204": { description: "Deleted." }, "404": problemRef("NotFound"), ...AUTH_RESPONSES },
    },
  },
  "/v1/subscriptions/{id}/test": {
    parameters: [SUBSCRIPTION_PARAMETER],
    post: {
      operationId: "testSubscription",
      summary: "Send one test ping now (data.test: true); it acknowledges nothing",
      tags: ["subscriptions"],
      responses: {
        "200": { description: "The attempt.", content: json(ref("Attempt")) },
        "400": problemRef("BadRequest"),
        "404": problemRef("NotFound"),
        ...AUTH_RESPONSES,
      },
    },
  },
  "/v1/subscriptions/{id}/attempts": {
    parameters: [SUBSCRIPTION_PARAMETER],
    get: {
      operationId: "listAttempts",
      summary: "Delivery attempts, newest first",
      tags: ["subscriptions"],
      parameters: [
        {
          name: "limit",
          in: "query",
          schema: {
            type: "integer",
            minimum: 1,
            maximum: LIST_LIMITS.attempts.max,
            default: LIST_LIMITS.attempts.default,
          },
        },
        {
          name: "before",
          in: "query",
          description: "An attempt id: the page before it.",
          schema: { type: "string" },
        },
      ],
      responses: {
        "200": { description: "A page.", content: json(ref("AttemptList")) },
        "400": problemRef("BadRequest"),
        "404": problemRef("NotFound"),
        ...AUTH_RESPONSES,
      },
    },
  },
  "/v1/subscriptions/{id}/retry": {
    parameters: [SUBSCRIPTION_PARAMETER],
    post: {
      operationId: "retryPing",
      summary: "Deliver the pending ping now, skipping the backoff (grant subscribe)",
      description:
        "The ping that waits for its retry, or a new one when events arrived beyond acked. The attempt counts like any other: an acknowledgement moves acked, a failure extends the streak.",
      tags: ["subscriptions"],
      responses: {
        "200": { description: "The attempt.", content: json(ref("Attempt")) },
        "400": problemRef("BadRequest"),
        "404": problemRef("NotFound"),
        "409": problemResponse(
          "Nothing lies beyond acked, the subscription is disabled, or a delivery of it is in flight.",
        ),
        ...AUTH_RESPONSES,
      },
    },
  },
  "/v1/subscriptions/{id}/rotate-secret": {
    parameters: [SUBSCRIPTION_PARAMETER],
    post: {
      operationId: "rotateSecret",
      summary: "A new signing secret; the old one keeps signing beside it for 24 hours",
      tags: ["subscriptions"],
      responses: {
        "200": {
          description: "The new secret.",
          content: json({
            oneOf: [
              {
                type: "object",
                required: ["secret"],
                properties: { secret: { type: "string", pattern: "^whsec_" } },
                additionalProperties: false,
              },
              {
                type: "object",
                required: ["publicKey"],
                properties: { publicKey: { type: "string", pattern: "^whpk_" } },
                additionalProperties: false,
              },
            ],
          }),
        },
        "400": problemRef("BadRequest"),
        "404": problemRef("NotFound"),
        ...AUTH_RESPONSES,
      },
    },
  },
  "/v1/feeds/{feed}/types": {
    parameters: [FEED_PARAMETER],
    get: {
      operationId: "listTypes",
      summary: "The feed's declared types and the types of events it holds (grant read)",
      tags: ["types"],
      security: READ_SECURITY,
      responses: {
        "200": { description: "The types, by name.", content: json(ref("EventTypeList")) },
        "404": problemRef("NotFound"),
        ...AUTH_RESPONSES,
      },
    },
  },
  "/v1/feeds/{feed}/types/{type}": {
    parameters: [FEED_PARAMETER, TYPE_PARAMETER],
    put: {
      operationId: "putType",
      summary: "Declare an event type or replace its declaration (grant admin)",
      description:
        "The next publish to the feed applies it: events of the type must have JSON data that matches the schema.",
      tags: ["types"],
      requestBody: { required: false, content: json(ref("EventTypeDeclaration")) },
      responses: {
        "200": { description: "Replaced.", content: json(ref("EventType")) },
        "201": {
          description: "Declared.",
          content: json(ref("EventType")),
          headers: { Location: { schema: { type: "string", format: "uri" } } },
        },
        "404": problemRef("NotFound"),
        ...AUTH_RESPONSES,
        "413": problemResponse(`A declaration over ${MAX_DECLARATION_BYTES} bytes.`),
        "415": problemRef("UnsupportedMediaType"),
      },
    },
    get: {
      operationId: "getType",
      summary: "An event type, declared or seen (grant read)",
      tags: ["types"],
      security: READ_SECURITY,
      responses: {
        "200": { description: "The type.", content: json(ref("EventType")) },
        "404": problemRef("NotFound"),
        ...AUTH_RESPONSES,
      },
    },
    delete: {
      operationId: "deleteType",
      summary: "Remove a type's declaration; the feed's events of it stay (grant admin)",
      tags: ["types"],
      responses: { "204": { description: "Removed." }, "404": problemRef("NotFound"), ...AUTH_RESPONSES },
    },
  },
  "/v1/feeds/{feed}/asyncapi.json": {
    parameters: [FEED_PARAMETER],
    get: {
      operationId: "feedAsyncapi",
      summary: "The AsyncAPI 3.0 document of one feed, with a message per declared type (grant read)",
      tags: ["types"],
      security: READ_SECURITY,
      responses: {
        "200": { description: "AsyncAPI 3.0.", content: json({ type: "object" }) },
        "404": problemRef("NotFound"),
        ...AUTH_RESPONSES,
      },
    },
  },
  "/v1/asyncapi.json": {
    get: {
      operationId: "asyncapi",
      summary: "The AsyncAPI 3.0 document of the stream, the pull feed and the ping, for any feed",
      tags: ["operations"],
      security: [],
      responses: { "200": { description: "AsyncAPI 3.0.", content: json({ type: "object" }) } },
    },
  },
  "/v1/schemas/feed-updated/v1.json": {
    get: {
      operationId: "pingDataSchema",
      summary: "The JSON Schema (draft 2020-12) of a ping's data, named by each ping's dataschema",
      tags: ["subscriptions"],
      security: [],
      responses: { "200": { description: "A JSON Schema.", content: json({ type: "object" }) } },
    },
  },
  "/.well-known/jwks.json": {
    get: {
      operationId: "jwks",
      summary: "The public keys of the service's signing keys (JWK Set): they verify the JWT of pings",
      tags: ["operations"],
      security: [],
      responses: {
        "200": {
          description: "A JWK Set (RFC 7517).",
          content: { "application/jwk-set+json": { schema: { type: "object", required: ["keys"] } } },
        },
      },
    },
  },
  "/v1/openapi.json": {
    get: {
      operationId: "openapi",
      summary: "This document",
      tags: ["operations"],
      security: [],
      responses: { "200": { description: "OpenAPI 3.1.", content: json({ type: "object" }) } },
    },
  },
  "/healthz": {
    get: {
      operationId: "health",
      summary: "The process is alive",
      tags: ["operations"],
      security: [],
      responses: { "200": { description: "Alive.", content: json(ref("Health")) } },
    },
  },
  "/readyz": {
    get: {
      operationId: "ready",
      summary: "The database answers and its schema is current",
      tags: ["operations"],
      security: [],
      responses: {
        "200": { description: "Ready.", content: json(ref("Health")) },
        "503": problemRef("Unavailable"),
      },
    },
  },
  "/metrics": {
    get: {
      operationId: "metrics",
      summary: "Prometheus metrics (open unless SEINTJE_METRICS says otherwise)",
      tags: ["operations"],
      security: [{}, { bearer: [] }],
      responses: {
        "200": {
          description: "Prometheus text format 0.0.4.",
          content: { "text/plain": { schema: { type: "string" } } },
        },
        ...AUTH_RESPONSES,
      },
    },
  },
};

const webhooks = {
  feedUpdated: {
    post: {
      operationId: "ping",
      summary: "A wake-up ping: the feed has matching events after the subscription's cursor",
      description:
        "Sent to the subscription's url, signed per Standard Webhooks. Any 2xx acknowledges (acked becomes data.head); 410 disables the subscription; anything else is retried with backoff, honouring Retry-After on 429 and 503.",
      parameters: [
        { name: "webhook-id", in: "header", required: true, schema: { type: "string" } },
        {
          name: "webhook-timestamp",
          in: "header",
          required: true,
          schema: { type: "string", pattern: "^[0-9]+$" },
        },
        {
          name: "webhook-signature",
          in: "header",
          required: true,
          description:
            "v1,<base64 HMAC-SHA256 over id.timestamp.body> (v1) or v1a,<base64 Ed25519 signature over id.timestamp.body> (v1a); two, space-separated, during a rotation.",
          schema: { type: "string" },
        },
        {
          name: "Authorization",
          in: "header",
          required: false,
          description:
            "When the subscription asks for it: Bearer <JWT> (jwt; verify with /.well-known/jwks.json, aud the callback URL, sha256 the body's) or the static value as given.",
          schema: { type: "string" },
        },
        { name: "WebHook-Request-Origin", in: "header", required: true, schema: { type: "string" } },
      ],
      requestBody: { required: true, content: { "application/cloudevents+json": { schema: ref("Ping") } } },
      responses: {
        "2XX": { description: "Acknowledged." },
        "410": { description: "Gone: the subscription is disabled." },
      },
    },
  },
};

export function openApiDocument() {
  return {
    openapi: "3.1.0",
    info: {
      title: "seintje",
      version: API_VERSION,
      summary: "Notification feeds for CloudEvents: pull, stream and wake-up pings on one cursor.",
      license: { name: "EUPL-1.2", identifier: "EUPL-1.2" },
      // The software has no home on the web yet; an organisation that runs seintje is the one to contact, and a
      // gateway in front may put its own contact here.
      contact: { name: "seintje" },
    },
    servers: [{ url: "/v1" }],
    security: [{ bearer: [] }],
    tags: [
      { name: "feeds" },
      { name: "events", description: "Publishing, the pull feed, and the stream." },
      { name: "types", description: "The catalogue of event types, and the AsyncAPI document of a feed." },
      { name: "subscriptions", description: "Webhook wake-up pings." },
      { name: "operations" },
    ],
    paths: finishPaths(paths),
    webhooks,
    components: {
      schemas: SCHEMAS,
      responses,
      headers: {
        "API-Version": {
          description: "The version of the API that answered (semantic versioning); on every answer.",
          required: true,
          schema: { type: "string", pattern: "^[0-9]+\\.[0-9]+\\.[0-9]+$" },
        },
      },
      securitySchemes: {
        bearer: {
          type: "http",
          scheme: "bearer",
          bearerFormat: "JWT",
          description:
            "Grants in the scope claim: read, publish, subscribe, admin, each optionally :FEEDGLOB (read:brk-*).",
        },
      },
    },
  };
}

/**
 * The JSON Schema of a ping's `data`, as a document of its own: the OpenAPI document's, with the sequences it
 * refers to written in.
 */
export function pingDataSchema(publicUrl: string): Record<string, unknown> {
  const inline = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(inline);
    if (typeof value !== "object" || value === null) return value;
    const object = value as Record<string, unknown>;
    if (object.$ref === "#/components/schemas/Sequence") {
      const { $ref: _ref, ...rest } = object;
      return { ...SEQUENCE, ...rest };
    }
    return Object.fromEntries(Object.entries(object).map(([key, member]) => [key, inline(member)]));
  };
  return {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    $id: `${publicUrl}${PING_DATA_SCHEMA_PATH}`,
    title: `The data of a ${PING_TYPE} ping, version 1`,
    ...(inline(SCHEMAS.Ping.properties.data) as Record<string, unknown>),
  };
}

/** `GET /v1/openapi.json`: open to all, like the contract says. */
export function openApiRouter(services: Services): Router {
  const router = new Router();
  const text = JSON.stringify(openApiDocument());
  router.get(PING_DATA_SCHEMA_PATH, (ctx) => {
    ctx.set("Cache-Control", "public, max-age=86400");
    ctx.body = pingDataSchema(services.publicUrl());
  });
  router.get("/v1/openapi.json", (ctx) => {
    ctx.set("Cache-Control", "public, max-age=300");
    ctx.type = "application/json";
    ctx.body = text;
  });
  return router;
}
