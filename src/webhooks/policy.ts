import { type Duration, subtractDuration } from "../log/duration.js";

/**
 * What happens after a ping attempt: a pure function of the outcome, the subscription's failure streak and the
 * configuration, so every rule can be tested without a clock or a network.
 *
 * - Any 2xx acknowledges.
 * - 410 Gone disables at once: the receiver says it will never want pings again.
 * - Anything else (another status, a timeout, a network error, a refused address) is a failure: the next attempt
 *   waits the schedule's delay for this attempt (the last delay repeats) with ±20 % jitter, or, when the answer
 *   has a `Retry-After`, what it asks for: never sooner (at least 1 s), and at most the disable window
 *   (SEINTJE_PING_DISABLE_AFTER), past which the subscription would be disabled anyway. A subscription that has
 *   been failing for longer than that window is disabled instead.
 */

export interface RetryPolicy {
  /** Delays between attempts in milliseconds, before jitter; the last one repeats. */
  scheduleMs: readonly number[];
  /** How long a subscription may keep failing before it is disabled. */
  disableAfter: Duration;
}

export interface Outcome {
  /** Null when no response came. */
  statusCode: number | null;
  /** The `Retry-After` header, when the response had one. */
  retryAfter?: string | undefined;
}

export interface FailureStreak {
  /** Failed attempts since the last success. */
  failures: number;
  /** When the streak began (epoch ms), or null when the last attempt succeeded. */
  failingSince: number | null;
}

export type Decision =
  | { kind: "acknowledged" }
  | { kind: "disable"; reason: string; failingSince: number }
  | { kind: "retry"; at: number; failures: number; failingSince: number };

const JITTER = 0.2;
const MIN_RETRY_AFTER_MS = 1000;

/**
 * `Retry-After` as milliseconds from `now`: delay-seconds or an HTTP date (RFC 9110 §10.2.3). Undefined when the
 * header is absent or malformed.
 */
export function parseRetryAfter(value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  if (!/[a-z]/i.test(text)) return undefined;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** The delay before attempt number `failures + 1`, from the schedule, with jitter. */
export function scheduledDelay(policy: RetryPolicy, failures: number, random: () => number): number {
  const schedule = policy.scheduleMs;
  const base = schedule[Math.min(Math.max(failures, 1), schedule.length) - 1]!;
  return Math.round(base * (1 + JITTER * (2 * random() - 1)));
}

export function decide(
  policy: RetryPolicy,
  outcome: Outcome,
  streak: FailureStreak,
  now: number,
  random: () => number = Math.random,
): Decision {
  const status = outcome.statusCode;
  if (status !== null && status >= 200 && status < 300) return { kind: "acknowledged" };
  const failingSince = streak.failingSince ?? now;
  if (status === 410) {
    return { kind: "disable", reason: "the callback answered 410 Gone", failingSince };
  }
  // A window that reaches past the range of dates (refused by the configuration) never ends.
  const windowStart = subtractDuration(now, policy.disableAfter);
  if (windowStart !== undefined && failingSince <= windowStart && streak.failingSince !== null) {
    return { kind: "disable", reason: "the callback kept failing for longer than allowed", failingSince };
  }
  const failures = streak.failures + 1;
  let delay = scheduledDelay(policy, failures, random);
  const asked = parseRetryAfter(outcome.retryAfter, now);
  if (asked !== undefined) {
    // The ceiling is the disable window's length; a window beyond the range of dates sets none.
    const ceiling = windowStart === undefined ? Number.POSITIVE_INFINITY : now - windowStart;
    delay = Math.min(Math.max(asked, MIN_RETRY_AFTER_MS), Math.max(ceiling, MIN_RETRY_AFTER_MS));
  }
  return { kind: "retry", at: now + delay, failures, failingSince };
}
