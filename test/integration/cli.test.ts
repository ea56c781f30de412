import assert from "node:assert/strict";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { call } from "../support/http.js";
import { runToEnd, startServerProcess } from "../support/process.js";
import { tempDir } from "../support/service.js";

describe("the seintje command", () => {
  const dir = tempDir("seintje-cli-");
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("refuses a bad configuration with exit code 2, naming the variable", async () => {
    const result = await runToEnd(["serve"], { SEINTJE_DATA_DIR: dir, SEINTJE_PORT: "not-a-port" });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /SEINTJE_PORT/);
  });

  it("refuses unknown commands and options with exit code 2 and the usage", async () => {
    const unknown = await runToEnd(["frobnicate"], {});
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /Usage: seintje/);
    const badOption = await runToEnd(["serve", "--colour"], { SEINTJE_DATA_DIR: dir });
    assert.equal(badOption.code, 2);
  });

  it("prints help and the version", async () => {
    const help = await runToEnd(["--help"], {});
    assert.equal(help.code, 0);
    assert.match(help.stdout, /serve/);
    assert.match(help.stdout, /SEINTJE_AUTO_CREATE_FEEDS/);
    const version = await runToEnd(["--version"], {});
    assert.equal(version.code, 0);
    assert.match(version.stdout, /^\d+\.\d+\.\d+\n$/);
  });

  it("migrates a database and says when it is current", async () => {
    const env = { DATABASE_URL: `sqlite:${join(dir, "migrated.db")}` };
    const first = await runToEnd(["migrate"], env);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /applied: 20261123_001_feeds_and_events/);
    assert.ok(existsSync(join(dir, "migrated.db")));
    const second = await runToEnd(["migrate"], env);
    assert.equal(second.code, 0);
    assert.match(second.stdout, /up to date/);
  });

  it("serves, and stops cleanly on SIGTERM", async () => {
    const server = await startServerProcess({ SEINTJE_DATA_DIR: dir });
    assert.equal((await call(`${server.url}/healthz`)).status, 200);
    server.child.kill("SIGTERM");
    assert.equal(await server.exited, 0);
    assert.ok(server.lines.some((line) => line.includes("seintje stopped")));
  });
});
