#!/usr/bin/env node
import { ConfigError, OPTIONS } from "../config.js";
import { VERSION } from "../version.js";
import { feeds, publish, subscriptions, tail, types } from "./client-commands.js";
import { type Command, CommandFailed, EXIT, UsageError } from "./command.js";
import { backup, migrateCommand, serve, token } from "./service-commands.js";

/**
 * The `seintje` command. Exit codes: 0 done, 1 failed (refused, unreachable, or an error while running), 2 bad
 * usage or configuration, 3 a cursor retention has passed (tail).
 */

const COMMANDS: readonly Command[] = [
  serve,
  migrateCommand,
  backup,
  token,
  publish,
  tail,
  feeds,
  types,
  subscriptions,
];

const USAGE = `Usage: seintje <command> [options]

Commands:
${COMMANDS.map((command) => `  ${command.name.padEnd(15)} ${command.summary}`).join("\n")}
  help [command]  show this text, or a command's

Options:
  -h, --help      show this text (after a command: the command's help)
  -v, --version   print the version

Exit codes: 0 done, 1 failed (refused by the service, unreachable, an error), 2 bad usage or configuration,
3 the cursor is gone (tail).

Configuration of the service comes from the environment:
${OPTIONS.map((option) => `  ${option.variable.padEnd(28)} ${option.meaning} (default ${option.default})`).join("\n")}

The commands that talk to a service (publish, tail, feeds, types, subscriptions) also read SEINTJE_URL and SEINTJE_TOKEN.
`;

function find(name: string): Command | undefined {
  return COMMANDS.find((command) => command.name === name);
}

/** Runs the command line; answers whether the process should exit now (false while it serves). */
async function main(argv: string[]): Promise<boolean> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "-h" || name === "--help") {
    process.stdout.write(USAGE);
    return true;
  }
  if (name === "-v" || name === "--version") {
    process.stdout.write(`${VERSION}\n`);
    return true;
  }
  if (name === "help") {
    const topic = rest[0] === undefined ? undefined : find(rest[0]);
    if (rest[0] !== undefined && !topic) throw new UsageError(`no command "${rest[0]}"`);
    process.stdout.write(topic ? `${topic.help}\n` : USAGE);
    return true;
  }
  const command = find(name);
  if (!command) throw new UsageError(`unknown command "${name}"`);
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(`${command.help}\n`);
    return true;
  }
  try {
    await command.run(rest);
    return !command.serves;
  } catch (error) {
    if (error instanceof TypeError && (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      throw new UsageError(error.message, command);
    }
    throw error;
  }
}

main(process.argv.slice(2)).then(
  // Done: exit now rather than when the HTTP client's idle keep-alive connections time out.
  (exit) => {
    if (exit) process.exit(EXIT.ok);
  },
  (error: unknown) => {
    if (error instanceof ConfigError) {
      process.stderr.write(`seintje: invalid configuration: ${error.message}\n`);
      process.exit(EXIT.usage);
    }
    if (error instanceof UsageError) {
      process.stderr.write(`seintje: ${error.message}\n\n${error.command?.help ?? USAGE}\n`);
      process.exit(EXIT.usage);
    }
    if (error instanceof CommandFailed) {
      process.stderr.write(`seintje: ${error.message}\n`);
      process.exit(error.code);
    }
    process.stderr.write(
      `seintje: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(EXIT.failed);
  },
);
