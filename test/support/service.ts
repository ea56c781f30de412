import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { loadConfig } from "../../src/config.js";
import { createLogger } from "../../src/logger.js";
import { type Service, type StartOptions, startService } from "../../src/service.js";

/** A real seintje on 127.0.0.1:<free port> with its own SQLite file in a fresh temp dir. */
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
  const config = loadConfig({ SEINTJE_DATA_DIR: dir, SEINTJE_PORT: "0", SEINTJE_LOG_LEVEL: "info", ...env });
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString("utf8").split("\n")) if (line) logs.push(JSON.parse(line));
      done();
    },
  });
  const service = await startService(config, createLogger(config.logLevel, sink), options);
  return {
    url: service.url,
    service,
    dir,
    logs,
    async stop() {
      await service.stop(1000);
      if (!options.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}
