/**
 * Waiting in tests. Wait for a condition, never for a guessed time: `eventually` polls until the condition holds
 * and fails with a message after a bounded time. `pause` is for pacing a load (spreading requests over time) or
 * for letting real time pass that a test is about (an attempt ageing past a retention of one second); a check that
 * "nothing happens" first proves that the moment has passed (a later thing has happened, a cursor has moved).
 */

/** Waits until `condition` holds (returns a truthy value, which it returns), checking every 20 ms, at most `timeoutMs`. */
export async function eventually<T>(
  condition: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 10_000,
  what = "the condition",
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`${what} did not hold within ${timeoutMs} ms`);
    await pause(20);
  }
}

/** Lets `ms` milliseconds pass; see above for when that is the right thing to do. */
export function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Work that others beside it watch, such as publishers that readers follow. `done` settles as the work did;
 * `goOn(caughtUp)` is whether a follower should go on: while the work runs, and after it succeeded until the
 * follower has caught up; never after it failed.
 */
export function watched<T>(work: Promise<T>): {
  done: Promise<T>;
  goOn: (caughtUp: boolean) => boolean;
} {
  let ended: boolean | undefined;
  const done = work.then(
    (value) => {
      ended = true;
      return value;
    },
    (error: unknown) => {
      ended = false;
      throw error;
    },
  );
  return { done, goOn: (caughtUp) => ended === undefined || (ended && !caughtUp) };
}
