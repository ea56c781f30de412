import { mkdirSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { dirname } from "node:path";
import type { JWK } from "jose";
import { loadPreviousSigningKey, loadSigningKey, type SigningKey } from "./auth/keys.js";
import { TokenVerifier } from "./auth/verifier.js";
import { type Config, ConfigError } from "./config.js";
import { migrate, openStorage, pendingMigrations, ping, type Storage } from "./db/database.js";
import { WriteHealth } from "./db/failures.js";
import { PgWakeups } from "./db/notify.js";
import { settleSetting } from "./db/settings.js";
import { lockSqliteFile, SqliteFileInUse } from "./db/sqlite-lock.js";
import { countByStatus } from "./db/subscriptions.js";
import type { KeySource } from "./files.js";
import { answerClientError, createApp, requestListener } from "./http/app.js";
import type { Services } from "./http/context.js";
import { Admission, PublishRateLimit } from "./http/limits.js";
import { Appender } from "./log/appender.js";
import { subtractDuration } from "./log/duration.js";
import { Feeds } from "./log/feeds.js";
import { FeedReader } from "./log/reader.js";
import { RetentionScheduler } from "./log/retention.js";
import { EventTypes, TypeRules } from "./log/types.js";
import { WakeupBus } from "./log/wakeup.js";
import type { Logger } from "./logger.js";
import { Metrics } from "./metrics.js";
import type { StreamStats } from "./stream/connection.js";
import { StreamHub } from "./stream/hub.js";
import { startTracing } from "./tracing.js";
import { VERSION } from "./version.js";
import { CallbackClient } from "./webhooks/client.js";
import { Dispatcher } from "./webhooks/dispatcher.js";
import { AddressGuard } from "./webhooks/guard.js";
import { CallbackChecker } from "./webhooks/registration.js";
import { checkSealingKey, SealingKeyMismatch, SecretBox } from "./webhooks/secrets.js";
import { Subscriptions } from "./webhooks/subscriptions.js";

/**
 * A running seintje: storage, the log, the HTTP server. Started in order and stopped in reverse; stop() is safe
 * to call twice. The CLI and the integration tests both run the service through here.
 */
export interface Service {
  /** The base URL the server answers on (SEINTJE_PUBLIC_URL when set). */
  readonly url: string;
  readonly server: Server;
  readonly storage: Storage;
  readonly bus: WakeupBus;
  /** The open streams, each with its live figures. */
  readonly streams: ReadonlySet<StreamStats>;
  readonly retention: RetentionScheduler;
  readonly dispatcher: Dispatcher;
  readonly metrics: Metrics;
  /**
   * Stops accepting, answers held requests, lets in-flight ones finish (up to `graceMs`, by default
   * SEINTJE_SHUTDOWN_TIMEOUT), closes the database.
   */
  stop(graceMs?: number): Promise<void>;
}

export interface StartOptions {
  /** Run pending migrations before serving (the default); off, the service refuses an outdated schema at /readyz. */
  migrate?: boolean;
  /** For tests: how often the ping dispatcher looks without a signal (1 s); long, only signals make it look. */
  dispatcherSweepMs?: number;
}

/** On SQLite, the lock that keeps a second process from serving the same file (see db/sqlite-lock.ts). */
function lockDatabase(config: Config): () => void {
  if (config.database.dialect !== "sqlite") return () => undefined;
  mkdirSync(dirname(config.database.filename), { recursive: true });
  try {
    return lockSqliteFile(config.database.filename);
  } catch (error) {
    if (error instanceof SqliteFileInUse) throw new ConfigError("DATABASE_URL", error.message);
    throw error;
  }
}

/** A port or address that cannot be listened on is a configuration error (exit code 2), naming the variable. */
function listenProblem(error: Error & { code?: string }, config: Config): Error {
  const where = `${config.host}:${config.port}`;
  if (error.code === "EADDRINUSE") {
    return new ConfigError(
      "SEINTJE_PORT",
      `${where} is in use by another process; choose another port with SEINTJE_PORT`,
    );
  }
  if (error.code === "EACCES") {
    return new ConfigError(
      "SEINTJE_PORT",
      `${where} may not be bound by this user (ports below 1024 need privileges)`,
    );
  }
  if (error.code === "EADDRNOTAVAIL") {
    return new ConfigError("SEINTJE_HOST", `${config.host} is not an address of this machine`);
  }
  return error;
}

/** Loads a key; one given by a variable that does not hold a usable key is a ConfigError naming the variable. */
async function configuredKey<T>(source: KeySource, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (error) {
    if (source.name !== undefined) throw new ConfigError(source.name, (error as Error).message);
    throw error;
  }
}

/**
 * The service's signing key: it signs the JWTs of pings that carry one and, with authentication on, verifies
 * tokens; its public half is published at /.well-known/jwks.json.
 */
async function signingKeyOf(config: Config, logger: Logger): Promise<SigningKey> {
  const signingKey = await configuredKey(config.keys.signing, () =>
    loadSigningKey(config.dataDir, config.keys.signing),
  );
  if (signingKey.created) {
    logger.info(
      { path: signingKey.path },
      "generated a new signing key for tokens; keep it with the backups",
    );
  }
  return signingKey;
}

/**
 * A signing key rotation: the previous key verifies for SEINTJE_SIGNING_KEY_OVERLAP after the current key was first
 * used by any node on this database (recorded once, in the settings table, so every node and every restart agrees).
 */
async function retirePreviousKey(
  storage: Storage,
  config: Config,
  signingKey: SigningKey,
  previousKey: JWK,
  verifier: TokenVerifier | undefined,
  logger: Logger,
): Promise<void> {
  const since = Number(
    await settleSetting(
      storage.writer,
      `signing-key-since:${signingKey.kid}`,
      String(Date.now()),
      Date.now(),
    ),
  );
  const overlap = config.keys.signingOverlap;
  // A window whose start leaves the range of dates never ends.
  const accepts = (now: number) => {
    const windowStart = subtractDuration(now, overlap);
    return windowStart === undefined || since > windowStart;
  };
  verifier?.retire(accepts);
  if (accepts(Date.now())) {
    logger.info(
      { previous: previousKey.kid, current: signingKey.kid, since: new Date(since).toISOString() },
      "the previous signing key verifies tokens during the overlap (SEINTJE_SIGNING_KEY_OVERLAP)",
    );
  } else {
    logger.warn(
      { previous: previousKey.kid },
      "the previous signing key's overlap has ended: it verifies nothing; remove SEINTJE_SIGNING_KEY_PREVIOUS(_FILE)",
    );
  }
}

/** The token verifier, or undefined (with a loud warning) when authentication is off. */
function createVerifier(
  config: Config,
  logger: Logger,
  signingKey: SigningKey,
  previousKey: JWK | undefined,
): TokenVerifier | undefined {
  const auth = config.auth;
  if (!auth.enabled) {
    logger.warn(
      "AUTHENTICATION IS OFF (SEINTJE_AUTH=off): anyone who can reach this service can read, publish and delete every feed",
    );
    return undefined;
  }
  try {
    return new TokenVerifier({
      signingKey,
      jwksFile: auth.jwksFile,
      jwksUrl: auth.jwksUrl,
      algorithms: auth.algorithms,
      issuer: auth.issuer,
      audience: auth.audience,
      jwksCooldownMs: auth.jwksCooldownSeconds * 1000,
      previousKey,
    });
  } catch (error) {
    throw new ConfigError("SEINTJE_JWKS_FILE", `cannot be used: ${(error as Error).message}`);
  }
}

export async function startService(
  config: Config,
  logger: Logger,
  options: StartOptions = {},
): Promise<Service> {
  const signingKey = await signingKeyOf(config, logger);
  const previousKey = await configuredKey(config.keys.previousSigning, () =>
    loadPreviousSigningKey(config.keys.previousSigning),
  );
  const verifier = createVerifier(config, logger, signingKey, previousKey);
  // Both keys are loaded before anything is opened: a key that is missing or wrong stops the start with nothing
  // to undo.
  const box = await configuredKey(config.keys.secrets, () =>
    SecretBox.open(
      config.dataDir,
      (path) =>
        logger.info({ path }, "generated a new key that seals webhook secrets; keep it with the backups"),
      config.keys.secrets,
    ),
  );
  const tracing = startTracing(config.tracing);
  const releaseLock = lockDatabase(config);
  const storage = await openStorage(config.database, logger).catch((error: unknown) => {
    releaseLock();
    throw error;
  });
  const { limits } = config;
  const streams = new Set<StreamStats>();
  const bus = new WakeupBus();
  const metrics: Metrics = new Metrics({
    openStreams: () => admission.count("streams"),
    waitingLongPolls: () => admission.count("longpolls"),
    limits: { streams: limits.maxStreams, longpolls: limits.maxLongPolls },
    storageFull: () => writeHealth.full,
    subscriptionsByStatus: () => countByStatus(storage.reader),
  });
  const admission = new Admission({ streams: limits.maxStreams, longpolls: limits.maxLongPolls }, metrics);
  metrics.watchQueries(storage.writer, storage.reader === storage.writer ? "pool" : "writer");
  if (storage.reader !== storage.writer) metrics.watchQueries(storage.reader, "reader");
  const writeHealth = new WriteHealth(storage, logger);
  const retention = new RetentionScheduler(storage, config.retentionIntervalSeconds, logger, metrics);
  const appender = new Appender(storage, bus, metrics, new TypeRules(bus), {
    autoCreateFeeds: config.autoCreateFeeds,
    logger,
  });
  const stopping = new AbortController();
  const hub = new StreamHub(storage, bus, logger, {
    keepaliveMs: config.keepaliveSeconds * 1000,
    served: (events) => metrics.eventsServed.inc({ channel: "stream" }, events),
  });
  const hooks = config.webhooks;
  const guard = new AddressGuard(hooks.allow);
  const userAgent = `seintje/${VERSION}`;
  const client = new CallbackClient(guard, { timeoutMs: hooks.timeoutMs, userAgent, tls: hooks.tls });
  let publicUrl = config.publicUrl ?? "";
  const origin = () => new URL(publicUrl).hostname;
  const dispatcher = new Dispatcher(storage, bus, client, box, logger, metrics, {
    policy: { scheduleMs: hooks.retryScheduleMs, disableAfter: hooks.disableAfter },
    concurrency: hooks.concurrency,
    timeoutMs: hooks.timeoutMs,
    source: config.source,
    publicUrl: () => publicUrl,
    requestOrigin: origin,
    attemptsKeep: hooks.attemptsKeep,
    issuer: { key: signingKey, issuer: config.source },
    tracer: tracing.tracer,
    sweepMs: options.dispatcherSweepMs,
  });
  const database = config.database;
  const wakeups =
    database.dialect === "postgres"
      ? new PgWakeups(database.url, storage.node, storage.reader, bus, logger)
      : undefined;
  let server: Server | undefined;
  try {
    if (options.migrate ?? true) {
      const ran = await migrate(storage);
      if (ran.length > 0) logger.info({ migrations: ran }, "database migrated");
    }
    if (previousKey) await retirePreviousKey(storage, config, signingKey, previousKey, verifier, logger);
    await checkSealingKey(storage, box).catch((error: unknown) => {
      if (!(error instanceof SealingKeyMismatch)) throw error;
      throw new ConfigError(config.keys.secrets.name ?? "SEINTJE_DATA_DIR", error.message);
    });
    await wakeups?.start();
    const services: Services = {
      tracer: tracing.tracer,
      jwks: () => verifier?.publicKeys() ?? [signingKey.publicJwk],
      feeds: new Feeds(storage, bus),
      types: new EventTypes(storage),
      reader: new FeedReader(storage, bus),
      database: { ping: () => ping(storage), pendingMigrations: () => pendingMigrations(storage) },
      writeHealth,
      appender,
      logger,
      verifier,
      publicUrl: () => publicUrl,
      maxWaitSeconds: config.maxWaitSeconds,
      hub,
      streams,
      keepaliveSeconds: config.keepaliveSeconds,
      streamRetryMs: config.streamRetryMs,
      corsOrigins: config.corsOrigins,
      stopping: stopping.signal,
      webhooks: {
        dispatcher,
        subscriptions: new Subscriptions(storage, box),
        callbacks: new CallbackChecker(guard, client, hooks.allowHttp, origin),
      },
      metrics,
      metricsAccess: config.metrics,
      admission,
      publishRate: new PublishRateLimit(limits.publishRate, metrics),
      maxRequestBytes: limits.maxRequestBytes,
    };
    const app = createApp(services);
    // Node looks for requests over their header and request timeouts every so often (30 s by default); look
    // often enough that a timeout of a few seconds is kept to within half of it.
    const listener = requestListener(app, logger);
    server = createServer(
      { connectionsCheckingInterval: Math.min(5000, limits.headersTimeoutMs / 2) },
      listener,
    );
    // With a listener here Node sends no 100 Continue by itself: a request that will be refused (no token, too
    // large, no such feed) gets its refusal before its client sends the body; readBody sends the 100.
    server.on("checkContinue", listener);
    server.on("clientError", answerClientError);
    // Both bound only the receiving of a request: a long-poll's wait or a stream comes after and is not cut.
    server.requestTimeout = limits.requestTimeoutMs;
    server.headersTimeout = limits.headersTimeoutMs;
    // Longer than the 60 s idle timeout of common load balancers, so that they close idle connections first.
    server.keepAliveTimeout = 65_000;
    const listening = server;
    await new Promise<void>((resolve, reject) => {
      listening.once("error", (error) => reject(listenProblem(error, config)));
      listening.listen(config.port, config.host, () => {
        listening.removeAllListeners("error");
        resolve();
      });
    });
    const address = listening.address() as AddressInfo;
    const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
    publicUrl = config.publicUrl ?? `http://${host}:${address.port}`;
    retention.start();
    dispatcher.start();
    logger.info({ url: publicUrl, database: config.database.dialect }, "seintje is listening");

    let stopped: Promise<void> | undefined;
    return {
      url: publicUrl,
      server: listening,
      storage,
      bus,
      streams,
      retention,
      dispatcher,
      metrics,
      stop(graceMs = config.shutdownTimeoutMs) {
        stopped ??= (async () => {
          const closed = new Promise<void>((resolve) => listening.close(() => resolve()));
          await wakeups?.stop();
          stopping.abort();
          // Every stream ends now with a retry hint: its client comes back to another node or after the restart.
          hub.close();
          bus.close();
          listening.closeIdleConnections();
          const grace = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
          await Promise.all([Promise.race([closed, grace]), dispatcher.stop(graceMs)]);
          listening.closeAllConnections();
          await closed;
          await retention.stop();
          await appender.close();
          writeHealth.stop();
          await storage.close();
          releaseLock();
          // The spans of the last requests and pings go out before the process ends.
          await tracing
            .shutdown()
            .catch((error: unknown) => logger.warn({ err: error }, "traces not exported"));
          logger.info("seintje stopped");
        })();
        return stopped;
      },
    };
  } catch (error) {
    server?.close();
    await tracing.shutdown().catch(() => undefined);
    await wakeups?.stop();
    await appender.close();
    writeHealth.stop();
    await storage.close();
    releaseLock();
    throw error;
  }
}
