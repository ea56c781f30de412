import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { loadSigningKey } from "../../src/auth/keys.js";
import { mintToken } from "../../src/auth/tokens.js";
import { loadConfig } from "../../src/config.js";
import type { KeySource } from "../../src/files.js";
import { createLogger } from "../../src/logger.js";
import { type Service, type StartOptions, startService } from "../../src/service.js";
import { databaseEnv, dropDatabaseOf } from "./database.js";
import { useToken } from "./http.js";

/**
 * A token signed with the generated key in `dir` (or with the key `source` names: SEINTJE_SIGNING_KEY(_FILE)), as
 * `seintje token` would mint it.
 */
export async function tokenFor(
  dir: string,
  scope: string,
  claims: {
    ttlSeconds?: number;
    subject?: string;
    issuer?: string | undefined;
    audience?: string | undefined;
  } = {},
  source: KeySource = {},
): Promise<string> {
  return mintToken(await loadSigningKey(dir, source), {
    scope,
    subject: claims.subject ?? "test",
    ttlSeconds: claims.ttlSeconds ?? 3600,
    issuer: claims.issuer,
    audience: claims.audience,
  });
}

/**
 * A real seintje on 127.0.0.1:<free port> with its own database: a SQLite file in a fresh temp dir, or on the
 * PostgreSQL run a database of its own (see database.ts). Authentication is on, as
 * in production; `call` sends an admin token to it unless a test sets its own Authorization header.
 */
export interface TestService {
  url: string;
  service: Service;
  dir: string;
  /** Every log line the service wrote, parsed. */
  logs: Array<Record<string, unknown>>;
  stop(): Promise<void>;
}

export function tempDir(prefix = "seintje-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export async function startTestService(
  env: Record<string, string> = {},
  options: StartOptions & { dir?: string } = {},
): Promise<TestService> {
  const dir = options.dir ?? tempDir();
  const config = loadConfig({
    SEINTJE_DATA_DIR: dir,
    SEINTJE_PORT: "0",
    SEINTJE_LOG_LEVEL: "info",
    ...(await databaseEnv(dir)),
    ...env,
  });
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString("utf8").split("\n")) if (line) logs.push(JSON.parse(line));
      done();
    },
  });
  const service = await startService(config, createLogger(config.logLevel, sink), options);
  if (config.auth.enabled)
    useToken(
      service.url,
      await tokenFor(
        dir,
        "admin",
        { issuer: config.auth.issuer, audience: config.auth.audience },
        config.keys.signing,
      ),
    );
  return {
    url: service.url,
    service,
    dir,
    logs,
    async stop() {
      useToken(service.url, undefined);
      await service.stop(1000);
      if (!options.dir) {
        rmSync(dir, { recursive: true, force: true });
        await dropDatabaseOf(dir);
      }
    },
  };
}
