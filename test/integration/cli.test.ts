import assert from "node:assert/strict";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { decodeJwt } from "jose";
import { call } from "../support/http.js";
import { runCli, runToEnd, type ServerProcess, startServerProcess } from "../support/process.js";
import { tempDir, tokenFor } from "../support/service.js";
import { eventually } from "../support/wait.js";

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
    const server = await startServerProcess({
      SEINTJE_DATA_DIR: dir,
      SEINTJE_JWT_ISSUER: "https://seintje.example",
    });
    assert.ok(
      server.lines.some((line) => line.includes("generated a new signing key") && line.includes(dir)),
      "the first start says it made a key, and where",
    );
    try {
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

  it("never makes a key to mint with: elsewhere it fails, saying where it looked and how to point it", async () => {
    const elsewhere = tempDir("seintje-elsewhere-");
    try {
      // Run from another directory, as from docs/: the default data dir ./data holds no key.
      const result = await runToEnd(["token", "--scope", "read"], {}, 20_000, elsewhere);
      assert.equal(result.code, 1, result.stderr);
      assert.equal(result.stdout, "");
      assert.match(
        result.stderr,
        new RegExp(`no signing key at ${join(elsewhere, "data", "signing-key.jwk")}`),
      );
      assert.match(result.stderr, /--data-dir/);
      assert.match(result.stderr, /SEINTJE_DATA_DIR/);
      assert.equal(existsSync(join(elsewhere, "data")), false, "no key, no data dir made");
      // Named, the service's key is found from anywhere.
      const named = await runToEnd(["token", "--scope", "read", "--data-dir", dir], {}, 20_000, elsewhere);
      assert.equal(named.code, 0, named.stderr);
      assert.equal(decodeJwt(named.stdout.trim()).scope, "read");
    } finally {
      rmSync(elsewhere, { recursive: true, force: true });
    }
  });

  it("refuses a second process on the same SQLite file, and a taken port, with exit code 2", async () => {
    // SQLite on both runs of the suite: on PostgreSQL, several processes on one database is what scale-out is.
    const sqlite = { SEINTJE_DATA_DIR: dir, DATABASE_URL: `sqlite:${join(dir, "seintje.db")}` };
    const server = await startServerProcess(sqlite);
    const other = tempDir("seintje-port-");
    try {
      const second = await runToEnd(["serve"], sqlite);
      assert.equal(second.code, 2, second.stderr);
      assert.match(
        second.stderr,
        new RegExp(`${join(dir, "seintje.db")} is served by another seintje process`),
      );
      assert.match(second.stderr, /PostgreSQL/);

      const port = new URL(server.url).port;
      const taken = await runToEnd(["serve"], { SEINTJE_DATA_DIR: other, SEINTJE_PORT: port });
      assert.equal(taken.code, 2, taken.stderr);
      assert.match(taken.stderr, new RegExp(`SEINTJE_PORT: 127\\.0\\.0\\.1:${port} is in use`));
      assert.doesNotMatch(taken.stderr, /\n\s+at /, "no stack trace");
      assert.equal((await call(`${server.url}/healthz`)).status, 200, "the first one serves on");
    } finally {
      server.child.kill("SIGTERM");
      await server.exited;
      rmSync(other, { recursive: true, force: true });
    }
    // Once the first has stopped, the file is free again.
    const again = await startServerProcess(sqlite);
    // An answer shows that start-up is over, signal handlers included.
    assert.equal((await call(`${again.url}/healthz`)).status, 200);
    again.child.kill("SIGTERM");
    assert.equal(await again.exited, 0);
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

describe("the seintje commands that talk to a service", () => {
  const dir = tempDir("seintje-cli-client-");
  let server: ServerProcess;
  let env: Record<string, string>;
  before(async () => {
    server = await startServerProcess({ SEINTJE_DATA_DIR: dir, SEINTJE_RETENTION_INTERVAL: "1" });
    // Beside the service: the commands mint their own short-lived token with the key in the data dir.
    env = { SEINTJE_DATA_DIR: dir, SEINTJE_URL: server.url };
    const admin = { authorization: `Bearer ${await tokenFor(dir, "admin")}` };
    assert.equal((await call(`${server.url}/v1/feeds/cli`, { method: "PUT", headers: admin })).status, 201);
    const pruned = await call(`${server.url}/v1/feeds/cli-pruned`, {
      method: "PUT",
      headers: { ...admin, "content-type": "application/json" },
      body: JSON.stringify({ retention: { maxEvents: 1 } }),
    });
    assert.equal(pruned.status, 201);
  });
  after(async () => {
    server.child.kill("SIGTERM");
    await server.exited;
    rmSync(dir, { recursive: true, force: true });
  });

  it("publishes an event that tail then prints as a JSON line", async () => {
    const published = await runToEnd(
      ["publish", "cli", "--type", "nl.example.cli.published", "--subject", "s-1", "--data", '{"n": 1}'],
      env,
    );
    assert.equal(published.code, 0, published.stderr);
    const stored = JSON.parse(published.stdout);
    assert.equal(stored.sequence, "1");
    assert.match(published.stderr, /warning: \/source/, "the NL GOV profile's warning about the source");

    const tailed = await runToEnd(["tail", "cli", "--count", "1"], env);
    assert.equal(tailed.code, 0, tailed.stderr);
    const lines = tailed.stdout.trim().split("\n");
    assert.equal(lines.length, 1);
    const event = JSON.parse(lines[0]!);
    assert.equal(event.id, stored.id);
    assert.equal(event.type, "nl.example.cli.published");
    assert.deepEqual(event.data, { n: 1 });
    assert.equal(event.sequence, "1");
  });

  it("tails live events until it is interrupted, then exits 0", async () => {
    for (const mode of ["poll", "stream"]) {
      const child = runCli(["tail", "cli", "--after", "1", "--mode", mode], env);
      let stdout = "";
      child.stdout!.on("data", (chunk: Buffer) => {
        stdout += chunk;
      });
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
      await new Promise((resolve) => setTimeout(resolve, 700));
      const published = await runToEnd(["publish", "cli", "--type", `nl.example.cli.${mode}`], env);
      assert.equal(published.code, 0, published.stderr);
      await eventually(() => stdout.includes(`nl.example.cli.${mode}`), 10_000, `tail (${mode}) printed it`);
      child.kill("SIGINT");
      assert.equal(await exited, 0, mode);
    }
  });

  it("exits 3 when retention passed the cursor, saying where to resume", async () => {
    for (let i = 0; i < 3; i += 1) {
      assert.equal((await runToEnd(["publish", "cli-pruned", "--type", "nl.example.cli.p"], env)).code, 0);
    }
    await eventually(
      async () =>
        (
          await call(`${server.url}/v1/feeds/cli-pruned`, {
            headers: { authorization: `Bearer ${await tokenFor(dir, "read")}` },
          })
        ).body.oldest === "3",
      5000,
      "retention kept one event",
    );
    const tailed = await runToEnd(["tail", "cli-pruned", "--after", "1"], env);
    assert.equal(tailed.code, 3, tailed.stderr);
    assert.match(tailed.stderr, /oldest kept: 3/);
    assert.match(tailed.stderr, /--after 2/);
  });

  it("lists feeds and subscriptions", async () => {
    const feeds = await runToEnd(["feeds"], env);
    assert.equal(feeds.code, 0, feeds.stderr);
    assert.match(feeds.stdout, /^NAME\s+HEAD\s+OLDEST\s+RETENTION\s+DESCRIPTION$/m);
    assert.match(feeds.stdout, /^cli\s+\d+\s+1\s+-/m);
    assert.match(feeds.stdout, /^cli-pruned\s+\d+\s+\d+\s+1 events/m);
    const json = await runToEnd(["feeds", "--json"], env);
    assert.deepEqual(
      JSON.parse(json.stdout).map((feed: { name: string }) => feed.name),
      ["cli", "cli-pruned"],
    );
    const subscriptions = await runToEnd(["subscriptions"], env);
    assert.equal(subscriptions.code, 0, subscriptions.stderr);
    assert.match(subscriptions.stdout, /^ID\s+FEED\s+STATUS\s+ACKED\s+HEAD\s+SIGNED\s+URL$/m);
  });

  it("declares a type from a schema file, lists, shows and removes it, and publishing then meets the schema", async () => {
    const schemaFile = join(dir, "perceel.schema.json");
    writeFileSync(schemaFile, JSON.stringify({ type: "object", required: ["perceel"] }));
    const exampleFile = join(dir, "perceel.example.json");
    writeFileSync(exampleFile, JSON.stringify({ perceel: "4711" }));
    const type = "nl.example.cli.perceel";
    const put = await runToEnd(
      [
        "types",
        "put",
        "cli",
        type,
        "--schema",
        schemaFile,
        "--example",
        exampleFile,
        "--description",
        "Perceel",
      ],
      env,
    );
    assert.equal(put.code, 0, put.stderr);
    assert.deepEqual(JSON.parse(put.stdout).schema, { type: "object", required: ["perceel"] });

    const refused = await runToEnd(["publish", "cli", "--type", type, "--data", '{"n": 1}'], env);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /400 [\s\S]*\/data\/perceel: is required by the type's schema/);
    const accepted = await runToEnd(["publish", "cli", "--type", type, "--data", '{"perceel": "1"}'], env);
    assert.equal(accepted.code, 0, accepted.stderr);
    assert.equal((await runToEnd(["publish", "cli", "--type", "nl.example.cli.seen"], env)).code, 0);

    const list = await runToEnd(["types", "list", "cli"], env);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^TYPE\s+DECLARED\s+SCHEMA\s+COUNT\s+LAST PUBLISHED\s+DESCRIPTION$/m);
    assert.match(
      list.stdout,
      new RegExp(`^${type.replace(/\./g, "\\.")}\\s+yes\\s+yes\\s+1\\s+\\S+\\s+Perceel$`, "m"),
    );
    assert.match(list.stdout, /^nl\.example\.cli\.seen\s+no\s+-\s+1\s/m, "a type seen, not declared");
    const got = await runToEnd(["types", "get", "cli", type], env);
    assert.equal(JSON.parse(got.stdout).count, 1);

    const bad = await runToEnd(["types", "put", "cli", type, "--schema", join(dir, "missing.json")], env);
    assert.equal(bad.code, 2);
    const invalidFile = join(dir, "invalid.schema.json");
    writeFileSync(invalidFile, JSON.stringify({ type: "objec" }));
    const invalid = await runToEnd(["types", "put", "cli", type, "--schema", invalidFile], env);
    assert.equal(invalid.code, 1, "a schema that is not one is the service's 400");
    assert.match(invalid.stderr, /400 [\s\S]*\/schema\/type: /);

    assert.equal((await runToEnd(["types", "delete", "cli", type], env)).code, 0);
    const gone = await runToEnd(["types", "delete", "cli", type], env);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /404 /);
  });

  it("explains bad arguments with exit code 2 and refusals with exit code 1", async () => {
    for (const args of [
      ["publish", "cli"],
      ["publish", "--type", "nl.example.x"],
      ["publish", "cli", "--type", "nl.example.x", "--data", "{not json"],
      ["tail", "cli", "--mode", "push"],
      ["tail", "cli", "--after", "-1"],
      ["tail", "cli", "--after=x"],
      ["tail", "cli", "--count", "0"],
      ["feeds", "--colour"],
      ["types"],
      ["types", "show", "cli"],
      ["types", "get", "cli"],
      ["types", "list", "cli", "nl.example.x"],
      ["types", "list", "cli", "--deprecated"],
    ]) {
      const result = await runToEnd(args, env);
      assert.equal(result.code, 2, args.join(" "));
      assert.match(result.stderr, /^seintje: [\s\S]+\n\nUsage: seintje /, args.join(" "));
    }
    const missing = await runToEnd(["publish", "no-such-feed", "--type", "nl.example.x"], env);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /404 There is no feed named "no-such-feed"/);
    const badToken = await runToEnd(["feeds", "--token", "not-a-token"], env);
    assert.equal(badToken.code, 1);
    assert.match(badToken.stderr, /401 .*--token/);
    const unreachable = await runToEnd(["feeds", "--url", "http://127.0.0.1:9"], env);
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stderr, /cannot reach http:\/\/127\.0\.0\.1:9/);
  });

  it("has help for every command", async () => {
    for (const command of [
      "serve",
      "migrate",
      "backup",
      "token",
      "publish",
      "tail",
      "feeds",
      "types",
      "subscriptions",
    ]) {
      const help = await runToEnd(["help", command], {});
      assert.equal(help.code, 0, command);
      assert.match(help.stdout, new RegExp(`^Usage: seintje ${command}`), command);
      const flag = await runToEnd([command, "--help"], {});
      assert.equal(flag.stdout, help.stdout, command);
    }
    const list = await runToEnd(["help"], {});
    assert.match(list.stdout, /Exit codes: 0 done, 1 failed/);
  });
});
