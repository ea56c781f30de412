import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { loadSigningKey, type SigningKey } from "../../src/auth/keys.js";
import { mintToken, parseTtl } from "../../src/auth/tokens.js";
import {
  CLOCK_SKEW_SECONDS,
  InvalidToken,
  TokenVerifier,
  VERIFIED_TOKEN_MS,
} from "../../src/auth/verifier.js";

describe("remembering verified tokens", () => {
  let dir: string;
  let key: SigningKey;
  let verifier: TokenVerifier;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "seintje-verifier-"));
    key = await loadSigningKey(dir);
    verifier = new TokenVerifier({ signingKey: key, algorithms: ["EdDSA"], jwksCooldownMs: 0 });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("never accepts a token past its exp (and the clock skew) because it was verified before", async () => {
    const token = await mintToken(key, { scope: "read", subject: "s", ttlSeconds: 10 });
    const now = Date.now();
    assert.equal((await verifier.verify(token, now)).subject, "s");
    assert.equal((await verifier.verify(token, now + 9_000)).subject, "s", "remembered");
    await assert.rejects(
      verifier.verify(token, now + 10_000 + CLOCK_SKEW_SECONDS * 1000 + 1000),
      (error: unknown) => error instanceof InvalidToken && /expired/.test(error.description),
    );
  });

  it("verifies a long-lived token again once the memory of it lapses", async () => {
    const token = await mintToken(key, { scope: "read publish", subject: "t", ttlSeconds: 3600 });
    const now = Date.now();
    const first = await verifier.verify(token, now);
    assert.equal(await verifier.verify(token, now + 1000), first, "the remembered principal");
    const again = await verifier.verify(token, now + VERIFIED_TOKEN_MS + 1000);
    assert.notEqual(again, first, "verified anew");
    assert.deepEqual(again, first);
  });

  it("keeps the longest time to live the CLI takes inside the range of dates", async () => {
    const ttlSeconds = parseTtl("9999999d")!;
    assert.equal(parseTtl("99999999d"), undefined, "eight digits are refused");
    const principal = await verifier.verify(
      await mintToken(key, { scope: "read", subject: "v", ttlSeconds }),
    );
    const expires = new Date(principal.expiresAt!);
    assert.ok(Number.isFinite(expires.getTime()), "a valid date, never NaN");
    assert.ok(expires.getUTCFullYear() > 29_000);
  });

  it("remembers nothing of a token that did not verify", async () => {
    const token = await mintToken(key, { scope: "read", subject: "u", ttlSeconds: 3600 });
    const tampered = `${token.slice(0, -4)}AAAA`;
    for (let i = 0; i < 2; i += 1) await assert.rejects(verifier.verify(tampered), InvalidToken);
  });
});
