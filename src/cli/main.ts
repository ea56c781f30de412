#!/usr/bin/env node
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { parseScope } from "../auth/grants.js";
import { loadSigningKey } from "../auth/keys.js";
import { mintToken, parseTtl } from "../auth/tokens.js";
import { ConfigError, loadConfig, OPTIONS, unknownVariables } from "../config.js";
import { backupSqlite } from "../db/backup.js";
import { migrate, openStorage } from "../db/database.js";
import { createLogger } from "../logger.js";
import { startService } from "../service.js";
import { VERSION } from "../version.js";

/**
 * The `seintje` command. Exit codes: 0 done, 1 failed while running, 2 bad usage or configuration.
 */

const USAGE = `Usage: seintje <command> [options]

Commands:
  serve [--no-migrate]   run the service (migrates the database first unless --no-migrate)
  migrate                bring the database schema up to date and exit
  backup <file>          copy the SQLite database to a new file while the service runs
                         (on PostgreSQL use pg_dump; see docs/OPERATIONS.md)
  token --scope "<grants>" [--ttl 1h] [--sub NAME]
                         print a token signed with the service's generated key; grants are
                         read, publish, subscribe, admin, each optionally :FEEDGLOB (read:brk-*)
  help                   show this text

Options:
  -h, --help             show this text
  -v, --version          print the version

Configuration comes from the environment:
${OPTIONS.map((option) => `  ${option.variable.padEnd(28)} ${option.meaning} (default ${option.default})`).join("\n")}
`;

/** How long after the shutdown timeout a stopping process exits regardless. */
const FORCED_EXIT_MARGIN_MS = 5000;

function usageError(message: string): never {
  process.stderr.write(`seintje: ${message}\n\n${USAGE}`);
  process.exit(2);
}

function configOrExit() {
  try {
    return loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`seintje: invalid configuration: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
}

async function serve(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { "no-migrate": { type: "boolean" } }, strict: true });
  const config = configOrExit();
  const logger = createLogger(config.logLevel);
  for (const name of unknownVariables()) logger.warn({ variable: name }, "unknown SEINTJE_ variable ignored");
  const service = await startService(config, logger, { migrate: !values["no-migrate"] });

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals += 1;
    if (signals > 1) {
      logger.warn({ signal }, "second signal: exiting now");
      process.exit(1);
    }
    logger.info({ signal }, "stopping");
    // stop() is bounded by the grace period plus closing the database; should anything hang past that margin,
    // the process still ends.
    setTimeout(() => {
      logger.error({ timeoutMs: config.shutdownTimeoutMs }, "stopping took too long: exiting now");
      process.exit(1);
    }, config.shutdownTimeoutMs + FORCED_EXIT_MARGIN_MS).unref();
    service.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, "stopping failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}

async function migrateCommand(args: string[]): Promise<void> {
  parseArgs({ args, options: {}, strict: true });
  const config = configOrExit();
  const storage = await openStorage(config.database);
  try {
    const ran = await migrate(storage);
    process.stdout.write(ran.length > 0 ? `applied: ${ran.join(", ")}\n` : "the schema is up to date\n");
  } finally {
    await storage.close();
  }
}

async function backupCommand(args: string[]): Promise<void> {
  const { positionals } = parseArgs({ args, options: {}, allowPositionals: true, strict: true });
  if (positionals.length !== 1)
    usageError("backup takes one argument: the file to write, e.g. backup ./seintje-backup.db");
  const config = configOrExit();
  if (config.database.dialect !== "sqlite") {
    process.stderr.write(
      "seintje: backup copies SQLite databases; for PostgreSQL use pg_dump (see docs/OPERATIONS.md)\n",
    );
    process.exit(2);
  }
  let result: ReturnType<typeof backupSqlite>;
  try {
    result = backupSqlite(config.database.filename, resolve(positionals[0]!));
  } catch (error) {
    process.stderr.write(`seintje: backup failed: ${(error as Error).message}\n`);
    process.exit(1);
  }
  process.stdout.write(
    `backed up ${result.feeds} feed(s) and ${result.events} event(s) to ${result.path} (${result.bytes} bytes)\n` +
      `keep ${config.dataDir}/signing-key.jwk and webhook-secrets.key with it: the backup holds neither\n`,
  );
}

async function tokenCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { scope: { type: "string" }, ttl: { type: "string", default: "1h" }, sub: { type: "string" } },
    strict: true,
  });
  const scope = values.scope?.trim().replace(/\s+/g, " ");
  if (!scope) usageError('token needs --scope "<grants>", e.g. --scope "read:brk-* publish:brk-a"');
  const notGrants = scope.split(" ").filter((word) => parseScope(word).length === 0);
  if (notGrants.length > 0) usageError(`not a grant: ${notGrants.join(", ")}`);
  const ttlSeconds = parseTtl(values.ttl);
  if (ttlSeconds === undefined)
    usageError(`--ttl takes a duration like 90s, 15m, 1h or 7d, not "${values.ttl}"`);
  const config = configOrExit();
  const key = await loadSigningKey(config.dataDir);
  const token = await mintToken(key, {
    scope,
    subject: values.sub ?? "seintje-cli",
    ttlSeconds,
    issuer: config.auth.issuer,
    audience: config.auth.audience,
  });
  process.stdout.write(`${token}\n`);
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case "serve":
      return serve(rest);
    case "migrate":
      return migrateCommand(rest);
    case "token":
      return tokenCommand(rest);
    case "backup":
      return backupCommand(rest);
    case undefined:
    case "help":
    case "-h":
    case "--help":
      process.stdout.write(USAGE);
      return;
    case "-v":
    case "--version":
      process.stdout.write(`${VERSION}\n`);
      return;
    default:
      usageError(`unknown command "${command}"`);
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof ConfigError) {
    process.stderr.write(`seintje: invalid configuration: ${error.message}\n`);
    process.exit(2);
  }
  if (error instanceof TypeError && (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
    usageError(error.message);
  }
  process.stderr.write(
    `seintje: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
