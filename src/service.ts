import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { loadSigningKey } from "./auth/keys.js";
import { TokenVerifier } from "./auth/verifier.js";
import { type Config, ConfigError } from "./config.js";
import { migrate, openStorage, type Storage } from "./db/database.js";
import { PgWakeups } from "./db/notify.js";
import { createApp } from "./http/app.js";
import type { Services } from "./http/context.js";
import { Appender } from "./log/appender.js";
import { RetentionScheduler } from "./log/retention.js";
import { WakeupBus } from "./log/wakeup.js";
import type { Logger } from "./logger.js";
import type { StreamStats } from "./stream/connection.js";
import { StreamHub } from "./stream/hub.js";
import { VERSION } from "./version.js";
import { CallbackClient } from "./webhooks/client.js";
import { Dispatcher } from "./webhooks/dispatcher.js";
import { AddressGuard } from "./webhooks/guard.js";
import { CallbackChecker } from "./webhooks/registration.js";
import { checkSealingKey, SecretBox } from "./webhooks/secrets.js";

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
  /** Stops accepting, answers held requests, lets in-flight ones finish (up to `graceMs`), closes the database. */
  stop(graceMs?: number): Promise<void>;
}

export interface StartOptions {
  /** Run pending migrations before serving (the default); off, the service refuses an outdated schema at /readyz. */
  migrate?: boolean;
}

/** The token verifier, or undefined (with a loud warning) when authentication is off. */
async function createVerifier(config: Config, logger: Logger): Promise<TokenVerifier | undefined> {
  const auth = config.auth;
  if (!auth.enabled) {
    logger.warn(
      "AUTHENTICATION IS OFF (SEINTJE_AUTH=off): anyone who can reach this service can read, publish and delete every feed",
    );
    return undefined;
  }
  const signingKey = await loadSigningKey(config.dataDir);
  try {
    return new TokenVerifier({
      signingKey,
      jwksFile: auth.jwksFile,
      jwksUrl: auth.jwksUrl,
      algorithms: auth.algorithms,
      issuer: auth.issuer,
      audience: auth.audience,
      jwksCooldownMs: auth.jwksCooldownSeconds * 1000,
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
  const verifier = await createVerifier(config, logger);
  const storage = await openStorage(config.database);
  const retention = new RetentionScheduler(storage, config.retentionIntervalSeconds, logger);
  const bus = new WakeupBus();
  const appender = new Appender(storage, bus, { autoCreateFeeds: config.autoCreateFeeds, logger });
  const stopping = new AbortController();
  const hub = new StreamHub(storage, bus, logger);
  const streams = new Set<StreamStats>();
  const hooks = config.webhooks;
  const box = await SecretBox.open(config.dataDir);
  const guard = new AddressGuard(hooks.allow);
  const userAgent = `seintje/${VERSION}`;
  const client = new CallbackClient(guard, { timeoutMs: hooks.timeoutMs, userAgent });
  let publicUrl = config.publicUrl ?? "";
  const origin = () => new URL(publicUrl).hostname;
  const dispatcher = new Dispatcher(storage, bus, client, box, logger, {
    policy: { scheduleMs: hooks.retryScheduleMs, disableAfter: hooks.disableAfter },
    concurrency: hooks.concurrency,
    timeoutMs: hooks.timeoutMs,
    source: config.source,
    publicUrl: () => publicUrl,
    requestOrigin: origin,
    attemptsKeep: hooks.attemptsKeep,
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
    await checkSealingKey(storage, box);
    await wakeups?.start();
    const services: Services = {
      storage,
      bus,
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
        box,
        callbacks: new CallbackChecker(guard, client, hooks.allowHttp, origin),
      },
    };
    const app = createApp(services);
    server = createServer(app.callback());
    // Long-polls hold a request for up to 60 s; Node's defaults would cut them or their keep-alive short.
    server.requestTimeout = (config.maxWaitSeconds + 30) * 1000;
    server.headersTimeout = 20_000;
    server.keepAliveTimeout = 65_000;
    const listening = server;
    await new Promise<void>((resolve, reject) => {
      listening.once("error", reject);
      listening.listen(config.port, config.host, () => {
        listening.off("error", reject);
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
      stop(graceMs = 10_000) {
        stopped ??= (async () => {
          const closed = new Promise<void>((resolve) => listening.close(() => resolve()));
          await wakeups?.stop();
          stopping.abort();
          bus.close();
          listening.closeIdleConnections();
          const grace = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
          await Promise.all([Promise.race([closed, grace]), dispatcher.stop(graceMs)]);
          listening.closeAllConnections();
          await closed;
          hub.close();
          await retention.stop();
          await appender.close();
          await storage.close();
          logger.info("seintje stopped");
        })();
        return stopped;
      },
    };
  } catch (error) {
    server?.close();
    await wakeups?.stop();
    await appender.close();
    await storage.close();
    throw error;
  }
}
