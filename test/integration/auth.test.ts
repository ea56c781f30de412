import assert from "node:assert/strict";
import { statSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type CryptoKey, exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";
import { call, cloudEvent, publish, putFeed } from "../support/http.js";
import { startTestService, type TestService, tempDir, tokenFor } from "../support/service.js";

const ISSUER = "https://idp.example.nl";
const AUDIENCE = "seintje";

interface TestKey {
  privateKey: CryptoKey;
  jwk: JWK;
}

async function testKey(alg: string, kid: string): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: "sig" } };
}

async function sign(
  key: TestKey,
  claims: Record<string, unknown>,
  options: { exp?: number | null; nbf?: number; iss?: string; aud?: string } = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: key.jwk.alg!, kid: key.jwk.kid })
    .setIssuedAt()
    .setSubject("tester")
    .setIssuer(options.iss ?? ISSUER)
    .setAudience(options.aud ?? AUDIENCE);
  if (options.exp !== null) jwt.setExpirationTime(options.exp ?? now + 600);
  if (options.nbf !== undefined) jwt.setNotBefore(options.nbf);
  return jwt.sign(key.privateKey);
}

function bearer(token: string) {
  return { authorization: `Bearer ${token}` };
}

/** A JWKS endpoint on loopback whose keys the test swaps. */
async function jwksServer(): Promise<{ url: string; keys: JWK[]; server: Server; fetches: number }> {
  const state = { url: "", keys: [] as JWK[], server: undefined as unknown as Server, fetches: 0 };
  state.server = createServer((_req, res) => {
    state.fetches += 1;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ keys: state.keys }));
  });
  await new Promise<void>((resolve) => state.server.listen(0, "127.0.0.1", resolve));
  state.url = `http://127.0.0.1:${(state.server.address() as AddressInfo).port}/jwks.json`;
  return state;
}

describe("authentication and authorization", () => {
  let svc: TestService;
  let jwks: Awaited<ReturnType<typeof jwksServer>>;
  let fileKey: TestKey;
  let remoteKey: TestKey;
  const tokensUsed: string[] = [];

  /** Signs with the JWKS-file key and remembers the token, so the log check can look for it. */
  async function token(scope: string, options: Parameters<typeof sign>[2] = {}): Promise<string> {
    const signed = await sign(fileKey, { scope }, options);
    tokensUsed.push(signed);
    return signed;
  }

  before(async () => {
    fileKey = await testKey("ES256", "file-1");
    remoteKey = await testKey("EdDSA", "remote-1");
    const dir = tempDir();
    const jwksFile = join(dir, "keys.json");
    writeFileSync(jwksFile, JSON.stringify({ keys: [fileKey.jwk] }));
    jwks = await jwksServer();
    jwks.keys = [remoteKey.jwk];
    svc = await startTestService(
      {
        SEINTJE_JWKS_FILE: jwksFile,
        SEINTJE_JWKS_URL: jwks.url,
        SEINTJE_JWT_ISSUER: ISSUER,
        SEINTJE_JWT_AUDIENCE: AUDIENCE,
        SEINTJE_JWKS_COOLDOWN: "0",
      },
      { dir },
    );
    for (const feed of ["brk-a", "brk-b", "zaken"]) assert.equal((await putFeed(svc.url, feed)).status, 201);
    await publish(svc.url, "brk-a", cloudEvent());
  });
  after(async () => {
    await svc.stop();
    jwks.server.closeAllConnections();
    jwks.server.close();
  });

  it("answers 401 without an error code when there is no token", async () => {
    for (const headers of [{ authorization: "" }, { authorization: "Basic dXNlcjpwYXNz" }]) {
      const reply = await call(`${svc.url}/v1/feeds/brk-a`, { headers });
      assert.equal(reply.status, 401);
      assert.equal(reply.headers.get("www-authenticate"), 'Bearer realm="seintje"');
      assert.equal(reply.headers.get("content-type"), "application/problem+json");
      assert.equal(reply.body.type, "urn:seintje:problem:unauthorized");
    }
  });

  it("answers 401 invalid_token for every kind of bad token", async () => {
    const now = Math.floor(Date.now() / 1000);
    const valid = await token("admin");
    const [header, payload] = valid.split(".");
    const tampered = `${header}.${Buffer.from(JSON.stringify({ scope: "admin", exp: now + 600 })).toString("base64url")}.${valid.split(".")[2]}`;
    const unsecured = `${Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url")}.${payload}.`;
    const hmac = await new SignJWT({ scope: "admin" })
      .setProtectedHeader({ alg: "HS256", kid: "file-1" })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setExpirationTime(now + 600)
      .sign(new TextEncoder().encode(JSON.stringify(fileKey.jwk)));
    const stranger = await sign(await testKey("ES256", "stranger"), { scope: "admin" });
    const es512 = await testKey("ES512", "file-1");
    const cases: Array<[string, string]> = [
      ["expired", await token("admin", { exp: now - 120 })],
      ["not yet valid", await token("admin", { nbf: now + 300 })],
      ["without exp", await token("admin", { exp: null })],
      ["tampered payload", tampered],
      ["alg none", unsecured],
      ["HMAC with the public key as secret", hmac],
      ["wrong issuer", await token("admin", { iss: "https://evil.example" })],
      ["wrong audience", await token("admin", { aud: "someone-else" })],
      ["unknown key", stranger],
      ["algorithm not allowed", await sign(es512, { scope: "admin" })],
      ["malformed", "abc.def"],
      ["garbage", "not-a-jwt"],
    ];
    for (const [name, bad] of cases) {
      tokensUsed.push(bad);
      const reply = await call(`${svc.url}/v1/feeds/brk-a/events`, { headers: bearer(bad) });
      assert.equal(reply.status, 401, name);
      assert.match(
        reply.headers.get("www-authenticate")!,
        /^Bearer realm="seintje", error="invalid_token"/,
        name,
      );
      assert.equal(reply.body.type, "urn:seintje:problem:unauthorized", name);
      assert.ok(!reply.text.includes(bad), `${name}: the problem does not echo the token`);
    }
    const emptyBearer = await call(`${svc.url}/v1/feeds`, { headers: { authorization: "Bearer " } });
    assert.equal(emptyBearer.status, 401);
    assert.match(emptyBearer.headers.get("www-authenticate")!, /invalid_token/);
  });

  it("tolerates a small clock skew on exp and nbf", async () => {
    const now = Math.floor(Date.now() / 1000);
    const justExpired = await token("read", { exp: now - 10 });
    assert.equal((await call(`${svc.url}/v1/feeds/brk-a`, { headers: bearer(justExpired) })).status, 200);
    const almostValid = await token("read", { nbf: now + 10 });
    assert.equal((await call(`${svc.url}/v1/feeds/brk-a`, { headers: bearer(almostValid) })).status, 200);
  });

  it("lets read:brk-* read brk-a but not zaken, and hints at no feed's existence", async () => {
    const reader = bearer(await token("read:brk-*"));
    assert.equal((await call(`${svc.url}/v1/feeds/brk-a`, { headers: reader })).status, 200);
    assert.equal((await call(`${svc.url}/v1/feeds/brk-a/events`, { headers: reader })).status, 200);
    assert.equal((await call(`${svc.url}/v1/feeds/brk-a/events/1`, { headers: reader })).status, 200);
    assert.equal((await call(`${svc.url}/v1/feeds/brk-nope`, { headers: reader })).status, 404);
    for (const path of [
      "/v1/feeds/zaken",
      "/v1/feeds/zaken/events",
      "/v1/feeds/zaken/events/1",
      "/v1/feeds/no-such-feed",
    ]) {
      const reply = await call(`${svc.url}${path}`, { headers: reader });
      assert.equal(reply.status, 403, path);
      assert.equal(reply.body.type, "urn:seintje:problem:forbidden");
      assert.match(reply.headers.get("www-authenticate")!, /error="insufficient_scope"/);
    }
    // A feed that exists and one that does not get the same answer.
    const existing = await call(`${svc.url}/v1/feeds/zaken`, { headers: reader });
    const missing = await call(`${svc.url}/v1/feeds/no-such-feed`, { headers: reader });
    assert.equal(existing.status, missing.status);
    assert.equal(existing.body.type, missing.body.type);
    // Nor may it publish or manage.
    assert.equal((await publish(svc.url, "brk-a", cloudEvent(), reader)).status, 403);
    assert.equal(
      (await call(`${svc.url}/v1/feeds/brk-a`, { method: "DELETE", headers: reader })).status,
      403,
    );
  });

  it("lists only the feeds the token may read", async () => {
    const reply = await call(`${svc.url}/v1/feeds`, {
      headers: bearer(await token("read:brk-* publish:zaken")),
    });
    assert.equal(reply.status, 200);
    assert.deepEqual(
      reply.body.feeds.map((feed: { name: string }) => feed.name),
      ["brk-a", "brk-b"],
    );
    const noRead = await call(`${svc.url}/v1/feeds`, { headers: bearer(await token("publish:zaken")) });
    assert.equal(noRead.status, 403);
    const exact = await call(`${svc.url}/v1/feeds`, { headers: bearer(await token("read:zaken")) });
    assert.deepEqual(
      exact.body.feeds.map((feed: { name: string }) => feed.name),
      ["zaken"],
    );
  });

  it("lets publish:brk-a publish to brk-a only, and not read", async () => {
    const publisher = bearer(await token("publish:brk-a"));
    assert.equal((await publish(svc.url, "brk-a", cloudEvent(), publisher)).status, 201);
    assert.equal((await publish(svc.url, "brk-b", cloudEvent(), publisher)).status, 403);
    assert.equal((await publish(svc.url, "brk-a1", cloudEvent(), publisher)).status, 403, "no implicit glob");
    assert.equal((await call(`${svc.url}/v1/feeds/brk-a/events`, { headers: publisher })).status, 403);
  });

  it("needs admin to create, replace and delete feeds; admin implies read and publish", async () => {
    const readWrite = bearer(await token("read publish subscribe"));
    assert.equal((await putFeed(svc.url, "brk-new", {})).status, 201);
    const put = await call(`${svc.url}/v1/feeds/brk-new`, { method: "PUT", headers: readWrite });
    assert.equal(put.status, 403);
    assert.equal(
      (await call(`${svc.url}/v1/feeds/brk-new`, { method: "DELETE", headers: readWrite })).status,
      403,
    );

    const scopedAdmin = bearer(await token("admin:brk-*"));
    assert.equal(
      (await call(`${svc.url}/v1/feeds/brk-c`, { method: "PUT", headers: scopedAdmin })).status,
      201,
    );
    assert.equal(
      (await call(`${svc.url}/v1/feeds/zaken-2`, { method: "PUT", headers: scopedAdmin })).status,
      403,
    );
    assert.equal((await publish(svc.url, "brk-c", cloudEvent(), scopedAdmin)).status, 201);
    assert.equal((await call(`${svc.url}/v1/feeds/brk-c/events`, { headers: scopedAdmin })).status, 200);
    assert.equal(
      (await call(`${svc.url}/v1/feeds/brk-c`, { method: "DELETE", headers: scopedAdmin })).status,
      204,
    );
    assert.equal((await publish(svc.url, "zaken", cloudEvent(), scopedAdmin)).status, 403);

    const subscribeOnly = bearer(await token("subscribe"));
    assert.equal((await call(`${svc.url}/v1/feeds/brk-a/events`, { headers: subscribeOnly })).status, 403);
  });

  it("keeps the open endpoints open", async () => {
    for (const path of ["/healthz", "/readyz"]) {
      assert.equal((await call(`${svc.url}${path}`, { headers: { authorization: "" } })).status, 200, path);
    }
    // The OpenAPI document is not served yet; its path must still not ask for a token.
    assert.notEqual(
      (await call(`${svc.url}/v1/openapi.json`, { headers: { authorization: "" } })).status,
      401,
    );
  });

  it("takes keys from the JWKS URL and picks up a rotated key with a new kid", async () => {
    const first = await sign(remoteKey, { scope: "read" });
    assert.equal((await call(`${svc.url}/v1/feeds/brk-a`, { headers: bearer(first) })).status, 200);
    const fetchesBefore = jwks.fetches;

    const rotated = await testKey("ES256", "remote-2");
    jwks.keys = [rotated.jwk];
    const second = await sign(rotated, { scope: "read" });
    assert.equal((await call(`${svc.url}/v1/feeds/brk-a`, { headers: bearer(second) })).status, 200);
    assert.ok(jwks.fetches > fetchesBefore, "the unknown kid made the service fetch the JWKS again");
    tokensUsed.push(first, second);
  });

  it("writes no token into any log line", async () => {
    assert.ok(svc.logs.length > 20);
    const logText = svc.logs.map((line) => JSON.stringify(line)).join("\n");
    for (const used of tokensUsed) {
      for (const part of used.split(".").filter((piece) => piece.length > 16)) {
        assert.ok(!logText.includes(part), "a token (or a part of one) reached the log");
      }
    }
    assert.ok(!/authorization/i.test(logText), "no Authorization header in the log");
  });
});

describe("the generated signing key", () => {
  it("is created with owner-only permissions and survives a restart", async () => {
    const dir = tempDir();
    const first = await startTestService({}, { dir });
    const token = await tokenFor(dir, "read");
    await first.stop();
    assert.equal(statSync(join(dir, "signing-key.jwk")).mode & 0o777, 0o600);

    const second = await startTestService({}, { dir });
    try {
      const reply = await call(`${second.url}/v1/feeds`, { headers: bearer(token) });
      assert.equal(reply.status, 200);
    } finally {
      await second.stop();
    }
  });
});

describe("a JWKS URL that does not answer", () => {
  it("answers 503, not 401, for a token whose key it cannot fetch", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const svc = await startTestService({ SEINTJE_JWKS_URL: `http://127.0.0.1:${port}/jwks.json` });
    try {
      const stranger = await sign(await testKey("ES256", "elsewhere"), { scope: "read" });
      const reply = await call(`${svc.url}/v1/feeds`, { headers: bearer(stranger) });
      assert.equal(reply.status, 503);
      assert.equal(reply.headers.get("retry-after"), "5");
      // The service's own tokens still work without the remote keys.
      assert.equal((await call(`${svc.url}/v1/feeds`)).status, 200);
    } finally {
      await svc.stop();
    }
  });
});

describe("SEINTJE_AUTH=off", () => {
  it("serves without tokens and says so loudly at start", async () => {
    const svc = await startTestService({ SEINTJE_AUTH: "off" });
    try {
      const reply = await call(`${svc.url}/v1/feeds/open`, { method: "PUT", headers: { authorization: "" } });
      assert.equal(reply.status, 201);
      const warning = svc.logs.find(
        (line) => line.level === 40 && /AUTHENTICATION IS OFF/.test(String(line.msg)),
      );
      assert.ok(warning, "a warning at start");
    } finally {
      await svc.stop();
    }
  });
});
