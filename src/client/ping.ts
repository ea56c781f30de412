import { createHash, createPublicKey, type KeyObject, verify } from "node:crypto";
import { createRemoteJWKSet, errors as joseErrors, jwtVerify } from "jose";
import { Webhook, WebhookVerificationError } from "standardwebhooks";
import { type PingRefusal, PingVerificationError } from "./errors.js";
import type { Ping } from "./types.js";

/** How far a ping's timestamp may be from now, as Standard Webhooks sets it. */
const TOLERANCE_SECONDS = 5 * 60;

/**
 * Verifies a wake-up ping as Standard Webhooks prescribes, and answers it: a signature over `id.timestamp.body`
 * by a key the subscription has, and a timestamp within five minutes of now. `key` is the subscription's `whsec_`
 * secret (v1: HMAC-SHA256 with the reference library, compared in constant time) or its `whpk_` public key (v1a:
 * Ed25519, with Node's verify); during a rotation pass both. Pass the body exactly as received (bytes or text),
 * before any JSON parsing.
 *
 * Throws PingVerificationError (with `reason`) for anything that must not be trusted.
 */
export function verifyPing(
  headers: Headers | Record<string, string | string[] | undefined>,
  rawBody: string | Uint8Array,
  key: string | readonly string[],
): Ping {
  const flat = flatten(headers);
  const body = typeof rawBody === "string" ? rawBody : Buffer.from(rawBody).toString("utf8");
  const keys = typeof key === "string" ? [key] : key;
  if (!flat["webhook-id"] || !flat["webhook-timestamp"] || !flat["webhook-signature"]) {
    throw new PingVerificationError(
      "missing-headers",
      "webhook-id, webhook-timestamp and webhook-signature are required",
    );
  }
  let failure: PingVerificationError | undefined;
  for (const candidate of keys) {
    try {
      if (candidate.startsWith("whpk_")) verifyEd25519(flat, body, candidate);
      else new Webhook(candidate).verify(body, flat);
      failure = undefined;
      break;
    } catch (error) {
      if (error instanceof PingVerificationError) failure = error;
      else if (error instanceof WebhookVerificationError) {
        failure = new PingVerificationError(reasonOf(error.message), error.message);
      } else throw error;
      // A timestamp out of range is the same for every key.
      if (failure.reason !== "bad-signature") break;
    }
  }
  if (failure) throw failure;
  return asPing(body, flat);
}

function asPing(body: string, flat: Record<string, string>): Ping {
  const ping = JSON.parse(body) as Ping;
  if (
    ping?.type !== "nl.seintje.feed.updated" ||
    ping.id !== flat["webhook-id"] ||
    typeof ping.data !== "object"
  ) {
    throw new PingVerificationError("not-a-ping", "the body is not a seintje ping with this webhook-id");
  }
  return ping;
}

function publicKeyOf(text: string): KeyObject {
  const raw = Buffer.from(text.slice("whpk_".length), "base64");
  // The SPKI form of an Ed25519 key: a fixed 12-byte prefix, then its 32 bytes (RFC 8410).
  const prefix = Buffer.from("302a300506032b6570032100", "hex");
  return createPublicKey({ key: Buffer.concat([prefix, raw]), format: "der", type: "spki" });
}

/** Standard Webhooks asymmetric: one of the `v1a,<base64>` signatures is the key's over id.timestamp.body. */
function verifyEd25519(flat: Record<string, string>, body: string, key: string): void {
  const timestamp = Number(flat["webhook-timestamp"]);
  const now = Math.floor(Date.now() / 1000);
  if (!Number.isInteger(timestamp) || timestamp < now - TOLERANCE_SECONDS) {
    throw new PingVerificationError("timestamp-too-old", "the webhook-timestamp is too old");
  }
  if (timestamp > now + TOLERANCE_SECONDS) {
    throw new PingVerificationError("timestamp-too-new", "the webhook-timestamp is too new");
  }
  const signed = Buffer.from(`${flat["webhook-id"]}.${flat["webhook-timestamp"]}.${body}`);
  const publicKey = publicKeyOf(key);
  const good = flat["webhook-signature"]!.split(" ").some((entry) => {
    const [version, signature] = entry.split(",");
    return (
      version === "v1a" &&
      signature !== undefined &&
      verify(null, signed, publicKey, Buffer.from(signature, "base64"))
    );
  });
  if (!good) throw new PingVerificationError("bad-signature", "no v1a signature matches the public key");
}

/** JWK sets fetched per URL: jose keeps each one's keys and fetches again for an unknown `kid`. */
const jwkSets = new Map<string, ReturnType<typeof createRemoteJWKSet>>();

/**
 * Verifies the JWT of a ping whose subscription asks for one (`authorization: {"type": "jwt"}`), and answers the
 * ping: signed by a key the service publishes at `jwksUrl` (its `/.well-known/jwks.json`), for this callback
 * (`audience`: the subscription's URL), unexpired, naming this ping (`jti` = webhook-id), and bound to this very
 * body (`sha256`). `issuer`, when given, must be the service's SEINTJE_SOURCE.
 */
export async function verifyPingJwt(
  headers: Headers | Record<string, string | string[] | undefined>,
  rawBody: string | Uint8Array,
  options: { jwksUrl: string; audience: string; issuer?: string },
): Promise<Ping> {
  const flat = flatten(headers);
  const body = typeof rawBody === "string" ? rawBody : Buffer.from(rawBody).toString("utf8");
  const match = /^Bearer (\S+)$/.exec(flat.authorization ?? "");
  if (!match) throw new PingVerificationError("bad-authorization", "no Authorization: Bearer header");
  let jwks = jwkSets.get(options.jwksUrl);
  if (!jwks) {
    jwks = createRemoteJWKSet(new URL(options.jwksUrl));
    jwkSets.set(options.jwksUrl, jwks);
  }
  let payload: Record<string, unknown>;
  try {
    ({ payload } = await jwtVerify(match[1]!, jwks, {
      audience: options.audience,
      ...(options.issuer === undefined ? {} : { issuer: options.issuer }),
      clockTolerance: 30,
    }));
  } catch (error) {
    if (error instanceof joseErrors.JOSEError) {
      throw new PingVerificationError("bad-authorization", `the JWT does not verify: ${error.message}`);
    }
    throw error;
  }
  if (payload.jti !== flat["webhook-id"]) {
    throw new PingVerificationError(
      "bad-authorization",
      "the JWT names another ping (jti is not the webhook-id)",
    );
  }
  if (payload.sha256 !== createHash("sha256").update(body).digest("base64url")) {
    throw new PingVerificationError("bad-authorization", "the body is not the one the JWT was signed for");
  }
  return asPing(body, flat);
}

function reasonOf(message: string): PingRefusal {
  if (/too old/i.test(message)) return "timestamp-too-old";
  if (/too new/i.test(message)) return "timestamp-too-new";
  if (/missing/i.test(message)) return "missing-headers";
  return "bad-signature";
}

function flatten(headers: Headers | Record<string, string | string[] | undefined>): Record<string, string> {
  const flat: Record<string, string> = {};
  const entries = headers instanceof Headers ? headers.entries() : Object.entries(headers);
  for (const [name, value] of entries) {
    if (value !== undefined) flat[name.toLowerCase()] = Array.isArray(value) ? value.join(", ") : value;
  }
  return flat;
}
