/** What the seintje HTTP API (version 1) sends and takes, as the SDK sees it. */

/** A CloudEvent to publish, in structured form. `specversion` and `id` are filled in when absent. */
export interface CloudEventInput {
  specversion?: "1.0";
  id?: string;
  source: string;
  type: string;
  subject?: string;
  time?: string;
  datacontenttype?: string;
  dataschema?: string;
  data?: unknown;
  data_base64?: string;
  /** Extension attributes. */
  [attribute: string]: unknown;
}

/** A stored event as a feed serves it: the published CloudEvent with the feed's `sequence`. */
export interface FeedEvent {
  specversion: "1.0";
  id: string;
  source: string;
  type: string;
  subject?: string;
  time?: string;
  datacontenttype?: string;
  data?: unknown;
  data_base64?: string;
  /** The feed's position of this event: the cursor to resume after it. */
  sequence: string;
  sequencetype: "Integer";
  [attribute: string]: unknown;
}

export interface Pointed {
  pointer: string;
  detail: string;
}

export interface PublishResult {
  /** True when every event had been stored before (the server answered 200): nothing new was stored. */
  repeat: boolean;
  events: Array<{ id: string; source: string; sequence: string }>;
  warnings: Pointed[];
}

export interface FeedPage {
  events: FeedEvent[];
  /** Pass as `after` to read on. */
  next: string;
  head: string;
}

export interface Retention {
  /** An ISO 8601 duration, e.g. P30D. */
  maxAge: string | null;
  maxEvents: number | null;
}

export interface Feed {
  name: string;
  description: string | null;
  head: string;
  oldest: string | null;
  retention: Retention;
  /** `open`: events of any type are taken; `declared`: only events of the feed's declared types. */
  typePolicy: TypePolicy;
  /** Anyone may read the feed's events, types and documents without a token. */
  public: boolean;
  createdAt: string;
}

export type TypePolicy = "open" | "declared";

export interface FeedSettings {
  description?: string | null;
  retention?: Partial<Retention> | null;
  typePolicy?: TypePolicy | null;
  public?: boolean | null;
}

/**
 * An event type of a feed: declared by an admin, or only seen (then `declared` is false and the members a
 * declaration sets are null). `count` is how many events of it the feed holds now.
 */
export interface EventType {
  type: string;
  declared: boolean;
  description: string | null;
  /** A JSON Schema (draft 2020-12) that the `data` of every event of this type matches. */
  schema: unknown;
  example: unknown;
  deprecated: boolean | null;
  count: number;
  lastPublished: string | null;
  createdAt: string | null;
  updatedAt: string | null;
}

/** The body of `PUT /v1/feeds/{feed}/types/{type}`; an absent or null member means none. */
export interface EventTypeDeclaration {
  description?: string | null;
  schema?: unknown;
  example?: unknown;
  deprecated?: boolean | null;
}

export type SubscriptionStatus = "active" | "failing" | "disabled";

export interface Attempt {
  id: string;
  pingId: string;
  at: string;
  head: string;
  statusCode: number | null;
  durationMs: number;
  error: string | null;
  test: boolean;
}

export interface Subscription {
  id: string;
  feed: string;
  url: string;
  types: string[];
  subject: string | null;
  description: string | null;
  status: SubscriptionStatus;
  disabledReason: string | null;
  acked: string;
  head: string;
  lastAttempt: Attempt | null;
  failingSince: string | null;
  /** How pings are signed: `v1` (HMAC-SHA256 with the `whsec_` secret) or `v1a` (Ed25519). */
  signature: "v1" | "v1a";
  /** A `v1a` subscription's public key, `whpk_` + base64 of its 32 bytes, to verify pings with; null for `v1`. */
  publicKey: string | null;
  /** What each ping's Authorization header carries (a static value is never shown again). */
  authorization: { type: "jwt" | "static" } | null;
  createdAt: string;
  /** Only in the answer to a create: the signing secret, shown this once. */
  secret?: string;
}

export interface NewSubscription {
  feed: string;
  url: string;
  /** Prefixes of event types. */
  types?: string[];
  subject?: string;
  description?: string;
  /** The sequence to start after; the feed's head when absent. */
  after?: string;
  /** `v1` (the default) or `v1a`. */
  signature?: "v1" | "v1a";
  authorization?: PingAuthorizationInput;
}

/** What each ping's Authorization header carries: a JWT signed by the service, a static value, or nothing. */
export type PingAuthorizationInput = { type: "jwt" } | { type: "static"; value: string } | null;

export interface SubscriptionChanges {
  url?: string;
  types?: string[];
  subject?: string | null;
  description?: string | null;
  status?: "active" | "disabled";
  signature?: "v1" | "v1a";
  authorization?: PingAuthorizationInput;
}

/** The `data` of a wake-up ping. */
export interface PingData {
  feed: string;
  subscription: string;
  /** The subscription's cursor: read the feed after it. */
  after: string;
  /** The newest matching sequence. */
  head: string;
  /** The feed URL to read next, with `after` and the subscription's filters. */
  url: string;
  events: Array<{ sequence: string; id: string; type: string; subject: string | null }>;
  truncated: boolean;
  /** Retention removed events after `after` before the subscriber was told of them; `oldest` is kept. */
  cursorGone?: true;
  oldest?: string;
  test?: true;
}

/** A wake-up ping: a CloudEvent of type `nl.seintje.feed.updated`. */
export interface Ping {
  specversion: "1.0";
  id: string;
  source: string;
  type: "nl.seintje.feed.updated";
  time: string;
  subject: string;
  datacontenttype: "application/json";
  data: PingData;
}

/** An RFC 9457 problem document. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  errors?: Pointed[];
  [extension: string]: unknown;
}
