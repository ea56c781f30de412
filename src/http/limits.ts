import { RateLimiterMemory, RateLimiterRes } from "rate-limiter-flexible";
import { HttpProblem } from "../errors.js";
import type { Metrics } from "../metrics.js";

/**
 * Limits a process puts on what it holds and what it takes: open streams and held long-polls (each costs a socket
 * and some memory for as long as it lasts), and publish requests per token (each costs a share of the one writer).
 */

export type Held = "streams" | "longpolls";

/** How long a client refused for want of room is asked to wait: long enough for others to finish. */
const FULL_RETRY_AFTER_SECONDS = 5;

/** Counts what is held; refuses (503 with Retry-After) beyond the cap. */
export class Admission {
  private readonly held: Record<Held, number> = { streams: 0, longpolls: 0 };

  constructor(
    private readonly caps: Record<Held, number>,
    private readonly metrics: Metrics,
  ) {}

  count(kind: Held): number {
    return this.held[kind];
  }

  /** Takes a place, or throws 503 when there is none; the returned function gives it back (once). */
  enter(kind: Held): () => void {
    if (this.held[kind] >= this.caps[kind]) {
      this.metrics.refused.inc({ limit: kind });
      throw new HttpProblem(
        503,
        "unavailable",
        `This process holds as many ${kind === "streams" ? "streams" : "long-polls"} as it may (${this.caps[kind]}); try again shortly or elsewhere.`,
        {},
        { "Retry-After": String(FULL_RETRY_AFTER_SECONDS) },
      );
    }
    this.held[kind] += 1;
    let left = false;
    return () => {
      if (left) return;
      left = true;
      this.held[kind] -= 1;
    };
  }
}

/**
 * Publish requests per second per key (the token's subject), in one-second windows, in this process. With several
 * processes behind a load balancer each counts on its own, so a publisher may get up to that many times the rate.
 */
export class PublishRateLimit {
  private readonly limiter: RateLimiterMemory | undefined;

  constructor(
    perSecond: number,
    private readonly metrics: Metrics,
  ) {
    this.limiter = perSecond > 0 ? new RateLimiterMemory({ points: perSecond, duration: 1 }) : undefined;
  }

  /** Counts one request for `key`; throws 429 with Retry-After when the key is over its rate. */
  async take(key: string): Promise<void> {
    if (!this.limiter) return;
    try {
      await this.limiter.consume(key);
    } catch (refusal) {
      if (!(refusal instanceof RateLimiterRes)) throw refusal;
      this.metrics.refused.inc({ limit: "publish-rate" });
      const seconds = Math.max(1, Math.ceil(refusal.msBeforeNext / 1000));
      throw new HttpProblem(
        429,
        "rateLimited",
        `This token may publish ${this.limiter.points} requests per second; try again in ${seconds} s.`,
        {},
        { "Retry-After": String(seconds) },
      );
    }
  }
}
