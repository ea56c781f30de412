import { SeintjeError } from "./errors.js";

/** When the SDK tries again, and how long it waits first. */

/** Whether trying again later can help: the network, the server's own trouble, or a limit. */
export function isTransient(error: unknown): boolean {
  if (error instanceof SeintjeError)
    return error.status >= 500 || error.status === 408 || error.status === 429;
  return !(error instanceof Error && error.name === "AbortError");
}

/**
 * How long to wait before attempt `attempt + 1` (1-based): the server's Retry-After when it sent one (at most a
 * minute), else `initialMs` doubling up to `maxMs`, with up to 20 % jitter so that many clients do not return
 * in step.
 */
export function retryDelay(error: unknown, attempt: number, initialMs = 200, maxMs = 5000): number {
  if (error instanceof SeintjeError && error.retryAfterMs !== undefined)
    return Math.min(error.retryAfterMs, 60_000);
  const base = Math.min(initialMs * 2 ** (attempt - 1), maxMs);
  return base * (0.8 + Math.random() * 0.2);
}
