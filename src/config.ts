import { accessSync, constants, readFileSync } from "node:fs";
import { hostname } from "node:os";
import { resolve } from "node:path";
import type { DatabaseConfig } from "./db/database.js";
import { MAX_REQUEST_BYTES } from "./events/encoding.js";
import type { KeySource } from "./files.js";
import { MAX_WAIT_SECONDS } from "./log/bounds.js";
import { type Duration, durationProblem, parseDuration } from "./log/duration.js";
import { type TracingConfig, tracingConfig } from "./tracing-config.js";
import { parseAllowEntry } from "./webhooks/guard.js";

/**
 * Configuration: defaults < environment, validated once at start.
 *
 * Every option is declared once in OPTIONS with its default and a one-line why: the parser takes its defaults from
 * there (`text`), and `seintje help` and the tables in the docs show the same entries (a test keeps them equal).
 * A bad value stops the service with a message naming the variable.
 */

export type Database = DatabaseConfig;

export interface Config {
  host: string;
  port: number;
  database: Database;
  dataDir: string;
  /** Where the two keys come from; each empty means the data dir. */
  keys: {
    secrets: KeySource;
    signing: KeySource;
    /** The signing key that the current one replaced: it verifies tokens for `signingOverlap` more. */
    previousSigning: KeySource;
    signingOverlap: Duration;
  };
  /** Base of absolute URLs; undefined means http://<the address actually bound>. */
  publicUrl: string | undefined;
  source: string;
  autoCreateFeeds: boolean;
  retentionIntervalSeconds: number;
  logLevel: string;
  auth: AuthConfig;
  /** Seconds of silence before a stream sends a keep-alive comment (or a progress id). */
  keepaliveSeconds: number;
  /** The `retry:` a stream sends: how long a client waits before it reconnects. */
  streamRetryMs: number;
  /** Origins whose pages may open streams (CORS); `*` for any. */
  corsOrigins: string[];
  /** Longest `wait` a long-poll may ask for, in seconds (the contract says 60). */
  maxWaitSeconds: number;
  /** Tracing, from the standard OpenTelemetry variables (`OTEL_*`; see tracing.ts). */
  tracing: TracingConfig;
  webhooks: WebhookConfig;
  limits: Limits;
  /** Who may read /metrics: anyone, only tokens with the unrestricted admin grant, or nobody (404). */
  metrics: "open" | "token" | "off";
  /** How long in-flight requests and pings get to finish at shutdown. */
  shutdownTimeoutMs: number;
}

export interface Limits {
  /** Largest publish request body in bytes. */
  maxRequestBytes: number;
  /** Milliseconds a client may take to send a request's headers, and the whole request. */
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  /** Open streams and held long-polls per process; beyond them, 503. */
  maxStreams: number;
  maxLongPolls: number;
  /** Publish requests per second per token subject; 0 for no limit. */
  publishRate: number;
}

export interface WebhookConfig {
  /** Whether callbacks may use plain `http:`. */
  allowHttp: boolean;
  /** Addresses and CIDR ranges callbacks may reach although they are internal. */
  allow: string[];
  /** Delays between retries in milliseconds, before jitter; the last repeats. */
  retryScheduleMs: number[];
  timeoutMs: number;
  disableAfter: Duration;
  /** Pings in flight at once, over all subscriptions. */
  concurrency: number;
  /** How long attempts are kept. */
  attemptsKeep: Duration;
  /** Mutual TLS to callbacks: a client certificate and key (PEM) to present, and trust anchors to add. */
  tls: { cert?: string; key?: string; ca?: string };
}

export interface AuthConfig {
  enabled: boolean;
  jwksUrl: string | undefined;
  jwksFile: string | undefined;
  issuer: string | undefined;
  audience: string | undefined;
  algorithms: string[];
  jwksCooldownSeconds: number;
}

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
    this.name = "ConfigError";
  }
}

type Env = Record<string, string | undefined>;

interface Option {
  variable: string;
  default: string;
  meaning: string;
}

/** The documented options. `default` is shown as text; derived defaults are described in words. */
export const OPTIONS: readonly Option[] = [
  { variable: "SEINTJE_HOST", default: "127.0.0.1", meaning: "address to listen on" },
  { variable: "SEINTJE_PORT", default: "8080", meaning: "port to listen on (0 picks a free one)" },
  {
    variable: "DATABASE_URL",
    default: "sqlite:<SEINTJE_DATA_DIR>/seintje.db",
    meaning: "`sqlite:<path>`, or a `postgres://` URL for several service processes on one database",
  },
  {
    variable: "SEINTJE_DB_POOL_MIN",
    default: "0",
    meaning: "PostgreSQL connections each process keeps open when idle",
  },
  {
    variable: "SEINTJE_DB_POOL_MAX",
    default: "10",
    meaning:
      "most PostgreSQL connections each process opens (plus one that listens for other nodes' appends)",
  },
  {
    variable: "SEINTJE_DATA_DIR",
    default: "./data",
    meaning: "home of the SQLite file, the generated signing key and the key that seals webhook secrets",
  },
  {
    variable: "SEINTJE_SECRETS_KEY_FILE",
    default: "unset",
    meaning:
      "file with the key that seals webhook secrets (base64 of 32 bytes); wins over `webhook-secrets.key` in the data dir",
  },
  {
    variable: "SEINTJE_SECRETS_KEY",
    default: "unset",
    meaning:
      "that key itself, for platforms that give secrets as variables (not with `SEINTJE_SECRETS_KEY_FILE`)",
  },
  {
    variable: "SEINTJE_SIGNING_KEY_FILE",
    default: "unset",
    meaning:
      "file with the service's token signing key (an Ed25519 private JWK); wins over `signing-key.jwk` in the data dir",
  },
  {
    variable: "SEINTJE_SIGNING_KEY",
    default: "unset",
    meaning: "that key itself, as JWK text (not with `SEINTJE_SIGNING_KEY_FILE`)",
  },
  {
    variable: "SEINTJE_SIGNING_KEY_PREVIOUS_FILE",
    default: "unset",
    meaning:
      "the signing key that SEINTJE_SIGNING_KEY(_FILE) replaced (JWK, private or public): it keeps verifying tokens, and stays in /.well-known/jwks.json, for SEINTJE_SIGNING_KEY_OVERLAP after the new key first signed",
  },
  {
    variable: "SEINTJE_SIGNING_KEY_PREVIOUS",
    default: "unset",
    meaning: "that previous key itself, as JWK text (not with `SEINTJE_SIGNING_KEY_PREVIOUS_FILE`)",
  },
  {
    variable: "SEINTJE_SIGNING_KEY_OVERLAP",
    default: "P1D",
    meaning:
      "ISO 8601 duration the previous signing key keeps verifying after the new one is first used (at least the longest token lifetime)",
  },
  {
    variable: "SEINTJE_PUBLIC_URL",
    default: "http://<host>:<port>",
    meaning: "base of absolute URLs in `Link` headers and pings",
  },
  {
    variable: "SEINTJE_SOURCE",
    default: "urn:seintje:<hostname>",
    meaning: "CloudEvents `source` of pings",
  },
  { variable: "SEINTJE_AUTO_CREATE_FEEDS", default: "false", meaning: "create a feed on its first publish" },
  { variable: "SEINTJE_RETENTION_INTERVAL", default: "60", meaning: "seconds between retention passes" },
  { variable: "SEINTJE_LOG_LEVEL", default: "info", meaning: "fatal, error, warn, info, debug or trace" },
  {
    variable: "SEINTJE_AUTH",
    default: "on",
    meaning: "`off` disables authentication (logged loudly at start)",
  },
  {
    variable: "SEINTJE_JWKS_URL",
    default: "unset",
    meaning: "JWKS URL that tokens are verified with, besides the generated key",
  },
  {
    variable: "SEINTJE_JWKS_FILE",
    default: "unset",
    meaning: "JWKS file that tokens are verified with, besides the generated key",
  },
  { variable: "SEINTJE_JWT_ISSUER", default: "unset", meaning: "required `iss` of tokens, when set" },
  { variable: "SEINTJE_JWT_AUDIENCE", default: "unset", meaning: "required `aud` of tokens, when set" },
  {
    variable: "SEINTJE_JWT_ALGORITHMS",
    default: "ES256 ES384 EdDSA RS256 PS256",
    meaning: "signature algorithms accepted in tokens (never none or HMAC)",
  },
  {
    variable: "SEINTJE_JWKS_COOLDOWN",
    default: "30",
    meaning: "least seconds between refetches of the JWKS URL",
  },
  {
    variable: "SEINTJE_KEEPALIVE",
    default: "15",
    meaning: "seconds of silence before a stream sends a keep-alive",
  },
  {
    variable: "SEINTJE_STREAM_RETRY",
    default: "2000",
    meaning: "milliseconds a stream tells clients to wait before reconnecting",
  },
  { variable: "SEINTJE_CALLBACK_HTTP", default: "false", meaning: "allow `http:` callback URLs" },
  {
    variable: "SEINTJE_CALLBACK_ALLOW",
    default: "empty",
    meaning:
      "comma-separated IP addresses or CIDR ranges that callbacks may reach although internal (IPv4-mapped IPv6 addresses match their IPv4 form)",
  },
  {
    variable: "SEINTJE_CALLBACK_CLIENT_CERT",
    default: "unset",
    meaning:
      "PEM file of the client certificate (chain) presented to https callbacks that ask for one (mutual TLS); needs SEINTJE_CALLBACK_CLIENT_KEY",
  },
  {
    variable: "SEINTJE_CALLBACK_CLIENT_KEY",
    default: "unset",
    meaning: "PEM file of that certificate's private key",
  },
  {
    variable: "SEINTJE_CALLBACK_CA",
    default: "unset",
    meaning:
      "PEM file of trust anchors added to the system's for https callbacks (a private or PKIoverheid CA)",
  },
  {
    variable: "SEINTJE_PING_RETRY",
    default: "5,30,120,600,1800,3600,10800,21600,43200",
    meaning: "seconds between ping retries (the last repeats), before jitter",
  },
  { variable: "SEINTJE_PING_TIMEOUT", default: "10", meaning: "seconds a callback may take" },
  {
    variable: "SEINTJE_PING_DISABLE_AFTER",
    default: "P3D",
    meaning: "how long a subscription may keep failing before it is disabled",
  },
  {
    variable: "SEINTJE_PING_CONCURRENCY",
    default: "256",
    meaning: "pings in flight at once, over all subscriptions",
  },
  {
    variable: "SEINTJE_PING_ATTEMPTS_KEEP",
    default: "P7D",
    meaning: "how long ping attempts are kept",
  },
  {
    variable: "SEINTJE_CORS_ORIGINS",
    default: "empty",
    meaning:
      "comma-separated origins whose pages may call the API (CORS: fetch with Authorization, streams), or *",
  },
  {
    variable: "SEINTJE_MAX_STREAMS",
    default: "10000",
    meaning: "open streams per process; one more is answered 503 with `Retry-After`",
  },
  {
    variable: "SEINTJE_MAX_LONGPOLLS",
    default: "10000",
    meaning: "long-polls (`wait` > 0) held at once per process; one more is answered 503 with `Retry-After`",
  },
  {
    variable: "SEINTJE_PUBLISH_RATE",
    default: "0",
    meaning:
      "publish requests per second per token `sub` (per client address without one), per process; over it, 429 with `Retry-After`; 0: no limit",
  },
  {
    variable: "SEINTJE_MAX_REQUEST_BYTES",
    default: String(MAX_REQUEST_BYTES),
    meaning: "largest publish request body (413 beyond it); an event stays at most 64 KiB",
  },
  {
    variable: "SEINTJE_HEADERS_TIMEOUT",
    default: "20",
    meaning: "seconds a client may take to send a request's headers",
  },
  {
    variable: "SEINTJE_REQUEST_TIMEOUT",
    default: "60",
    meaning: "seconds a client may take to send a whole request (a long-poll's wait does not count)",
  },
  {
    variable: "SEINTJE_SHUTDOWN_TIMEOUT",
    default: "10",
    meaning:
      "seconds that requests and pings in flight get to finish after SIGTERM; the process exits at most 5 s later",
  },
  {
    variable: "SEINTJE_METRICS",
    default: "open",
    meaning:
      "`/metrics` for anyone (`open`), only for tokens with the `admin` grant on every feed (`token`), or `off`",
  },
  {
    variable: "OTEL_EXPORTER_OTLP_ENDPOINT",
    default: "unset",
    meaning:
      "export traces over OTLP/HTTP (JSON) to this base URL (`/v1/traces` is added); tracing is off while neither this nor OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set. The other standard OTEL_* variables apply (OTEL_EXPORTER_OTLP_HEADERS, OTEL_BSP_*, OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER=none)",
  },
  {
    variable: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    default: "unset",
    meaning: "the full URL traces are exported to; wins over OTEL_EXPORTER_OTLP_ENDPOINT",
  },
  { variable: "OTEL_SERVICE_NAME", default: "seintje", meaning: "`service.name` of the exported spans" },
];

/** Asymmetric JWS algorithms; `none` and the HMAC family are never accepted. */
const SIGNATURE_ALGORITHMS = [
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
  "Ed25519",
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
];

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/** The variable's value as set, or undefined when it is unset or empty. */
function given(env: Env, variable: string): string | undefined {
  const value = env[variable]?.trim();
  return value === undefined || value === "" ? undefined : value;
}

const DEFAULTS = new Map(OPTIONS.map((option) => [option.variable, option.default]));

/**
 * The variable's value, or else its default from OPTIONS, the one place defaults are written. A default shown in
 * words ("unset", "empty", or one with a <placeholder>) is no value: the option's own code derives it.
 */
function text(env: Env, variable: string): string | undefined {
  const value = given(env, variable);
  if (value !== undefined) return value;
  const fallback = DEFAULTS.get(variable);
  if (fallback === undefined) throw new Error(`${variable} is not in OPTIONS`);
  return fallback === "unset" || fallback === "empty" || fallback.includes("<") ? undefined : fallback;
}

/** `text`, for an option whose default is a value: never undefined. */
function required(env: Env, variable: string): string {
  const value = text(env, variable);
  if (value === undefined) throw new Error(`${variable} has no default value in OPTIONS`);
  return value;
}

function integer(env: Env, variable: string, min: number, max: number): number {
  const raw = required(env, variable);
  if (!/^\d+$/.test(raw)) throw new ConfigError(variable, `expected a whole number, got "${raw}"`);
  const value = Number(raw);
  if (value < min || value > max)
    throw new ConfigError(variable, `must be between ${min} and ${max}, got ${value}`);
  return value;
}

function boolean(env: Env, variable: string): boolean {
  const raw = required(env, variable).toLowerCase();
  if (["true", "1", "yes", "on"].includes(raw)) return true;
  if (["false", "0", "no", "off"].includes(raw)) return false;
  throw new ConfigError(variable, `expected true or false, got "${raw}"`);
}

function database(env: Env, dataDir: string): Database {
  const raw = text(env, "DATABASE_URL");
  if (raw === undefined) return { dialect: "sqlite", filename: resolve(dataDir, "seintje.db") };
  if (raw.startsWith("sqlite:")) {
    const path = raw.slice("sqlite:".length).replace(/^\/\/(?=\/)/, "");
    if (path === "")
      throw new ConfigError("DATABASE_URL", "sqlite: needs a file path, e.g. sqlite:./data/seintje.db");
    return { dialect: "sqlite", filename: resolve(path) };
  }
  if (/^postgres(ql)?:\/\//.test(raw)) {
    try {
      new URL(raw);
    } catch {
      throw new ConfigError("DATABASE_URL", "not a valid postgres:// URL");
    }
    const max = integer(env, "SEINTJE_DB_POOL_MAX", 2, 1000);
    const min = integer(env, "SEINTJE_DB_POOL_MIN", 0, max);
    return { dialect: "postgres", url: raw, pool: { min, max } };
  }
  throw new ConfigError("DATABASE_URL", "expected sqlite:<path> or postgres://...");
}

function httpUrl(variable: string, raw: string): URL {
  let url: URL | undefined;
  try {
    url = new URL(raw);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) {
    throw new ConfigError(variable, `not an http or https URL: "${raw}"`);
  }
  return url;
}

function publicUrl(env: Env): string | undefined {
  const raw = text(env, "SEINTJE_PUBLIC_URL");
  if (raw === undefined) return undefined;
  const url = httpUrl("SEINTJE_PUBLIC_URL", raw);
  if (url.search || url.hash)
    throw new ConfigError("SEINTJE_PUBLIC_URL", "must not hold a query or fragment");
  return url.href.replace(/\/+$/, "");
}

function auth(env: Env): AuthConfig {
  const raw = required(env, "SEINTJE_AUTH").toLowerCase();
  if (raw !== "on" && raw !== "off")
    throw new ConfigError("SEINTJE_AUTH", `expected on or off, got "${raw}"`);
  const jwksUrl = text(env, "SEINTJE_JWKS_URL");
  if (jwksUrl !== undefined) httpUrl("SEINTJE_JWKS_URL", jwksUrl);
  const algorithms = required(env, "SEINTJE_JWT_ALGORITHMS").split(/[\s,]+/);
  for (const algorithm of algorithms) {
    if (!SIGNATURE_ALGORITHMS.includes(algorithm)) {
      throw new ConfigError(
        "SEINTJE_JWT_ALGORITHMS",
        `"${algorithm}" is not an accepted signature algorithm (${SIGNATURE_ALGORITHMS.join(" ")})`,
      );
    }
  }
  const jwksFile = text(env, "SEINTJE_JWKS_FILE");
  return {
    enabled: raw === "on",
    jwksUrl,
    jwksFile: jwksFile === undefined ? undefined : resolve(jwksFile),
    issuer: text(env, "SEINTJE_JWT_ISSUER"),
    audience: text(env, "SEINTJE_JWT_AUDIENCE"),
    algorithms,
    jwksCooldownSeconds: integer(env, "SEINTJE_JWKS_COOLDOWN", 0, 86_400),
  };
}

function corsOrigins(env: Env): string[] {
  const raw = text(env, "SEINTJE_CORS_ORIGINS");
  if (raw === undefined) return [];
  const origins = raw
    .split(",")
    .map((origin) => origin.trim())
    .filter(Boolean);
  for (const origin of origins) {
    if (origin === "*") continue;
    const url = httpUrl("SEINTJE_CORS_ORIGINS", origin);
    if (url.origin !== origin)
      throw new ConfigError("SEINTJE_CORS_ORIGINS", `"${origin}" is not an origin (scheme://host[:port])`);
  }
  return origins;
}

function seconds(env: Env, variable: string, min: number, max: number): number {
  return secondsOf(variable, required(env, variable), min, max);
}

/** Seconds, whole or with up to three decimals, from min to max; in milliseconds. */
function secondsOf(variable: string, raw: string, min: number, max: number): number {
  const value = /^\d+(\.\d{1,3})?$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(value >= min && value <= max)) {
    throw new ConfigError(variable, `expected seconds from ${min} to ${max}, got "${raw}"`);
  }
  return Math.round(value * 1000);
}

function duration(env: Env, variable: string): Duration {
  const raw = required(env, variable);
  const problem = durationProblem(raw);
  if (problem !== undefined) throw new ConfigError(variable, `"${raw}" ${problem}`);
  return parseDuration(raw)!;
}

function limits(env: Env): Limits {
  const headersTimeoutMs = seconds(env, "SEINTJE_HEADERS_TIMEOUT", 0.1, 3600);
  const requestTimeoutMs = seconds(env, "SEINTJE_REQUEST_TIMEOUT", 0.1, 3600);
  // Node refuses a headers timeout longer than the request timeout.
  if (requestTimeoutMs < headersTimeoutMs) {
    throw new ConfigError("SEINTJE_REQUEST_TIMEOUT", "must not be shorter than SEINTJE_HEADERS_TIMEOUT");
  }
  return {
    maxRequestBytes: integer(env, "SEINTJE_MAX_REQUEST_BYTES", 64 * 1024, 64 * 1024 * 1024),
    headersTimeoutMs,
    requestTimeoutMs,
    maxStreams: integer(env, "SEINTJE_MAX_STREAMS", 0, 1_000_000),
    maxLongPolls: integer(env, "SEINTJE_MAX_LONGPOLLS", 0, 1_000_000),
    publishRate: integer(env, "SEINTJE_PUBLISH_RATE", 0, 1_000_000),
  };
}

function metrics(env: Env): Config["metrics"] {
  const raw = required(env, "SEINTJE_METRICS").toLowerCase();
  if (raw !== "open" && raw !== "token" && raw !== "off") {
    throw new ConfigError("SEINTJE_METRICS", `expected open, token or off, got "${raw}"`);
  }
  return raw;
}

function webhooks(env: Env): WebhookConfig {
  const schedule = required(env, "SEINTJE_PING_RETRY")
    .split(",")
    .map((part) => part.trim());
  const allow = (text(env, "SEINTJE_CALLBACK_ALLOW") ?? "")
    .split(",")
    .map((entry) => entry.trim())
    .filter(Boolean);
  for (const entry of allow) {
    try {
      parseAllowEntry(entry);
    } catch {
      throw new ConfigError("SEINTJE_CALLBACK_ALLOW", `"${entry}" is not an IP address or CIDR range`);
    }
  }
  return {
    allowHttp: boolean(env, "SEINTJE_CALLBACK_HTTP"),
    allow,
    retryScheduleMs: schedule.map((part) => secondsOf("SEINTJE_PING_RETRY", part, 0.01, 7 * 86_400)),
    timeoutMs: seconds(env, "SEINTJE_PING_TIMEOUT", 0.1, 300),
    disableAfter: duration(env, "SEINTJE_PING_DISABLE_AFTER"),
    concurrency: integer(env, "SEINTJE_PING_CONCURRENCY", 1, 10_000),
    attemptsKeep: duration(env, "SEINTJE_PING_ATTEMPTS_KEEP"),
    tls: callbackTls(env),
  };
}

/** A PEM file named by `variable`, read now; unset is undefined. */
function pemFile(env: Env, variable: string, marker: RegExp): string | undefined {
  const path = text(env, variable);
  if (path === undefined) return undefined;
  let content: string;
  try {
    content = readFileSync(path, "utf8");
  } catch (error) {
    throw new ConfigError(variable, `cannot read ${path}: ${(error as Error).message}`);
  }
  if (!marker.test(content))
    throw new ConfigError(variable, `${path} holds no PEM block of the expected kind`);
  return content;
}

function callbackTls(env: Env): WebhookConfig["tls"] {
  const cert = pemFile(env, "SEINTJE_CALLBACK_CLIENT_CERT", /-----BEGIN CERTIFICATE-----/);
  const key = pemFile(env, "SEINTJE_CALLBACK_CLIENT_KEY", /-----BEGIN [A-Z ]*PRIVATE KEY-----/);
  if ((cert === undefined) !== (key === undefined)) {
    const missing = cert === undefined ? "SEINTJE_CALLBACK_CLIENT_CERT" : "SEINTJE_CALLBACK_CLIENT_KEY";
    throw new ConfigError(
      missing,
      "a client certificate needs both SEINTJE_CALLBACK_CLIENT_CERT and SEINTJE_CALLBACK_CLIENT_KEY",
    );
  }
  const ca = pemFile(env, "SEINTJE_CALLBACK_CA", /-----BEGIN CERTIFICATE-----/);
  return { ...(cert ? { cert, key } : {}), ...(ca ? { ca } : {}) };
}

/**
 * A key given as a file or as a variable, not both. A file must be readable now; its text is read when the key is
 * loaded. The key's value is never put in a message.
 */
function keySource(env: Env, variable: string): KeySource {
  const file = text(env, `${variable}_FILE`);
  const value = text(env, variable);
  if (file !== undefined && value !== undefined) {
    throw new ConfigError(variable, `set either ${variable} or ${variable}_FILE, not both`);
  }
  if (file === undefined) return value === undefined ? {} : { text: value, name: variable };
  const path = resolve(file);
  try {
    accessSync(path, constants.R_OK);
  } catch {
    throw new ConfigError(`${variable}_FILE`, `cannot read ${path}`);
  }
  return { file: path, name: `${variable}_FILE` };
}

/** Reads and checks the whole configuration; throws ConfigError naming the first bad variable. */
export function loadConfig(env: Env = process.env): Config {
  const host = required(env, "SEINTJE_HOST");
  const port = integer(env, "SEINTJE_PORT", 0, 65535);
  const dataDir = resolve(required(env, "SEINTJE_DATA_DIR"));
  const logLevel = required(env, "SEINTJE_LOG_LEVEL").toLowerCase();
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError("SEINTJE_LOG_LEVEL", `expected one of ${LOG_LEVELS.join(", ")}, got "${logLevel}"`);
  }
  return {
    host,
    port,
    dataDir,
    keys: {
      secrets: keySource(env, "SEINTJE_SECRETS_KEY"),
      signing: keySource(env, "SEINTJE_SIGNING_KEY"),
      previousSigning: keySource(env, "SEINTJE_SIGNING_KEY_PREVIOUS"),
      signingOverlap: duration(env, "SEINTJE_SIGNING_KEY_OVERLAP"),
    },
    database: database(env, dataDir),
    publicUrl: publicUrl(env),
    source: text(env, "SEINTJE_SOURCE") ?? `urn:seintje:${hostname()}`,
    autoCreateFeeds: boolean(env, "SEINTJE_AUTO_CREATE_FEEDS"),
    retentionIntervalSeconds: integer(env, "SEINTJE_RETENTION_INTERVAL", 1, 86_400),
    logLevel,
    auth: auth(env),
    keepaliveSeconds: integer(env, "SEINTJE_KEEPALIVE", 1, 3600),
    streamRetryMs: integer(env, "SEINTJE_STREAM_RETRY", 0, 3_600_000),
    corsOrigins: corsOrigins(env),
    maxWaitSeconds: MAX_WAIT_SECONDS,
    tracing: tracingConfig(env),
    webhooks: webhooks(env),
    limits: limits(env),
    metrics: metrics(env),
    shutdownTimeoutMs: seconds(env, "SEINTJE_SHUTDOWN_TIMEOUT", 0.1, 3600),
  };
}

/** Variables of the commands that talk to a service (publish, tail, ...): not the service's, but not typing errors. */
export const CLIENT_VARIABLES = ["SEINTJE_URL", "SEINTJE_TOKEN"];

/** Names of SEINTJE_ variables that no option knows: most likely typing errors, worth a warning at start. */
export function unknownVariables(env: Env = process.env): string[] {
  const known = new Set([...OPTIONS.map((option) => option.variable), ...CLIENT_VARIABLES]);
  return Object.keys(env).filter((name) => name.startsWith("SEINTJE_") && !known.has(name));
}
