import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Webhook } from "standardwebhooks";
import { loadSigningKey } from "../../src/auth/keys.js";
import { ConfigError, loadConfig } from "../../src/config.js";
import { SecretBox } from "../../src/webhooks/secrets.js";
import { DIALECT, databaseEnv, dropDatabaseOf } from "../support/database.js";
import { call, cloudEvent, publish, putFeed, subscribe } from "../support/http.js";
import { runToEnd } from "../support/process.js";
import { startReceiver } from "../support/receiver.js";
import { startTestService, type TestService, tempDir } from "../support/service.js";

/**
 * Keys from the platform (issue #23): the sealing key and the signing key given as files or as variables win over
 * the data dir, which then holds neither; nodes started so share one database; a node with another key refuses.
 */

const CALLBACKS = { SEINTJE_CALLBACK_HTTP: "true", SEINTJE_CALLBACK_ALLOW: "127.0.0.1" };

/** Subscribes, publishes, and checks that the ping is signed with the secret the service sealed. */
async function pingsVerify(svc: TestService, feed = "keyed"): Promise<void> {
  const receiver = await startReceiver();
  try {
    await putFeed(svc.url, feed);
    const created = await subscribe(svc.url, { feed, url: receiver.url });
    assert.equal(created.status, 201, created.text);
    await publish(svc.url, feed, cloudEvent());
    const [ping] = await receiver.waitForPings(1);
    new Webhook(created.body.secret).verify(ping!.body, ping!.headers as Record<string, string>);
  } finally {
    await receiver.close();
  }
}

describe("keys from the platform", () => {
  const keys = tempDir("seintje-keys-");
  let signingFile: string;
  let secretsFile: string;
  before(async () => {
    // Made as a first start makes them, then handed over as a platform's secrets would be.
    await loadSigningKey(keys);
    await SecretBox.open(keys);
    signingFile = join(keys, "signing-key.jwk");
    secretsFile = join(keys, "webhook-secrets.key");
  });
  after(() => rmSync(keys, { recursive: true, force: true }));

  const dataDirHoldsNoKey = (dir: string) => {
    assert.equal(existsSync(join(dir, "signing-key.jwk")), false, "no signing key in the data dir");
    assert.equal(existsSync(join(dir, "webhook-secrets.key")), false, "no sealing key in the data dir");
  };

  it("takes both keys from files, writes neither into the data dir, and seintje token mints with them", async () => {
    const files = { SEINTJE_SIGNING_KEY_FILE: signingFile, SEINTJE_SECRETS_KEY_FILE: secretsFile };
    const svc = await startTestService({ ...CALLBACKS, ...files });
    try {
      await pingsVerify(svc);
      dataDirHoldsNoKey(svc.dir);
      const elsewhere = tempDir("seintje-elsewhere-");
      try {
        const minted = await runToEnd(["token", "--scope", "read"], files, 20_000, elsewhere);
        assert.equal(minted.code, 0, minted.stderr);
        const reply = await call(`${svc.url}/v1/feeds`, {
          headers: { authorization: `Bearer ${minted.stdout.trim()}` },
        });
        assert.equal(reply.status, 200, "the service knows the key the CLI minted with");
        assert.equal(existsSync(join(elsewhere, "data")), false);
      } finally {
        rmSync(elsewhere, { recursive: true, force: true });
      }
    } finally {
      await svc.stop();
    }
  });

  it("takes both keys as variables", async () => {
    const svc = await startTestService({
      ...CALLBACKS,
      SEINTJE_SIGNING_KEY: readFileSync(signingFile, "utf8"),
      SEINTJE_SECRETS_KEY: readFileSync(secretsFile, "utf8").trim(),
    });
    try {
      await pingsVerify(svc);
      dataDirHoldsNoKey(svc.dir);
    } finally {
      await svc.stop();
    }
  });

  it("refuses both forms at once, a file it cannot read, and a key that is not one, naming the variable", async () => {
    const refusals: Array<[Record<string, string>, string]> = [
      [{ SEINTJE_SECRETS_KEY: "x", SEINTJE_SECRETS_KEY_FILE: secretsFile }, "SEINTJE_SECRETS_KEY"],
      [{ SEINTJE_SIGNING_KEY_FILE: join(keys, "missing.jwk") }, "SEINTJE_SIGNING_KEY_FILE"],
    ];
    for (const [env, variable] of refusals) {
      assert.throws(
        () => loadConfig(env),
        (error: unknown) => error instanceof ConfigError && error.variable === variable,
      );
    }
    const notKeys: Array<[Record<string, string>, string]> = [
      [{ SEINTJE_SECRETS_KEY: "dG9vIHNob3J0" }, "SEINTJE_SECRETS_KEY"],
      [{ SEINTJE_SIGNING_KEY: "{not json" }, "SEINTJE_SIGNING_KEY"],
    ];
    for (const [env, variable] of notKeys) {
      await assert.rejects(startTestService(env), (error: unknown) => {
        assert.ok(error instanceof ConfigError, String(error));
        assert.equal(error.variable, variable);
        assert.doesNotMatch(error.message, /dG9vIHNob3J0|not json/, "the key itself is never in a message");
        return true;
      });
    }
  });

  it("lets nodes with no data dir copied share one database, keys from files or variables, and refuses a node with another sealing key", async () => {
    const shared = tempDir("seintje-shared-");
    const database =
      DIALECT === "postgres"
        ? await databaseEnv(shared)
        : { DATABASE_URL: `sqlite:${join(shared, "seintje.db")}` };
    const files = {
      ...CALLBACKS,
      ...database,
      SEINTJE_SIGNING_KEY_FILE: signingFile,
      SEINTJE_SECRETS_KEY_FILE: secretsFile,
    };
    const otherKey = join(keys, "other-secrets.key");
    writeFileSync(otherKey, `${Buffer.alloc(32, 7).toString("base64")}\n`, { mode: 0o600 });
    const first = await startTestService(files);
    try {
      await pingsVerify(first);
      // SQLite serves one process at a time: there the second node starts after the first; on PostgreSQL beside it.
      if (DIALECT === "sqlite") await first.stop();
      // The second node takes the same keys as variables: files on one node, variables on another, one database.
      const { SEINTJE_SIGNING_KEY_FILE: _signing, SEINTJE_SECRETS_KEY_FILE: _secrets, ...rest } = files;
      const second = await startTestService({
        ...rest,
        SEINTJE_SIGNING_KEY: readFileSync(signingFile, "utf8"),
        SEINTJE_SECRETS_KEY: readFileSync(secretsFile, "utf8").trim(),
      });
      try {
        dataDirHoldsNoKey(second.dir);
        await pingsVerify(second, "keyed-too");
        const feeds = await call(`${second.url}/v1/feeds`);
        assert.deepEqual(
          feeds.body.feeds.map((feed: { name: string }) => feed.name),
          ["keyed", "keyed-too"],
          "the second node sees the first one's feed",
        );
      } finally {
        await second.stop();
      }
      await assert.rejects(
        startTestService({ ...files, SEINTJE_SECRETS_KEY_FILE: otherKey }),
        (error: unknown) =>
          error instanceof ConfigError &&
          error.variable === "SEINTJE_SECRETS_KEY_FILE" &&
          error.message.includes(otherKey),
      );
    } finally {
      await first.stop();
      rmSync(shared, { recursive: true, force: true });
      await dropDatabaseOf(shared);
    }
  });
});
