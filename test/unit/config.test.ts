import assert from "node:assert/strict";
import { resolve } from "node:path";
import { describe, it } from "node:test";
import { ConfigError, loadConfig, OPTIONS, unknownVariables } from "../../src/config.js";

describe("configuration", () => {
  it("has the contract's defaults", () => {
    const config = loadConfig({});
    assert.equal(config.host, "127.0.0.1");
    assert.equal(config.port, 8080);
    assert.deepEqual(config.database, { dialect: "sqlite", filename: resolve("data/seintje.db") });
    assert.equal(config.dataDir, resolve("data"));
    assert.equal(config.publicUrl, undefined);
    assert.match(config.source, /^urn:seintje:/);
    assert.equal(config.autoCreateFeeds, false);
    assert.equal(config.retentionIntervalSeconds, 60);
    assert.deepEqual(config.auth, {
      enabled: true,
      jwksUrl: undefined,
      jwksFile: undefined,
      issuer: undefined,
      audience: undefined,
      algorithms: ["ES256", "ES384", "EdDSA", "RS256", "PS256"],
      jwksCooldownSeconds: 30,
    });
    assert.equal(loadConfig({ SEINTJE_AUTH: "off" }).auth.enabled, false);
  });

  it("has operational limits that a production service needs, each configurable", () => {
    const defaults = loadConfig({});
    assert.deepEqual(defaults.limits, {
      maxRequestBytes: 1024 * 1024,
      headersTimeoutMs: 20_000,
      requestTimeoutMs: 60_000,
      maxStreams: 10_000,
      maxLongPolls: 10_000,
      publishRate: 0,
    });
    assert.equal(defaults.metrics, "open");
    assert.equal(defaults.shutdownTimeoutMs, 10_000);
    const set = loadConfig({
      SEINTJE_MAX_REQUEST_BYTES: "65536",
      SEINTJE_HEADERS_TIMEOUT: "2.5",
      SEINTJE_REQUEST_TIMEOUT: "5",
      SEINTJE_MAX_STREAMS: "0",
      SEINTJE_MAX_LONGPOLLS: "20",
      SEINTJE_PUBLISH_RATE: "100",
      SEINTJE_METRICS: "token",
      SEINTJE_SHUTDOWN_TIMEOUT: "30",
    });
    assert.deepEqual(set.limits, {
      maxRequestBytes: 65536,
      headersTimeoutMs: 2500,
      requestTimeoutMs: 5000,
      maxStreams: 0,
      maxLongPolls: 20,
      publishRate: 100,
    });
    assert.equal(set.metrics, "token");
    assert.equal(set.shutdownTimeoutMs, 30_000);
  });

  it("puts the SQLite file in the data directory unless DATABASE_URL says otherwise", () => {
    assert.equal(loadConfig({ SEINTJE_DATA_DIR: "/srv/seintje" }).database.dialect, "sqlite");
    assert.deepEqual(loadConfig({ SEINTJE_DATA_DIR: "/srv/seintje" }).database, {
      dialect: "sqlite",
      filename: "/srv/seintje/seintje.db",
    });
    assert.deepEqual(loadConfig({ DATABASE_URL: "sqlite:/tmp/x.db" }).database, {
      dialect: "sqlite",
      filename: "/tmp/x.db",
    });
  });

  it("takes a postgres:// URL with pool sizes", () => {
    const url = "postgres://seintje@db.internal:5432/seintje";
    assert.deepEqual(loadConfig({ DATABASE_URL: url }).database, {
      dialect: "postgres",
      url,
      pool: { min: 0, max: 10 },
    });
    assert.deepEqual(
      loadConfig({ DATABASE_URL: url, SEINTJE_DB_POOL_MIN: "2", SEINTJE_DB_POOL_MAX: "4" }).database,
      { dialect: "postgres", url, pool: { min: 2, max: 4 } },
    );
  });

  it("names the bad variable", () => {
    const cases: Array<[Record<string, string>, string]> = [
      [{ SEINTJE_PORT: "eighty" }, "SEINTJE_PORT"],
      [{ SEINTJE_PORT: "70000" }, "SEINTJE_PORT"],
      [{ SEINTJE_AUTO_CREATE_FEEDS: "maybe" }, "SEINTJE_AUTO_CREATE_FEEDS"],
      [{ SEINTJE_PUBLIC_URL: "ftp://x" }, "SEINTJE_PUBLIC_URL"],
      [{ DATABASE_URL: "mysql://x" }, "DATABASE_URL"],
      [{ DATABASE_URL: "postgres://127.0.0.1:port/x" }, "DATABASE_URL"],
      [{ DATABASE_URL: "postgres://127.0.0.1/x", SEINTJE_DB_POOL_MAX: "1" }, "SEINTJE_DB_POOL_MAX"],
      [
        { DATABASE_URL: "postgres://127.0.0.1/x", SEINTJE_DB_POOL_MIN: "5", SEINTJE_DB_POOL_MAX: "4" },
        "SEINTJE_DB_POOL_MIN",
      ],
      [{ SEINTJE_RETENTION_INTERVAL: "0" }, "SEINTJE_RETENTION_INTERVAL"],
      [{ SEINTJE_LOG_LEVEL: "loud" }, "SEINTJE_LOG_LEVEL"],
      [{ SEINTJE_AUTH: "maybe" }, "SEINTJE_AUTH"],
      [{ SEINTJE_JWKS_URL: "file:///etc/keys" }, "SEINTJE_JWKS_URL"],
      [{ SEINTJE_JWT_ALGORITHMS: "ES256 HS256" }, "SEINTJE_JWT_ALGORITHMS"],
      [{ SEINTJE_JWT_ALGORITHMS: "none" }, "SEINTJE_JWT_ALGORITHMS"],
      [{ SEINTJE_MAX_REQUEST_BYTES: "1000" }, "SEINTJE_MAX_REQUEST_BYTES"],
      [{ SEINTJE_MAX_STREAMS: "-1" }, "SEINTJE_MAX_STREAMS"],
      [{ SEINTJE_MAX_LONGPOLLS: "many" }, "SEINTJE_MAX_LONGPOLLS"],
      [{ SEINTJE_PUBLISH_RATE: "1.5" }, "SEINTJE_PUBLISH_RATE"],
      [{ SEINTJE_HEADERS_TIMEOUT: "0" }, "SEINTJE_HEADERS_TIMEOUT"],
      [{ SEINTJE_HEADERS_TIMEOUT: "30", SEINTJE_REQUEST_TIMEOUT: "10" }, "SEINTJE_REQUEST_TIMEOUT"],
      [{ SEINTJE_SHUTDOWN_TIMEOUT: "never" }, "SEINTJE_SHUTDOWN_TIMEOUT"],
      [{ SEINTJE_METRICS: "public" }, "SEINTJE_METRICS"],
      // Durations whose arithmetic leaves the range of dates would never apply (NaN compares false).
      [{ SEINTJE_PING_DISABLE_AFTER: "P300000Y" }, "SEINTJE_PING_DISABLE_AFTER"],
      [{ SEINTJE_PING_ATTEMPTS_KEEP: "P99999999999999999999Y" }, "SEINTJE_PING_ATTEMPTS_KEEP"],
      [{ SEINTJE_PING_ATTEMPTS_KEEP: "PT99999999999999H" }, "SEINTJE_PING_ATTEMPTS_KEEP"],
    ];
    for (const [env, variable] of cases) {
      assert.throws(
        () => loadConfig(env),
        (error: unknown) =>
          error instanceof ConfigError && error.variable === variable && error.message.startsWith(variable),
      );
    }
  });

  it("reads booleans and a public URL", () => {
    const config = loadConfig({
      SEINTJE_AUTO_CREATE_FEEDS: "true",
      SEINTJE_PUBLIC_URL: "https://feeds.example.nl/",
    });
    assert.equal(config.autoCreateFeeds, true);
    assert.equal(config.publicUrl, "https://feeds.example.nl");
  });

  it("takes every default from the option table: setting a variable to its shown default changes nothing", () => {
    const defaults = loadConfig({});
    let literal = 0;
    for (const option of OPTIONS) {
      if (option.default === "unset" || option.default === "empty" || option.default.includes("<")) continue;
      literal += 1;
      assert.deepEqual(loadConfig({ [option.variable]: option.default }), defaults, option.variable);
    }
    assert.ok(literal >= 25, `${literal} options with a literal default`);
  });

  it("spots unknown SEINTJE_ variables", () => {
    assert.deepEqual(unknownVariables({ SEINTJE_PROT: "1", SEINTJE_PORT: "1", HOME: "/" }), ["SEINTJE_PROT"]);
    assert.deepEqual(unknownVariables({ SEINTJE_URL: "http://x", SEINTJE_TOKEN: "t" }), [], "the CLI's own");
  });
});
