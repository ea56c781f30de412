/**
 * A consumer that follows a feed and restarts where it stopped.
 *
 *   SEINTJE_URL=http://127.0.0.1:8080 SEINTJE_TOKEN=$(npx seintje token --scope read:brk) \
 *     npx tsx examples/consumer.ts brk
 *
 * It prints each event as a JSON line and saves its cursor after handling each one (at least once: an event
 * handled just before a crash is handled again after it, never skipped) in CURSOR_FILE (default
 * .seintje-state/<feed>.cursor, a directory that git ignores). Ctrl-C stops it.
 */
import { CursorGoneError, type FeedEvent, FileCursorStore, SeintjeClient } from "seintje/client";

const feed = process.argv[2] ?? "brk";
const client = new SeintjeClient({
  url: process.env.SEINTJE_URL ?? "http://127.0.0.1:8080",
  token: process.env.SEINTJE_TOKEN,
});
const cursor = new FileCursorStore(process.env.CURSOR_FILE ?? `.seintje-state/${feed}.cursor`);
const stop = new AbortController();
for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => stop.abort());

async function handle(event: FeedEvent): Promise<void> {
  // Here a real consumer updates its copy of the register: idempotently, since an event may come twice.
  process.stdout.write(
    `${JSON.stringify({ sequence: event.sequence, type: event.type, subject: event.subject })}\n`,
  );
}

let after = (await cursor.load()) ?? "0";
while (!stop.signal.aborted) {
  try {
    for await (const event of client.follow(feed, {
      after,
      mode: "stream",
      signal: stop.signal,
      onRetry: (error, delayMs) =>
        console.error(`${(error as Error).message}; again in ${Math.round(delayMs)} ms`),
    })) {
      await handle(event);
      await cursor.save(event.sequence);
      after = event.sequence;
    }
  } catch (error) {
    if (!(error instanceof CursorGoneError)) throw error;
    // Retention removed events this consumer never saw. A real one resynchronises its copy from the source
    // register here; this one says so and goes on from the oldest kept event.
    console.error(`missed events after ${after}; resuming at the oldest kept event, ${error.oldest}`);
    after = error.oldest === null ? "0" : String(Number(error.oldest) - 1);
  }
}
