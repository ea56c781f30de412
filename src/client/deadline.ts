/**
 * A signal that aborts after `ms` (with a TimeoutError, as AbortSignal.timeout does) or when `parent` aborts (with
 * its reason), and `clear()` for when the work is done, which also drops the timer.
 *
 * Not AbortSignal.any([parent, AbortSignal.timeout(ms)]): on Node 20 a long-lived parent (the service's shutdown
 * signal, a follower's own) keeps every signal `any` made from it for as long as it lives. A million pings kept
 * 52 MB that way, and a follower that long-polls for years would keep one per poll. (And AbortSignal.timeout's
 * timer stays until the timeout, however soon the work is done.)
 */
export interface Deadline {
  readonly signal: AbortSignal;
  /** Whether it was the time that ran out. */
  timedOut(): boolean;
  clear(): void;
}

export function deadline(ms: number, parent?: AbortSignal): Deadline {
  const controller = new AbortController();
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    controller.abort(new DOMException(`The operation timed out after ${ms} ms.`, "TimeoutError"));
  }, ms);
  const follow = () => controller.abort(parent!.reason);
  if (parent?.aborted) follow();
  else parent?.addEventListener("abort", follow, { once: true });
  return {
    signal: controller.signal,
    timedOut: () => expired,
    clear() {
      clearTimeout(timer);
      parent?.removeEventListener("abort", follow);
    },
  };
}
