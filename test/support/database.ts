import { basename } from "node:path";
import pg from "pg";

/**
 * The database the integration suite runs on. `npm test` runs it twice: on SQLite, and on PostgreSQL with
 * SEINTJE_TEST_DIALECT=postgres (see scripts/with-postgres.ts). On PostgreSQL every data dir a test makes gets a
 * database of its own, named after the dir, so a service restarted on the same dir finds its data again, and
 * two processes given the same dir share one database, as two nodes would.
 */

export const DIALECT: "sqlite" | "postgres" =
  process.env.SEINTJE_TEST_DIALECT === "postgres" ? "postgres" : "sqlite";

/** A server where the test user may create databases (trust authentication on this machine). */
export const POSTGRES_ADMIN_URL =
  process.env.SEINTJE_TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

/** Test databases all start with this; the wrapper drops any that are left over. */
export const TEST_DATABASE_PREFIX = "seintje_t_";

export function databaseName(dir: string): string {
  return `${TEST_DATABASE_PREFIX}${basename(dir).replace(/[^A-Za-z0-9_]/g, "_")}`.slice(0, 63);
}

export function databaseUrl(name: string): string {
  const url = new URL(POSTGRES_ADMIN_URL);
  url.pathname = `/${name}`;
  return url.href;
}

async function admin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: POSTGRES_ADMIN_URL, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

const quoted = (name: string) => `"${name.replace(/"/g, '""')}"`;

/** Creates the database unless it exists. */
export async function createDatabase(name: string): Promise<void> {
  await admin(async (client) => {
    try {
      await client.query(`CREATE DATABASE ${quoted(name)}`);
    } catch (error) {
      // 42P04: duplicate_database (made for the same dir before).
      if ((error as { code?: string }).code !== "42P04") throw error;
    }
  });
}

export async function dropDatabase(name: string): Promise<void> {
  await admin((client) => client.query(`DROP DATABASE IF EXISTS ${quoted(name)} WITH (FORCE)`));
}

/** Drops every test database (before and after a run). Returns how many there were. */
export async function dropTestDatabases(): Promise<number> {
  const names = await admin(async (client) => {
    const result = await client.query<{ datname: string }>(
      "select datname from pg_database where starts_with(datname, $1)",
      [TEST_DATABASE_PREFIX],
    );
    return result.rows.map((row) => row.datname);
  });
  for (const name of names) await dropDatabase(name);
  return names.length;
}

/**
 * What a service with data dir `dir` needs to run on the suite's dialect: nothing on SQLite (the file lives in
 * the dir), DATABASE_URL of the dir's own database on PostgreSQL.
 */
export async function databaseEnv(dir: string): Promise<Record<string, string>> {
  if (DIALECT === "sqlite") return {};
  const name = databaseName(dir);
  await createDatabase(name);
  return { DATABASE_URL: databaseUrl(name) };
}

/** Removes what databaseEnv made for `dir`. */
export async function dropDatabaseOf(dir: string): Promise<void> {
  if (DIALECT === "postgres") await dropDatabase(databaseName(dir));
}
