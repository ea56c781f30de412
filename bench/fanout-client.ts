import { connect, type Socket } from "node:net";
import { createInterface } from "node:readline";

/**
 * Holds many connections to one server and says when a published round reached all of them:
 *   fanout-client sse <url> <count> [header-json]       GET streams that stay open
 *   fanout-client longpoll <url> <count> [header-json]  long-polls; "poll <after>" (on stdin) sends them again
 * It prints "ready <n>" once every connection is open (streams) or sent (long-polls), and for each round marker
 * ("bench-round-<k>") that reached every connection "round <k> <first epoch ms> <last epoch ms>".
 */

const [mode, urlText, countText, headerJson] = process.argv.slice(2);
const url = new URL(urlText!);
const count = Number(countText);
const headers: Record<string, string> = headerJson ? JSON.parse(headerJson) : {};
const now = () => performance.timeOrigin + performance.now();
const MARKER = /bench-round-(\d+)/g;

/** Round -> arrival times, one per connection that saw it. */
const arrivals = new Map<number, { first: number; last: number; seen: Set<number> }>();

function saw(connection: number, text: string): void {
  for (const match of text.matchAll(MARKER)) {
    const round = Number(match[1]);
    const at = now();
    let entry = arrivals.get(round);
    if (!entry) {
      entry = { first: at, last: at, seen: new Set() };
      arrivals.set(round, entry);
    }
    if (entry.seen.has(connection)) continue;
    entry.seen.add(connection);
    entry.last = at;
    if (entry.seen.size === count) console.log(`round ${round} ${entry.first} ${entry.last}`);
  }
}

function request(path: string, accept: string): string {
  const lines = [`GET ${path} HTTP/1.1`, `Host: ${url.host}`, `Accept: ${accept}`];
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
  return `${lines.join("\r\n")}\r\n\r\n`;
}

function open(index: number, payload: string, onOpen: () => void): Socket {
  const socket = connect(Number(url.port), url.hostname);
  socket.setNoDelay(true);
  socket.setEncoding("utf8");
  let opened = false;
  // A marker may be split between two chunks: keep the end of the previous one.
  let carry = "";
  socket.on("data", (chunk: string) => {
    if (!opened) {
      opened = true;
      onOpen();
    }
    saw(index, carry + chunk);
    carry = chunk.slice(-40);
  });
  socket.on("error", (error) => {
    // A connection the server (or the kernel, under a burst of connects) reset is opened again, so that every
    // round still reaches `count` connections.
    console.error(`connection ${index}: ${error.message}; opening it again`);
    sockets[index] = open(index, payload, () => undefined);
  });
  socket.write(payload);
  return socket;
}

let sockets: Socket[] = [];

/** Opens `count` connections, at most 200 connecting at once. */
async function openAll(payload: (index: number) => string, waitForData: boolean): Promise<Socket[]> {
  sockets = [];
  for (let start = 0; start < count; start += 200) {
    const batch = [];
    for (let index = start; index < Math.min(count, start + 200); index += 1) {
      batch.push(
        new Promise<void>((resolve) => {
          const socket = open(index, payload(index), () => resolve());
          sockets[index] = socket;
          if (!waitForData) socket.once("connect", () => resolve());
        }),
      );
    }
    await Promise.all(batch);
  }
  return sockets;
}

if (mode === "sse") {
  const path = `${url.pathname}${url.search}`;
  const sockets = await openAll(() => request(path, "text/event-stream"), true);
  console.log(`ready ${sockets.length}`);
} else if (mode === "longpoll") {
  const pollAll = async (after: string) => {
    for (const socket of sockets) {
      socket.removeAllListeners("error");
      socket.destroy();
    }
    const target = new URL(url);
    target.searchParams.set("after", after);
    const path = `${target.pathname}${target.search}`;
    const opened = await openAll(() => request(path, "application/json"), false);
    console.log(`ready ${opened.length}`);
  };
  createInterface({ input: process.stdin }).on("line", (line) => {
    const [command, after] = line.split(" ");
    if (command === "poll") void pollAll(after!);
  });
  console.log("started");
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
