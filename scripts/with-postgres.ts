import { spawn } from "node:child_process";
import pg from "pg";
import { dropTestDatabases, POSTGRES_ADMIN_URL } from "../test/support/database.js";

/**
 * Runs a command (the integration suite) against PostgreSQL: `with-postgres <command...>`.
 *
 * When no server answers at SEINTJE_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres), the
 * run fails if SEINTJE_TEST_POSTGRES=required (as in CI), and otherwise says plainly that the PostgreSQL suite
 * was skipped and exits 0, so that `npm test` still passes on a machine without PostgreSQL.
 */

async function reachable(): Promise<Error | undefined> {
  const client = new pg.Client({ connectionString: POSTGRES_ADMIN_URL, connectionTimeoutMillis: 5_000 });
  try {
    await client.connect();
    await client.query("select 1");
    return undefined;
  } catch (error) {
    return error as Error;
  } finally {
    await client.end().catch(() => undefined);
  }
}

const command = process.argv.slice(2);
if (command.length === 0) {
  console.error("usage: with-postgres <command...>");
  process.exit(2);
}

const unreachable = await reachable();
if (unreachable) {
  const where = new URL(POSTGRES_ADMIN_URL);
  where.password = "";
  const message = `PostgreSQL at ${where.href} cannot be used (${unreachable.message})`;
  if (process.env.SEINTJE_TEST_POSTGRES === "required") {
    console.error(`FAILED: ${message}, and SEINTJE_TEST_POSTGRES=required.`);
    process.exit(1);
  }
  console.error(
    [
      "",
      "=".repeat(100),
      `SKIPPED: the PostgreSQL integration suite did not run. ${message}.`,
      "Start PostgreSQL there, or set SEINTJE_TEST_POSTGRES_URL, to run it; CI sets SEINTJE_TEST_POSTGRES=required.",
      "=".repeat(100),
      "",
    ].join("\n"),
  );
  process.exit(0);
}

await dropTestDatabases();
const child = spawn(command[0]!, command.slice(1), {
  stdio: "inherit",
  env: { ...process.env, SEINTJE_TEST_DIALECT: "postgres" },
});
const code = await new Promise<number>((resolve) =>
  child.once("exit", (exitCode, signal) => resolve(exitCode ?? (signal ? 1 : 0))),
);
const left = await dropTestDatabases();
if (left > 0) console.error(`dropped ${left} test database(s) left by the suite`);
process.exit(code);
