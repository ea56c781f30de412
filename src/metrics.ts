import type { Knex } from "knex";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/**
 * Prometheus metrics (prom-client), names prefixed `seintje_`. Each service has a registry of its own, so that
 * several services in one process (the tests) count apart; the default process metrics (CPU, memory, event loop,
 * GC) describe the process and are collected once per process.
 *
 * Label values are bounded: `feed` is the name of a feed that exists (a publish to a feed that does not exist is
 * counted under `feed=""`, since anyone with a publish grant could otherwise mint series), `route` is the router's
 * template (never the raw path), and a deleted feed's series are removed with it.
 */

let processRegistry: Registry | undefined;

const TOTAL_NAMED_GAUGES = [
  "nodejs_active_handles_total",
  "nodejs_active_requests_total",
  "nodejs_active_resources_total",
];

function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
    // Gauges may not end in _total (OpenMetrics; `promtool check metrics` refuses them). prom-client names three
    // that way; each is the sum of its gauge by type (nodejs_active_handles{type=...}), which stays.
    for (const name of TOTAL_NAMED_GAUGES) processRegistry.removeSingleMetric(name);
  }
  return processRegistry;
}

/** Why a publish request was refused, as a label: the problem's kind, from a fixed list. */
export type RejectReason =
  | "validation"
  | "conflict"
  | "too-large"
  | "feed-not-found"
  | "unsupported-media-type"
  | "rate-limited"
  | "unavailable"
  | "other";

/** What became of one ping attempt. */
export type PingOutcome = "delivered" | "failed" | "timeout" | "network-error" | "handed-back";

/** Seconds; from 1 ms (a commit on a fast disk) to 60 s (a long-poll, a slow callback). */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const QUERY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5];

export interface MetricSources {
  openStreams(): number;
  waitingLongPolls(): number;
  /** The caps on open streams and waiting long-polls (SEINTJE_MAX_STREAMS, SEINTJE_MAX_LONGPOLLS). */
  limits: { streams: number; longpolls: number };
  /** Whether writes fail for want of space now. */
  storageFull(): boolean;
  /** Subscriptions per status, read from the database at scrape time. */
  subscriptionsByStatus(): Promise<Record<string, number>>;
}

/** Sources with nothing to report: for a part of the service run on its own (the append probe, tests). */
export const NO_SOURCES: MetricSources = {
  openStreams: () => 0,
  waitingLongPolls: () => 0,
  limits: { streams: 0, longpolls: 0 },
  storageFull: () => false,
  subscriptionsByStatus: async () => ({}),
};

export class Metrics {
  readonly registry = new Registry();

  readonly eventsAppended = new Counter({
    name: "seintje_events_appended_total",
    help: "Events appended to a feed (repeats of stored events not counted).",
    labelNames: ["feed"] as const,
    registers: [this.registry],
  });

  readonly eventsRejected = new Counter({
    name: "seintje_events_rejected_total",
    help: "Events in publish requests that were refused, by feed and reason.",
    labelNames: ["feed", "reason"] as const,
    registers: [this.registry],
  });

  readonly publishDuration = new Histogram({
    name: "seintje_publish_duration_seconds",
    help: "Time from receiving a publish request to acknowledging it (durable), for acknowledged requests.",
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly groupCommits = new Histogram({
    name: "seintje_group_commit_requests",
    help: "Publish requests committed together in one transaction (one fsync).",
    buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500],
    registers: [this.registry],
  });

  readonly groupCommitDuration = new Histogram({
    name: "seintje_group_commit_duration_seconds",
    help: "Time one group-commit transaction took, commit included.",
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly pagesServed = new Counter({
    name: "seintje_pages_served_total",
    help: "Pages of the pull feed served; `waited` is true for long-polls.",
    labelNames: ["waited"] as const,
    registers: [this.registry],
  });

  readonly eventsServed = new Counter({
    name: "seintje_events_served_total",
    help: "Events sent to consumers, by channel (pull or stream).",
    labelNames: ["channel"] as const,
    registers: [this.registry],
  });

  readonly pings = new Counter({
    name: "seintje_pings_total",
    help: "Ping attempts by outcome: delivered (2xx), failed (other status), timeout, network-error, handed-back (at shutdown).",
    labelNames: ["outcome"] as const,
    registers: [this.registry],
  });

  readonly pingDuration = new Histogram({
    name: "seintje_ping_duration_seconds",
    help: "Time a callback took to answer a ping (or to fail).",
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly retentionDeleted = new Counter({
    name: "seintje_retention_deleted_events_total",
    help: "Events removed by retention, by feed.",
    labelNames: ["feed"] as const,
    registers: [this.registry],
  });

  readonly refused = new Counter({
    name: "seintje_requests_refused_total",
    help: "Requests refused by a limit: streams, longpolls (503) and publish-rate (429).",
    labelNames: ["limit"] as const,
    registers: [this.registry],
  });

  readonly httpRequests = new Counter({
    name: "seintje_http_requests_total",
    help: "HTTP requests answered, by method, route template and status.",
    labelNames: ["method", "route", "status"] as const,
    registers: [this.registry],
  });

  readonly httpDuration = new Histogram({
    name: "seintje_http_request_duration_seconds",
    help: "Time to answer an HTTP request (streams excluded: they last as long as the client stays).",
    labelNames: ["method", "route"] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly queryDuration = new Histogram({
    name: "seintje_db_query_duration_seconds",
    help: "Database query time, by connection role (writer or reader) and kind of statement.",
    labelNames: ["role", "operation"] as const,
    buckets: QUERY_BUCKETS,
    registers: [this.registry],
  });

  readonly queryErrors = new Counter({
    name: "seintje_db_query_errors_total",
    help: "Database queries that failed, by connection role.",
    labelNames: ["role"] as const,
    registers: [this.registry],
  });

  constructor(sources: MetricSources) {
    new Gauge({
      name: "seintje_streams_open",
      help: "Server-Sent Events streams open now.",
      registers: [this.registry],
      collect() {
        this.set(sources.openStreams());
      },
    });
    new Gauge({
      name: "seintje_longpolls_waiting",
      help: "Long-poll requests (wait > 0) being held now.",
      registers: [this.registry],
      collect() {
        this.set(sources.waitingLongPolls());
      },
    });
    new Gauge({
      name: "seintje_limit",
      help: "The configured caps: open streams and waiting long-polls per process (0: none held at all).",
      labelNames: ["limit"] as const,
      registers: [this.registry],
      collect() {
        this.set({ limit: "streams" }, sources.limits.streams);
        this.set({ limit: "longpolls" }, sources.limits.longpolls);
      },
    });
    new Gauge({
      name: "seintje_storage_full",
      help: "1 while writes fail because storage is full (writes answer 507, /readyz 503), else 0.",
      registers: [this.registry],
      collect() {
        this.set(sources.storageFull() ? 1 : 0);
      },
    });
    new Gauge({
      name: "seintje_subscriptions",
      help: "Webhook subscriptions by status, as stored.",
      labelNames: ["status"] as const,
      registers: [this.registry],
      async collect() {
        const counts = await sources.subscriptionsByStatus();
        for (const status of ["active", "failing", "disabled"]) this.set({ status }, counts[status] ?? 0);
      },
    });
  }

  /** Forgets a deleted feed's series. */
  feedRemoved(feed: string): void {
    this.eventsAppended.remove({ feed });
    this.retentionDeleted.remove({ feed });
    for (const reason of REJECT_REASONS) this.eventsRejected.remove({ feed, reason });
  }

  /** Times every query a knex instance runs (its transactions included). */
  watchQueries(db: Knex, role: "writer" | "reader" | "pool"): void {
    const started = new Map<string, { at: bigint; operation: string }>();
    db.on("query", (query: { __knexQueryUid?: string; method?: string; sql?: string }) => {
      // BEGIN and COMMIT come without an id and without a response event: transactions are timed whole by
      // seintje_group_commit_duration_seconds instead.
      if (query.__knexQueryUid === undefined) return;
      started.set(query.__knexQueryUid, { at: process.hrtime.bigint(), operation: operationOf(query) });
    });
    const finish = (query: { __knexQueryUid?: string }, failed: boolean) => {
      const uid = query.__knexQueryUid;
      if (uid === undefined) return;
      const start = started.get(uid);
      if (!start) return;
      started.delete(uid);
      if (failed) this.queryErrors.inc({ role });
      else
        this.queryDuration.observe(
          { role, operation: start.operation },
          Number(process.hrtime.bigint() - start.at) / 1e9,
        );
    };
    db.on("query-response", (_response: unknown, query: { __knexQueryUid?: string }) => finish(query, false));
    db.on("query-error", (_error: unknown, query: { __knexQueryUid?: string }) => finish(query, true));
  }

  /** The text a scrape gets: this service's metrics and the process's. */
  async text(): Promise<string> {
    const own = await this.registry.metrics();
    return `${own}\n${await processMetrics().metrics()}`;
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

const REJECT_REASONS: readonly RejectReason[] = [
  "validation",
  "conflict",
  "too-large",
  "feed-not-found",
  "unsupported-media-type",
  "rate-limited",
  "unavailable",
  "other",
];

const OPERATIONS = new Set(["select", "insert", "update", "delete"]);

function operationOf(query: { method?: string; sql?: string }): string {
  const method = query.method === "del" ? "delete" : query.method === "first" ? "select" : query.method;
  if (method !== undefined && OPERATIONS.has(method)) return method;
  const sql = query.sql ?? "";
  const verb = /^\s*(\w+)/.exec(sql)?.[1]?.toLowerCase();
  // A statement with WITH clauses is its first clause that writes, opening a clause (the append's insert) or
  // following the clauses (the dispatcher's update from values), or else a select.
  if (verb === "with")
    return /(?:\bas\s*\(|\))\s*(insert|update|delete)\b/i.exec(sql)?.[1]?.toLowerCase() ?? "select";
  return verb !== undefined && OPERATIONS.has(verb) ? verb : "other";
}
