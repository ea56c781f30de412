/**
 * A webhook receiver: it subscribes to a feed's wake-up pings, verifies each ping, answers at once, and then
 * pulls the feed from its own cursor. A lost ping costs nothing: the next one (or a restart) pulls everything.
 *
 *   SEINTJE_URL=https://feeds.example.nl SEINTJE_TOKEN=... PUBLIC_URL=https://hooks.example.nl/seintje \
 *     PORT=9000 npx tsx examples/receiver.ts brk
 *
 * Its subscription (id, secret) and cursor are kept in STATE_FILE (default .seintje-state/<feed>.receiver.json,
 * a directory that git ignores: the file holds the webhook secret), so a restart reuses them.
 */
import { randomUUID } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import { dirname, join } from "node:path";
import { PingVerificationError, SeintjeClient, verifyPing } from "seintje/client";

interface State {
  subscription: string;
  secret: string;
  cursor: string;
}

const feed = process.argv[2] ?? "brk";
const port = Number(process.env.PORT ?? 9000);
const publicUrl = process.env.PUBLIC_URL ?? `http://127.0.0.1:${port}/seintje`;
const stateFile = process.env.STATE_FILE ?? join(".seintje-state", `${feed}.receiver.json`);
const client = new SeintjeClient({
  url: process.env.SEINTJE_URL ?? "http://127.0.0.1:8080",
  token: process.env.SEINTJE_TOKEN,
});

let state: State | undefined;

async function saveState(next: State): Promise<void> {
  await mkdir(dirname(stateFile), { recursive: true, mode: 0o700 });
  const temporary = `${stateFile}.${randomUUID()}.tmp`;
  await writeFile(temporary, JSON.stringify(next), { mode: 0o600 });
  await rename(temporary, stateFile);
  state = next;
}

/** Reads every event after the cursor, one page at a time; one pull at a time, again if pinged meanwhile. */
let pulling: Promise<void> | undefined;
let pingedAgain = false;
function pull(): void {
  if (pulling) {
    pingedAgain = true;
    return;
  }
  pulling = (async () => {
    do {
      pingedAgain = false;
      for (;;) {
        const page = await client.readPage(feed, { after: state!.cursor, limit: 1000 });
        for (const event of page.events) {
          // Here a real receiver updates its copy of the register.
          process.stdout.write(
            `${JSON.stringify({ sequence: event.sequence, id: event.id, type: event.type })}\n`,
          );
        }
        await saveState({ ...state!, cursor: page.next });
        if (page.next === page.head) break;
      }
    } while (pingedAgain);
  })()
    .catch((error) => console.error(`pull failed (the next ping tries again): ${(error as Error).message}`))
    .finally(() => {
      pulling = undefined;
    });
}

const server = createServer((request, response) => {
  // The CloudEvents webhook handshake, answered when the subscription is created.
  if (request.method === "OPTIONS") {
    response.setHeader("WebHook-Allowed-Origin", request.headers["webhook-request-origin"] ?? "*");
    response.end();
    return;
  }
  const chunks: Buffer[] = [];
  request.on("data", (chunk: Buffer) => chunks.push(chunk));
  request.on("end", () => {
    if (!state) {
      response.writeHead(503).end();
      return;
    }
    try {
      const ping = verifyPing(request.headers, Buffer.concat(chunks), state.secret);
      if (ping.data.cursorGone)
        console.error(`events after ${ping.data.after} were removed before we read them`);
    } catch (error) {
      if (!(error instanceof PingVerificationError)) throw error;
      console.error(`refused a ping: ${error.reason}`);
      response.writeHead(401).end();
      return;
    }
    response.writeHead(204).end();
    pull();
  });
});

await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
try {
  state = JSON.parse(await readFile(stateFile, "utf8")) as State;
} catch {
  const created = await client.subscriptions.create({
    feed,
    url: publicUrl,
    description: "examples/receiver.ts",
  });
  await saveState({ subscription: created.id, secret: created.secret, cursor: created.acked });
}
console.error(`receiving pings for ${feed} at ${publicUrl} (subscription ${state!.subscription})`);
pull();
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    server.close();
    server.closeAllConnections();
  });
}
