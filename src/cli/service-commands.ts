import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { parseScope } from "../auth/grants.js";
import { MissingSigningKey, readSigningKey } from "../auth/keys.js";
import { mintToken, parseTtl } from "../auth/tokens.js";
import { loadConfig, unknownVariables } from "../config.js";
import { type Command, CommandFailed, EXIT, UsageError } from "./command.js";

/**
 * The commands that run the service or work on its database and keys: serve, migrate, backup, token. The service,
 * the storage and their drivers are imported by the commands that use them, when they run: every other command,
 * and help, starts without loading them.
 */

/** How long after the shutdown timeout a stopping process exits regardless. */
const FORCED_EXIT_MARGIN_MS = 5000;

export const serve: Command = {
  name: "serve",
  summary: "run the service",
  serves: true,
  help: `Usage: seintje serve [--no-migrate]

Runs the service with the configuration from the environment (seintje help lists it), after bringing the
database schema up to date. With --no-migrate it does not migrate; /readyz then answers 503 until
seintje migrate has run. SIGTERM or SIGINT stops it gracefully; a second signal stops it at once.`,
  async run(args) {
    const { values } = parseArgs({ args, options: { "no-migrate": { type: "boolean" } }, strict: true });
    const [{ createLogger }, { startService }] = await Promise.all([
      import("../logger.js"),
      import("../service.js"),
    ]);
    const config = loadConfig();
    const logger = createLogger(config.logLevel);
    for (const name of unknownVariables())
      logger.warn({ variable: name }, "unknown SEINTJE_ variable ignored");
    const service = await startService(config, logger, { migrate: !values["no-migrate"] });

    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      signals += 1;
      if (signals > 1) {
        logger.warn({ signal }, "second signal: exiting now");
        process.exit(EXIT.failed);
      }
      logger.info({ signal }, "stopping");
      // stop() is bounded by the grace period plus closing the database; should anything hang past that
      // margin, the process still ends.
      setTimeout(() => {
        logger.error({ timeoutMs: config.shutdownTimeoutMs }, "stopping took too long: exiting now");
        process.exit(EXIT.failed);
      }, config.shutdownTimeoutMs + FORCED_EXIT_MARGIN_MS).unref();
      service.stop().then(
        () => process.exit(EXIT.ok),
        (error: unknown) => {
          logger.error({ err: error }, "stopping failed");
          process.exit(EXIT.failed);
        },
      );
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  },
};

export const migrateCommand: Command = {
  name: "migrate",
  summary: "bring the database schema up to date and exit",
  help: `Usage: seintje migrate

Runs the migrations the database has not had, on DATABASE_URL (or the SQLite file in SEINTJE_DATA_DIR).
With several nodes on one PostgreSQL database, run it once before starting them with serve --no-migrate.`,
  async run(args) {
    parseArgs({ args, options: {}, strict: true });
    const { migrate, openStorage } = await import("../db/database.js");
    const config = loadConfig();
    const storage = await openStorage(config.database);
    try {
      const ran = await migrate(storage);
      process.stdout.write(ran.length > 0 ? `applied: ${ran.join(", ")}\n` : "the schema is up to date\n");
    } finally {
      await storage.close();
    }
  },
};

export const backup: Command = {
  name: "backup",
  summary: "copy the SQLite database to a new file while the service runs",
  help: `Usage: seintje backup <file>

Writes a consistent copy of the SQLite database to <file>, which must not exist, while the service runs and
takes publishes. The copy holds neither signing-key.jwk nor webhook-secrets.key: keep those apart. On
PostgreSQL use pg_dump instead (docs/OPERATIONS.md).`,
  async run(args) {
    const { positionals } = parseArgs({ args, options: {}, allowPositionals: true, strict: true });
    if (positionals.length !== 1)
      throw new UsageError("backup takes one argument: the file to write", backup);
    const config = loadConfig();
    if (config.database.dialect !== "sqlite") {
      throw new UsageError(
        "backup copies SQLite databases; for PostgreSQL use pg_dump (see docs/OPERATIONS.md)",
      );
    }
    const { backupSqlite } = await import("../db/backup.js");
    let result: ReturnType<typeof backupSqlite>;
    try {
      result = backupSqlite(config.database.filename, resolve(positionals[0]!));
    } catch (error) {
      throw new CommandFailed(`backup failed: ${(error as Error).message}`);
    }
    process.stdout.write(
      `backed up ${result.feeds} feed(s) and ${result.events} event(s) to ${result.path} (${result.bytes} bytes)\n` +
        `keep ${config.dataDir}/signing-key.jwk and webhook-secrets.key with it: the backup holds neither\n`,
    );
  },
};

export const token: Command = {
  name: "token",
  summary: "print a token signed with the service's generated key",
  help: `Usage: seintje token --scope "<grants>" [--ttl 1h] [--sub NAME] [--data-dir DIR]

Prints a JWT signed with the key the service generated in its data directory (--data-dir, else
SEINTJE_DATA_DIR, else ./data), carrying SEINTJE_JWT_ISSUER and SEINTJE_JWT_AUDIENCE when they are set. It never
creates a key: without one it fails and says where it looked. Grants are read, publish, subscribe and admin,
each optionally :FEEDGLOB, e.g. --scope "read:brk-* publish:brk-a". --ttl takes 90s, 15m, 1h or 7d.`,
  async run(args) {
    const { values } = parseArgs({
      args,
      options: {
        scope: { type: "string" },
        ttl: { type: "string", default: "1h" },
        sub: { type: "string" },
        "data-dir": { type: "string" },
      },
      strict: true,
    });
    const scope = values.scope?.trim().replace(/\s+/g, " ");
    if (!scope)
      throw new UsageError('token needs --scope "<grants>", e.g. --scope "read:brk-* publish:brk-a"', token);
    const notGrants = scope.split(" ").filter((word) => parseScope(word).length === 0);
    if (notGrants.length > 0) throw new UsageError(`not a grant: ${notGrants.join(", ")}`, token);
    const ttlSeconds = parseTtl(values.ttl);
    if (ttlSeconds === undefined) {
      throw new UsageError(`--ttl takes a duration like 90s, 15m, 1h or 7d, not "${values.ttl}"`, token);
    }
    const config = loadConfig();
    const key = await readSigningKey(values["data-dir"] ?? config.dataDir, config.keys.signing).catch(
      (error: unknown) => {
        throw error instanceof MissingSigningKey ? new CommandFailed(error.message) : error;
      },
    );
    const minted = await mintToken(key, {
      scope,
      subject: values.sub ?? "seintje-cli",
      ttlSeconds,
      issuer: config.auth.issuer,
      audience: config.auth.audience,
    });
    process.stdout.write(`${minted}\n`);
  },
};
