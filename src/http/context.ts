import type { Tracer } from "@opentelemetry/api";
import type { JWK } from "jose";
import type { TokenVerifier } from "../auth/verifier.js";
import type { WriteHealth } from "../db/failures.js";
import type { Appender } from "../log/appender.js";
import type { Feeds } from "../log/feeds.js";
import type { FeedReader } from "../log/reader.js";
import type { EventTypes } from "../log/types.js";
import type { Logger } from "../logger.js";
import type { Metrics } from "../metrics.js";
import type { StreamStats } from "../stream/connection.js";
import type { StreamHub } from "../stream/hub.js";
import type { Dispatcher } from "../webhooks/dispatcher.js";
import type { CallbackChecker } from "../webhooks/registration.js";
import type { Subscriptions } from "../webhooks/subscriptions.js";
import type { Admission, PublishRateLimit } from "./limits.js";

/** What the subscription endpoints use. */
export interface WebhookServices {
  dispatcher: Dispatcher;
  callbacks: CallbackChecker;
  subscriptions: Subscriptions;
}

/**
 * What the HTTP layer is given: the domain's entry points, never storage itself (every read and write goes
 * through the domain) and never Koa state shared between requests.
 */
export interface Services {
  feeds: Feeds;
  types: EventTypes;
  reader: FeedReader;
  /** Whether the database answers and which migrations it lacks, for /readyz. */
  database: { ping(): Promise<void>; pendingMigrations(): Promise<string[]> };
  /** Whether writes fail for want of space, for /readyz and the problems answered. */
  writeHealth: WriteHealth;
  appender: Appender;
  logger: Logger;
  /** Undefined when authentication is off. */
  verifier: TokenVerifier | undefined;
  /** Base of absolute URLs, without a trailing slash; a function because it is known only after listening. */
  publicUrl(): string;
  maxWaitSeconds: number;
  hub: StreamHub;
  /** The open streams, each with its live figures. */
  streams: Set<StreamStats>;
  keepaliveSeconds: number;
  streamRetryMs: number;
  corsOrigins: string[];
  /** Aborted when the service begins to stop, so that held requests answer at once. */
  stopping: AbortSignal;
  webhooks: WebhookServices;
  metrics: Metrics;
  /** Who may read /metrics (SEINTJE_METRICS). */
  metricsAccess: "open" | "token" | "off";
  admission: Admission;
  publishRate: PublishRateLimit;
  maxRequestBytes: number;
  /** Spans of requests (a no-op tracer when tracing is off). */
  tracer: Tracer;
  /** The public keys of the service's signing keys, as JWKs, for /.well-known/jwks.json. */
  jwks(): JWK[];
}
