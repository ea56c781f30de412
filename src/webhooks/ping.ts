import { createPrivateKey, type KeyObject, sign } from "node:crypto";
import { Webhook } from "standardwebhooks";
import type { Identity } from "../db/events.js";

/**
 * The ping: a CloudEvent that says "feed F has events after your cursor, up to H", with identifiers only, never
 * event data. Signed per Standard Webhooks with the reference library: `v1,<base64 HMAC-SHA256 over
 * "id.timestamp.body">`, one signature per current secret (two during a rotation).
 */

export const PING_TYPE = "nl.seintje.feed.updated";
/**
 * Where the JSON Schema of a ping's `data` is served, relative to the public URL: the ping's `dataschema`. The
 * version in the path changes when the data changes incompatibly, so receivers can tell ping versions apart.
 */
export const PING_DATA_SCHEMA_PATH = "/v1/schemas/feed-updated/v1.json";

/** How many event identities a ping lists at most. */
export const PING_EVENTS = 100;

export interface PingData {
  feed: string;
  subscription: string;
  after: number;
  head: number;
  types: readonly string[];
  subject: string | null;
  events: Identity[];
  truncated: boolean;
  /**
   * Set when retention removed events after `after` (the subscriber's cursor) before it was told of them: the
   * oldest sequence still kept. The subscriber must resynchronise from there; reading `url` answers 410 Gone.
   */
  oldest?: number;
  /** Only on test pings: they acknowledge nothing. */
  test?: boolean;
}

/** The feed URL a subscriber reads next: `after` and the subscription's filters filled in. */
export function feedUrl(
  publicUrl: string,
  feed: string,
  after: number,
  types: readonly string[],
  subject: string | null,
): string {
  const query = new URLSearchParams({ after: String(after) });
  for (const type of types) query.append("type", type);
  if (subject !== null) query.set("subject", subject);
  return `${publicUrl}/v1/feeds/${feed}/events?${query}`;
}

/** The ping's body, as sent: one JSON text that never changes under its id. */
export function pingBody(id: string, source: string, time: Date, publicUrl: string, data: PingData): string {
  return JSON.stringify({
    specversion: "1.0",
    id,
    source,
    type: PING_TYPE,
    time: time.toISOString(),
    subject: data.feed,
    datacontenttype: "application/json",
    dataschema: `${publicUrl}${PING_DATA_SCHEMA_PATH}`,
    data: {
      feed: data.feed,
      subscription: data.subscription,
      after: String(data.after),
      head: String(data.head),
      url: feedUrl(publicUrl, data.feed, data.after, data.types, data.subject),
      events: data.events.map((event) => ({
        sequence: String(event.sequence),
        id: event.id,
        type: event.type,
        subject: event.subject,
      })),
      truncated: data.truncated,
      ...(data.oldest !== undefined ? { cursorGone: true, oldest: String(data.oldest) } : {}),
      ...(data.test ? { test: true } : {}),
    },
  });
}

/** A key that signs pings: a `whsec_` secret (v1) or an Ed25519 private key (v1a). */
export type PingSigner = { scheme: "v1"; secret: string } | { scheme: "v1a"; key: KeyObject };

/** The PKCS #8 form of an Ed25519 private key: these 16 bytes, then its 32-byte seed (RFC 8410). */
const ED25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

/**
 * The signer of a `whsk_` private key (its PKCS #8 form, in base64). Given the key's public half (`whpk_`, its 32
 * bytes in base64), the key is imported as a JWK: 32 µs a key here, where OpenSSL's PKCS #8 decoder takes 310 µs.
 * A courier opens each key once and keeps it, so that is what the first ping of each v1a subscription costs after
 * a start, and every ping when more keys are in use than a courier keeps.
 */
export function ed25519Signer(privateKey: string, publicKey?: string | null): PingSigner {
  const der = Buffer.from(privateKey.slice("whsk_".length), "base64");
  if (publicKey && der.length === 48 && der.subarray(0, 16).equals(ED25519_PKCS8_PREFIX)) {
    const jwk = {
      kty: "OKP",
      crv: "Ed25519",
      d: der.subarray(16).toString("base64url"),
      x: Buffer.from(publicKey.slice("whpk_".length), "base64").toString("base64url"),
    };
    return { scheme: "v1a", key: createPrivateKey({ key: jwk, format: "jwk" }) };
  }
  return { scheme: "v1a", key: createPrivateKey({ key: der, format: "der", type: "pkcs8" }) };
}

/** One signature over "id.timestamp.body", as Standard Webhooks writes it: `v1,<base64>` or `v1a,<base64>`. */
function signatureOf(signer: PingSigner, id: string, now: Date, body: string): string {
  if (signer.scheme === "v1") return new Webhook(signer.secret).sign(id, now, body);
  const signed = Buffer.from(`${id}.${Math.floor(now.getTime() / 1000)}.${body}`);
  return `v1a,${sign(null, signed, signer.key).toString("base64")}`;
}

/** The headers of one attempt: a fresh timestamp each time, over the unchanged id and body. */
export function pingHeaders(
  id: string,
  body: string,
  signers: readonly PingSigner[],
  now: Date,
  requestOrigin: string,
): Record<string, string> {
  return {
    "content-type": "application/cloudevents+json; charset=utf-8",
    "webhook-id": id,
    "webhook-timestamp": String(Math.floor(now.getTime() / 1000)),
    "webhook-signature": signers.map((signer) => signatureOf(signer, id, now, body)).join(" "),
    "webhook-request-origin": requestOrigin,
  };
}
