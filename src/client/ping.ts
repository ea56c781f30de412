import { Webhook, WebhookVerificationError } from "standardwebhooks";
import { type PingRefusal, PingVerificationError } from "./errors.js";
import type { Ping } from "./types.js";

/**
 * Verifies a wake-up ping as Standard Webhooks prescribes (the reference library): the HMAC-SHA256 signature over
 * `id.timestamp.body` with the subscription's secret, compared in constant time, and a timestamp within five
 * minutes of now. Pass the body exactly as received (bytes or text), before any JSON parsing. During a secret
 * rotation pass both secrets: a ping signed with either is accepted.
 *
 * Answers the ping; throws PingVerificationError (with `reason`) for anything that must not be trusted.
 */
export function verifyPing(
  headers: Headers | Record<string, string | string[] | undefined>,
  rawBody: string | Uint8Array,
  secret: string | readonly string[],
): Ping {
  const flat = flatten(headers);
  const body = typeof rawBody === "string" ? rawBody : Buffer.from(rawBody).toString("utf8");
  const secrets = typeof secret === "string" ? [secret] : secret;
  if (!flat["webhook-id"] || !flat["webhook-timestamp"] || !flat["webhook-signature"]) {
    throw new PingVerificationError(
      "missing-headers",
      "webhook-id, webhook-timestamp and webhook-signature are required",
    );
  }
  let failure: PingVerificationError | undefined;
  for (const candidate of secrets) {
    try {
      new Webhook(candidate).verify(body, flat);
      failure = undefined;
      break;
    } catch (error) {
      if (!(error instanceof WebhookVerificationError)) throw error;
      failure = new PingVerificationError(reasonOf(error.message), error.message);
      // A timestamp out of range is the same for every secret.
      if (failure.reason !== "bad-signature") break;
    }
  }
  if (failure) throw failure;
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
