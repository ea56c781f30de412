import { createHash } from "node:crypto";
import { type Span, SpanKind, SpanStatusCode, type Tracer } from "@opentelemetry/api";
import { SignJWT } from "jose";
import { SIGNING_ALGORITHM, type SigningKey } from "../auth/keys.js";
import type { NewAttempt, SubscriptionRow } from "../db/subscriptions.js";
import type { PingOutcome } from "../metrics.js";
import { headersFor, startSpan } from "../tracing.js";
import type { PreparedPing } from "./announcement.js";
import type { CallbackClient, Exchange } from "./client.js";
import { ed25519Signer, type PingSigner, pingHeaders } from "./ping.js";
import type { SecretBox } from "./secrets.js";

/** What signs the JWT of pings whose subscription asks for one: the service's signing key, and who it is. */
export interface PingIssuer {
  key: SigningKey;
  /** `iss`: SEINTJE_SOURCE. */
  issuer: string;
}

/** Signing keys a courier keeps opened: about two per subscription pinged lately. */
const CACHED_SIGNERS = 20_000;

/** How long a ping's JWT is valid. */
export const PING_JWT_SECONDS = 300;

/**
 * Takes a ping to its callback: signs it (Standard Webhooks, with every key that signs now: HMAC for v1, Ed25519
 * for v1a), adds the Authorization the subscription asks for (a JWT bound to the body, or a static value), and
 * sends it through the guarded HTTP client. What the answer means for the subscription is the policy's to decide.
 */
export class Courier {
  /** Opened signing keys by their sealed text, the least recently used forgotten first. */
  private readonly opened = new Map<string, PingSigner>();

  constructor(
    private readonly client: CallbackClient,
    private readonly box: SecretBox,
    /** The `WebHook-Request-Origin` of pings: the host name of the public URL. */
    private readonly requestOrigin: () => string,
    private readonly issuer: PingIssuer,
    private readonly tracer: Tracer,
  ) {}

  /**
   * Sends the ping now, with a fresh timestamp over its unchanged id and body, in a span of its own whose context
   * the ping carries as `traceparent`: a receiver that traces can continue the trace from it.
   */
  async send(ping: PreparedPing, signal?: AbortSignal): Promise<Exchange> {
    const span = startSpan(this.tracer, "ping", {
      kind: SpanKind.CLIENT,
      attributes: {
        "seintje.feed": ping.subscription.feedName,
        "seintje.subscription": ping.subscription.id,
        "seintje.ping.head": ping.head,
        "http.request.method": "POST",
      },
    });
    try {
      const exchange = await this.exchange(ping, span, signal);
      if (exchange.statusCode !== null) span.setAttribute("http.response.status_code", exchange.statusCode);
      const delivered =
        exchange.statusCode !== null && exchange.statusCode >= 200 && exchange.statusCode < 300;
      if (!delivered)
        span.setStatus({ code: SpanStatusCode.ERROR, message: exchange.error ?? "not delivered" });
      return exchange;
    } finally {
      span.end();
    }
  }

  private async exchange(ping: PreparedPing, span: Span, signal?: AbortSignal): Promise<Exchange> {
    const now = new Date();
    const { subscription } = ping;
    const headers = pingHeaders(
      ping.pingId,
      ping.body,
      this.signers(subscription, now.getTime()),
      now,
      this.requestOrigin(),
    );
    const authorization = await this.authorization(ping, now);
    if (authorization !== undefined) headers.authorization = authorization;
    Object.assign(headers, headersFor(span));
    return this.client.exchange("POST", subscription.url, headers, ping.body, signal);
  }

  destroy(): Promise<void> {
    return this.client.destroy();
  }

  /** The keys that sign now: the current one, and the previous one while its rotation window lasts. */
  private signers(subscription: SubscriptionRow, now: number): PingSigner[] {
    const sealed = [subscription.secret];
    if (
      subscription.previousSecret !== null &&
      subscription.previousSecretUntil !== null &&
      subscription.previousSecretUntil > now
    ) {
      sealed.push(subscription.previousSecret);
    }
    // A key of the other scheme is one from before a change of scheme: it no longer signs.
    // The subscription's public key is the current key's (a rotation replaces both); the previous key's is gone.
    return sealed
      .map((text, index) => this.signer(text, subscription.id, index === 0 ? subscription.publicKey : null))
      .filter((signer) => signer.scheme === subscription.signature);
  }

  /**
   * The signer of a sealed key, opened and parsed once and kept (the sealed text names it: a rotation seals a new
   * one): opening and parsing an Ed25519 key per ping halved the rate of v1a pings.
   */
  private signer(sealed: string, subscriptionId: string, publicKey: string | null): PingSigner {
    let signer = this.opened.get(sealed);
    if (signer) {
      this.opened.delete(sealed);
    } else {
      const opened = this.box.open(sealed, subscriptionId);
      signer = opened.startsWith("whsk_")
        ? ed25519Signer(opened, publicKey)
        : { scheme: "v1", secret: opened };
    }
    this.opened.set(sealed, signer);
    if (this.opened.size > CACHED_SIGNERS) this.opened.delete(this.opened.keys().next().value!);
    return signer;
  }

  /**
   * The Authorization header: a static value as sealed, or a JWT signed with the service's key, for this callback
   * (`aud`), this subscription (`sub`), this ping (`jti` = webhook-id), valid five minutes, and bound to the body
   * by its SHA-256 (`sha256`, base64url): a receiver that checks it knows the body is the one the service signed.
   */
  private async authorization(ping: PreparedPing, now: Date): Promise<string | undefined> {
    const wanted = ping.subscription.authorization;
    if (wanted === null) return undefined;
    if (wanted.type === "static")
      return this.box.open(wanted.sealed, `${ping.subscription.id}:authorization`);
    const issuedAt = Math.floor(now.getTime() / 1000);
    const jwt = await new SignJWT({ sha256: createHash("sha256").update(ping.body).digest("base64url") })
      .setProtectedHeader({ alg: SIGNING_ALGORITHM, kid: this.issuer.key.kid, typ: "JWT" })
      .setIssuer(this.issuer.issuer)
      .setAudience(ping.subscription.url)
      .setSubject(ping.subscription.id)
      .setJti(ping.pingId)
      .setIssuedAt(issuedAt)
      .setExpirationTime(issuedAt + PING_JWT_SECONDS)
      .sign(this.issuer.key.privateKey);
    return `Bearer ${jwt}`;
  }
}

/** How an exchange counts in the metrics. */
export function outcomeOf(exchange: Exchange): PingOutcome {
  const status = exchange.statusCode;
  if (status !== null) return status >= 200 && status < 300 ? "delivered" : "failed";
  return exchange.timedOut ? "timeout" : "network-error";
}

/** The attempt an exchange records. */
export function attemptOf(ping: PreparedPing, at: number, exchange: Exchange, test: boolean): NewAttempt {
  return {
    subscriptionId: ping.subscription.id,
    pingId: ping.pingId,
    at,
    head: ping.head,
    statusCode: exchange.statusCode,
    durationMs: exchange.durationMs,
    error: exchange.error,
    test,
  };
}
