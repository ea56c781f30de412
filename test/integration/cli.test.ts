import assert from "node:assert/strict";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { decodeJwt } from "jose";
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

  it("mints a token with the generated key that the service accepts", async () => {
    const minted = await runToEnd(
      ["token", "--scope", "read:brk-* publish:brk-a", "--ttl", "10m", "--sub", "alice"],
      {
        SEINTJE_DATA_DIR: dir,
        SEINTJE_JWT_ISSUER: "https://seintje.example",
      },
    );
    assert.equal(minted.code, 0, minted.stderr);
    const token = minted.stdout.trim();
    const claims = decodeJwt(token);
    assert.equal(claims.scope, "read:brk-* publish:brk-a");
    assert.equal(claims.sub, "alice");
    assert.equal(claims.iss, "https://seintje.example");
    assert.ok(claims.exp! - claims.iat! === 600);

    const server = await startServerProcess({
      SEINTJE_DATA_DIR: dir,
      SEINTJE_JWT_ISSUER: "https://seintje.example",
    });
    try {
      const allowed = await call(`${server.url}/v1/feeds`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(allowed.status, 200);
      const refused = await call(`${server.url}/v1/feeds/zaken`, {
        headers: { authorization: `Bearer ${token}` },
      });
      assert.equal(refused.status, 403);
    } finally {
      server.child.kill("SIGTERM");
      await server.exited;
    }
  });

  it("refuses a token request without grants, with a bad grant or a bad ttl", async () => {
    for (const args of [
      ["token"],
      ["token", "--scope", "write:brk"],
      ["token", "--scope", "read", "--ttl", "forever"],
    ]) {
      const result = await runToEnd(args, { SEINTJE_DATA_DIR: dir });
      assert.equal(result.code, 2, args.join(" "));
      assert.equal(result.stdout, "");
    }
  });

  it("serves, and stops cleanly on SIGTERM", async () => {
    const server = await startServerProcess({ SEINTJE_DATA_DIR: dir });
    assert.equal((await call(`${server.url}/healthz`)).status, 200);
    server.child.kill("SIGTERM");
    assert.equal(await server.exited, 0);
    assert.ok(server.lines.some((line) => line.includes("seintje stopped")));
  });

  it("still stops on SIGTERM when nothing reads its log any more", async () => {
    const server = await startServerProcess({ SEINTJE_DATA_DIR: dir, SEINTJE_AUTH: "off" });
    // Requests keep log lines in flight while the signal arrives and the reader of stdout goes away, as when a
    // supervisor and its log pipe die together.
    const load = Promise.all(
      Array.from({ length: 20 }, async () => {
        for (let i = 0; i < 20; i += 1) await fetch(`${server.url}/healthz`).catch(() => undefined);
      }),
    );
    await new Promise((resolve) => setTimeout(resolve, 20));
    server.child.kill("SIGTERM");
    server.child.stdout!.destroy();
    await load;
    const timer = setTimeout(() => server.child.kill("SIGKILL"), 10_000);
    const exited = await server.exited;
    clearTimeout(timer);
    assert.equal(exited, 0, "exited by itself, not killed after 10 s");
  });
});
