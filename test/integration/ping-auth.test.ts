import assert from "node:assert/strict";
import { createHash, createPublicKey, verify } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from "jose";
import { PingVerificationError, verifyPing, verifyPingJwt } from "../../src/client/index.js";
import { call, cloudEvent, publish, putFeed, subscribe as subscribeTo } from "../support/http.js";
import { runToEnd } from "../support/process.js";
import { type Receiver, startReceiver } from "../support/receiver.js";
import { startTestService, type TestService, tokenFor } from "../support/service.js";
import { eventually } from "../support/wait.js";

/**
 * Pings a receiver can trust its own way (contract 1.1): Ed25519 signatures (v1a) checked with Node's own verify as
 * the Standard Webhooks spec describes, a JWT checked with jose against the service's published JWKS, and a static
 * Authorization value that is sent verbatim and shown nowhere.
 */

const HOOKS = {
  SEINTJE_CALLBACK_HTTP: "true",
  SEINTJE_CALLBACK_ALLOW: "127.0.0.1",
  SEINTJE_PING_RETRY: "0.2",
  SEINTJE_SOURCE: "urn:nld:oin:00000001823288444000:systeem:seintje-test",
};

/** Node's own Ed25519 verify over "id.timestamp.body", with the raw 32-byte public key the subscription shows. */
function ed25519Verifies(
  publicKey: string,
  id: string,
  timestamp: string,
  body: string,
  signature: string,
): boolean {
  const raw = Buffer.from(publicKey.replace(/^whpk_/, ""), "base64");
  assert.equal(raw.length, 32);
  const key = createPublicKey({
    key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") },
    format: "jwk",
  });
  return verify(null, Buffer.from(`${id}.${timestamp}.${body}`), key, Buffer.from(signature, "base64"));
}

describe("ping authentication", () => {
  let svc: TestService;
  let receiver: Receiver;
  let feeds = 0;
  before(async () => {
    svc = await startTestService(HOOKS);
    receiver = await startReceiver();
  });
  after(async () => {
    await svc.stop();
    await receiver.close();
  });

  async function subscribe(extra: Record<string, unknown>) {
    feeds += 1;
    const feed = `auth-${feeds}`;
    await putFeed(svc.url, feed);
    const created = await subscribeTo(svc.url, { feed, url: receiver.url, ...extra });
    return { feed, created };
  }

  async function nextPing(id: string, count: number) {
    const mine = () => receiver.pings.filter((ping) => ping.event.data.subscription === id);
    await eventually(() => mine().length >= count, 5000, `ping ${count} of ${id}`);
    return mine()[count - 1]!;
  }

  it("signs v1a pings with Ed25519, verifiable with the public key the subscription shows, before and after a rotation", async () => {
    const { feed, created } = await subscribe({ signature: "v1a" });
    assert.equal(created.status, 201, created.text);
    assert.equal(created.body.signature, "v1a");
    assert.match(created.body.publicKey, /^whpk_[A-Za-z0-9+/]{43}=$/);
    assert.equal(created.body.secret, undefined, "a v1a subscription has no secret");
    const id = created.body.id as string;
    assert.equal((await call(`${svc.url}/v1/subscriptions/${id}`)).body.publicKey, created.body.publicKey);

    await publish(svc.url, feed, cloudEvent());
    const ping = await nextPing(id, 1);
    const header = String(ping.headers["webhook-signature"]);
    assert.match(header, /^v1a,[A-Za-z0-9+/]+=*$/);
    const [webhookId, timestamp] = [
      String(ping.headers["webhook-id"]),
      String(ping.headers["webhook-timestamp"]),
    ];
    assert.ok(ed25519Verifies(created.body.publicKey, webhookId, timestamp, ping.body, header.slice(4)));
    assert.ok(
      !ed25519Verifies(created.body.publicKey, webhookId, timestamp, `${ping.body} `, header.slice(4)),
    );
    assert.equal(verifyPing(ping.headers, ping.body, created.body.publicKey).id, webhookId, "the SDK agrees");

    const rotated = await call(`${svc.url}/v1/subscriptions/${id}/rotate-secret`, { method: "POST" });
    assert.equal(rotated.status, 200);
    assert.equal(rotated.headers.get("cache-control"), "no-store");
    assert.deepEqual(Object.keys(rotated.body), ["publicKey"]);
    assert.notEqual(rotated.body.publicKey, created.body.publicKey);
    await publish(svc.url, feed, cloudEvent());
    const second = await nextPing(id, 2);
    const signatures = String(second.headers["webhook-signature"]).split(" ");
    assert.equal(signatures.length, 2, "both keys sign during the overlap");
    for (const key of [created.body.publicKey, rotated.body.publicKey]) {
      assert.ok(
        signatures.some((entry) =>
          ed25519Verifies(
            key,
            String(second.headers["webhook-id"]),
            String(second.headers["webhook-timestamp"]),
            second.body,
            entry.slice(4),
          ),
        ),
        `a signature by ${key}`,
      );
    }
  });

  it("sends a JWT bound to the body, verifiable against /.well-known/jwks.json, and refused for another body", async () => {
    const { feed, created } = await subscribe({ authorization: { type: "jwt" } });
    assert.equal(created.status, 201, created.text);
    assert.deepEqual(created.body.authorization, { type: "jwt" });
    const id = created.body.id as string;
    await publish(svc.url, feed, cloudEvent());
    const ping = await nextPing(id, 1);
    const authorization = String(ping.headers.authorization);
    assert.match(authorization, /^Bearer [\w-]+\.[\w-]+\.[\w-]+$/);
    const jwt = authorization.slice("Bearer ".length);

    const served = await fetch(`${svc.url}/.well-known/jwks.json`);
    assert.equal(served.status, 200, "no token needed");
    assert.match(served.headers.get("content-type") ?? "", /^application\/jwk-set\+json/);
    const jwks = createRemoteJWKSet(new URL(`${svc.url}/.well-known/jwks.json`));
    const { payload, protectedHeader } = await jwtVerify(jwt, jwks, {
      issuer: HOOKS.SEINTJE_SOURCE,
      audience: receiver.url,
    });
    assert.ok(protectedHeader.kid, "kid set");
    assert.equal(payload.sub, id);
    assert.equal(payload.jti, ping.headers["webhook-id"]);
    assert.equal(payload.exp! - payload.iat!, 300);
    assert.equal(payload.sha256, createHash("sha256").update(ping.body).digest("base64url"));

    const ok = await verifyPingJwt(ping.headers, ping.body, {
      jwksUrl: `${svc.url}/.well-known/jwks.json`,
      audience: receiver.url,
      issuer: HOOKS.SEINTJE_SOURCE,
    });
    assert.equal(ok.id, ping.headers["webhook-id"]);
    const changed = ping.body.replace('"truncated":false', '"truncated":true');
    assert.notEqual(changed, ping.body);
    await assert.rejects(
      verifyPingJwt(ping.headers, changed, {
        jwksUrl: `${svc.url}/.well-known/jwks.json`,
        audience: receiver.url,
      }),
      (error: unknown) => error instanceof PingVerificationError && error.reason === "bad-authorization",
    );
    await assert.rejects(
      verifyPingJwt(ping.headers, ping.body, {
        jwksUrl: `${svc.url}/.well-known/jwks.json`,
        audience: "https://elsewhere.example/hook",
      }),
      (error: unknown) => error instanceof PingVerificationError && error.reason === "bad-authorization",
      "a JWT for another callback",
    );
    assert.equal(decodeProtectedHeader(jwt).alg, "EdDSA");
    assert.equal(decodeJwt(jwt).iss, HOOKS.SEINTJE_SOURCE);
  });

  it("sends a static Authorization verbatim, and shows it in no answer and no log line", async () => {
    const value = "Token s3cr3t-static-value-4711";
    const { feed, created } = await subscribe({ authorization: { type: "static", value } });
    assert.equal(created.status, 201, created.text);
    assert.deepEqual(created.body.authorization, { type: "static" });
    const id = created.body.id as string;
    await publish(svc.url, feed, cloudEvent());
    const ping = await nextPing(id, 1);
    assert.equal(ping.headers.authorization, value);

    const answers = [
      created.text,
      (await call(`${svc.url}/v1/subscriptions/${id}`)).text,
      (await call(`${svc.url}/v1/subscriptions`)).text,
      (
        await call(`${svc.url}/v1/subscriptions/${id}`, {
          method: "PATCH",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ description: "changed" }),
        })
      ).text,
      (await call(`${svc.url}/v1/subscriptions/${id}/test`, { method: "POST" })).text,
      (await call(`${svc.url}/v1/subscriptions/${id}/attempts`)).text,
    ];
    for (const text of answers) assert.ok(!text.includes("s3cr3t"), text);
    assert.ok(!JSON.stringify(svc.logs).includes("s3cr3t"), "never logged");
    const stored = await svc.service.storage
      .reader("subscriptions")
      .where({ id })
      .first("authorization_value");
    assert.ok(!String(stored.authorization_value).includes("s3cr3t"), "sealed at rest");

    const removed = await call(`${svc.url}/v1/subscriptions/${id}`, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ authorization: null }),
    });
    assert.equal(removed.body.authorization, null);
    await publish(svc.url, feed, cloudEvent());
    const after = await nextPing(id, 3);
    assert.equal(after.headers.authorization, undefined);
  });

  it("changes the signature scheme with PATCH: new keys at once, a v1 secret shown that once", async () => {
    const { feed, created } = await subscribe({});
    const id = created.body.id as string;
    const patch = (body: unknown) =>
      call(`${svc.url}/v1/subscriptions/${id}`, {
        method: "PATCH",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    const toV1a = await patch({ signature: "v1a" });
    assert.equal(toV1a.body.signature, "v1a");
    assert.match(toV1a.body.publicKey, /^whpk_/);
    assert.equal(toV1a.body.secret, undefined);
    await publish(svc.url, feed, cloudEvent());
    const ping = await nextPing(id, 1);
    assert.equal(verifyPing(ping.headers, ping.body, toV1a.body.publicKey).id, ping.headers["webhook-id"]);
    assert.throws(
      () => verifyPing(ping.headers, ping.body, created.body.secret),
      (error: unknown) => error instanceof PingVerificationError && error.reason === "bad-signature",
      "the old secret signs no more",
    );
    const back = await patch({ signature: "v1" });
    assert.match(back.body.secret, /^whsec_/);
    assert.equal(back.headers.get("cache-control"), "no-store");
    assert.equal(back.body.publicKey, null);
    await publish(svc.url, feed, cloudEvent());
    const signed = await nextPing(id, 2);
    assert.equal(verifyPing(signed.headers, signed.body, back.body.secret).id, signed.headers["webhook-id"]);
  });

  it("shows in the CLI's list how each subscription's pings are signed", async () => {
    const { created } = await subscribe({
      signature: "v1a",
      authorization: { type: "static", value: "Key x" },
    });
    assert.equal(created.status, 201, created.text);
    const token = await tokenFor(svc.dir, "admin");
    const listed = await runToEnd(["subscriptions", "--url", svc.url, "--token", token], {});
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^ID\s+FEED\s+STATUS\s+ACKED\s+HEAD\s+SIGNED\s+URL$/m);
    for (const signed of ["v1a", "v1\\+jwt", "v1a\\+static"]) {
      assert.match(listed.stdout, new RegExp(`\\s${signed}\\s+http`), signed);
    }
  });

  it("refuses a bad signature or authorization with pointers, storing nothing", async () => {
    for (const [body, pointer] of [
      [{ signature: "v2" }, "/signature"],
      [{ authorization: { type: "basic" } }, "/authorization"],
      [{ authorization: "Bearer x" }, "/authorization"],
      [{ authorization: { type: "static" } }, "/authorization/value"],
      [{ authorization: { type: "static", value: "a\nb" } }, "/authorization/value"],
      [{ authorization: { type: "jwt", value: "x" } }, "/authorization/value"],
    ] as const) {
      const before = (await call(`${svc.url}/v1/subscriptions`)).body.subscriptions.length;
      const { created } = await subscribe(body);
      assert.equal(created.status, 400, JSON.stringify(body));
      assert.ok(
        created.body.errors.some((error: { pointer: string }) => error.pointer === pointer),
        `${JSON.stringify(body)}: ${created.text}`,
      );
      assert.equal((await call(`${svc.url}/v1/subscriptions`)).body.subscriptions.length, before);
    }
  });
});
