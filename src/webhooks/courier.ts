import type { NewAttempt, SubscriptionRow } from "../db/subscriptions.js";
import type { PingOutcome } from "../metrics.js";
import type { PreparedPing } from "./announcement.js";
import type { CallbackClient, Exchange } from "./client.js";
import { pingHeaders } from "./ping.js";
import type { SecretBox } from "./secrets.js";

/**
 * Takes a ping to its callback: signs it (Standard Webhooks, with every secret that signs now) and sends it
 * through the guarded HTTP client. What the answer means for the subscription is the policy's to decide.
 */
export class Courier {
  constructor(
    private readonly client: CallbackClient,
    private readonly box: SecretBox,
    /** The `WebHook-Request-Origin` of pings: the host name of the public URL. */
    private readonly requestOrigin: () => string,
  ) {}

  /** Sends the ping now, with a fresh timestamp over its unchanged id and body. */
  send(ping: PreparedPing, signal?: AbortSignal): Promise<Exchange> {
    const now = new Date();
    const secrets = this.secrets(ping.subscription, now.getTime());
    const headers = pingHeaders(ping.pingId, ping.body, secrets, now, this.requestOrigin());
    return this.client.exchange("POST", ping.subscription.url, headers, ping.body, signal);
  }

  destroy(): Promise<void> {
    return this.client.destroy();
  }

  /** The secrets that sign now: the current one, and the previous one while its rotation window lasts. */
  private secrets(subscription: SubscriptionRow, now: number): string[] {
    const secrets = [this.box.open(subscription.secret, subscription.id)];
    if (
      subscription.previousSecret !== null &&
      subscription.previousSecretUntil !== null &&
      subscription.previousSecretUntil > now
    ) {
      secrets.push(this.box.open(subscription.previousSecret, subscription.id));
    }
    return secrets;
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
