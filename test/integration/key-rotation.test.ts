import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { loadSigningKey } from "../../src/auth/keys.js";
import { mintToken } from "../../src/auth/tokens.js";
import { call } from "../support/http.js";
import { startTestService, tempDir } from "../support/service.js";
import { eventually } from "../support/wait.js";

/**
 * Rotating the token signing key without downtime (issue #23): the new key signs, the previous one keeps verifying
 * for SEINTJE_SIGNING_KEY_OVERLAP after the new one was first used, and both are published in the JWKS meanwhile.
 */

describe("a signing key rotation", () => {
  const keys = tempDir("seintje-rotation-");
  let oldFile: string;
  let newFile: string;
  before(async () => {
    // Two keys as two first starts make them.
    const oldDir = join(keys, "old");
    const newDir = join(keys, "new");
    await loadSigningKey(oldDir);
    await loadSigningKey(newDir);
    oldFile = join(oldDir, "signing-key.jwk");
    newFile = join(newDir, "signing-key.jwk");
  });
  after(() => rmSync(keys, { recursive: true, force: true }));

  const mint = async (file: string) =>
    mintToken(await loadSigningKey("", { file, name: "SEINTJE_SIGNING_KEY_FILE" }), {
      scope: "admin",
      subject: "rotation",
      ttlSeconds: 3600,
      issuer: undefined,
      audience: undefined,
    });

  it("verifies tokens of the previous key during the overlap and not after, and publishes both keys meanwhile", async () => {
    const oldToken = await mint(oldFile);
    const newToken = await mint(newFile);
    const svc = await startTestService({
      SEINTJE_SIGNING_KEY_FILE: newFile,
      SEINTJE_SIGNING_KEY_PREVIOUS_FILE: oldFile,
      SEINTJE_SIGNING_KEY_OVERLAP: "PT6S",
    });
    try {
      const started = Date.now();
      const feeds = (token: string) =>
        call(`${svc.url}/v1/feeds`, { headers: { authorization: `Bearer ${token}` } });
      const kids = async () =>
        (
          (await (await fetch(`${svc.url}/.well-known/jwks.json`)).json()) as {
            keys: Array<{ kid: string; d?: string }>;
          }
        ).keys;
      const oldKid = JSON.parse(readFileSync(oldFile, "utf8")).kid as string;
      const newKid = JSON.parse(readFileSync(newFile, "utf8")).kid as string;

      assert.equal((await feeds(newToken)).status, 200);
      assert.equal((await feeds(oldToken)).status, 200, "the previous key verifies during the overlap");
      const during = await kids();
      assert.deepEqual(during.map((key) => key.kid).sort(), [newKid, oldKid].sort());
      assert.ok(
        during.every((key) => key.d === undefined),
        "public keys only",
      );

      // The overlap (6 s from the new key's first use, a moment before `started`) passes; then the previous key
      // verifies nothing.
      await eventually(
        async () => (await feeds(oldToken)).status === 401,
        15_000,
        "the previous key to retire",
      );
      assert.ok(Date.now() - started >= 3000, `retired after ${Date.now() - started} ms`);
      const refused = await feeds(oldToken);
      assert.match(refused.headers.get("www-authenticate") ?? "", /invalid_token/);
      assert.deepEqual(
        (await kids()).map((key) => key.kid),
        [newKid],
      );
      assert.equal((await feeds(newToken)).status, 200, "the new key goes on");
    } finally {
      await svc.stop();
    }
  });
});
