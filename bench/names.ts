/** The benchmark scenarios by name, in the order they run; bench/run.ts holds them, the test checks them. */
export const SCENARIO_NAMES = [
  "publish-single",
  "publish-schema",
  "publish-batch",
  "read-sequential",
  "read-depth",
  "cached-reads",
  "sse-fanout",
  "sse-memory",
  "longpoll-fanout",
  "ping-fanout",
  "ping-throughput",
  "ping-coalescing",
  "pg-publish",
  "pg-cross-node",
] as const;
