import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A real webhook receiver on 127.0.0.1: it answers the abuse-protection handshake (OPTIONS) and records every
 * ping. Tests script its answers with `respond`; every wait is bounded.
 */

export interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  /** The parsed CloudEvent. */
  event: any;
  at: number;
}

export interface Answer {
  status: number;
  headers?: Record<string, string>;
  /** Milliseconds to wait before answering. */
  delayMs?: number;
  /** Answer only once this settles: a step of the test that must happen while the ping is in flight. */
  after?: Promise<unknown>;
}

export interface Receiver {
  url: string;
  pings: Received[];
  handshakes: IncomingHttpHeaders[];
  /** The most pings that were being answered at one moment. */
  maxConcurrent: number;
  /** How to answer the next pings: called with the ping's index (0-based). */
  respond: (ping: Received, index: number) => Answer;
  /* Pings are recorded when they arrive, before they are answered. */
  /** How to answer OPTIONS: the WebHook-Allowed-Origin to send, or null to send none. */
  allowOrigin: (requestOrigin: string | undefined) => string | null;
  /** Resolves once `count` pings arrived; rejects after `timeoutMs`. */
  waitForPings(count: number, timeoutMs?: number): Promise<Received[]>;
  close(): Promise<void>;
}

export async function startReceiver(path = "/hook"): Promise<Receiver> {
  const pings: Received[] = [];
  const handshakes: IncomingHttpHeaders[] = [];
  const waiters = new Set<() => void>();
  let open = 0;
  let server: Server;
  const receiver: Receiver = {
    url: "",
    pings,
    handshakes,
    maxConcurrent: 0,
    respond: () => ({ status: 204 }),
    allowOrigin: () => "*",
    waitForPings(count, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (pings.length < count) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(pings.slice(0, count));
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`${pings.length} of ${count} pings arrived within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      if (request.method === "OPTIONS") {
        handshakes.push(request.headers);
        const origin = receiver.allowOrigin(request.headers["webhook-request-origin"] as string | undefined);
        if (origin !== null) response.setHeader("WebHook-Allowed-Origin", origin);
        response.end();
        return;
      }
      open += 1;
      receiver.maxConcurrent = Math.max(receiver.maxConcurrent, open);
      response.once("close", () => {
        open -= 1;
      });
      const body = Buffer.concat(chunks).toString("utf8");
      const ping: Received = { headers: request.headers, body, event: JSON.parse(body), at: Date.now() };
      const answer = receiver.respond(ping, pings.length);
      pings.push(ping);
      for (const waiter of [...waiters]) waiter();
      const finish = () => {
        if (response.destroyed) return;
        response.writeHead(answer.status, answer.headers ?? {});
        response.end();
      };
      if (answer.after) {
        void answer.after.finally(finish);
      } else if (answer.delayMs) {
        // A held answer whose connection goes away (the sender died, the receiver closed) is dropped.
        const held = setTimeout(finish, answer.delayMs);
        response.once("close", () => clearTimeout(held));
      } else finish();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${path}`;
  return receiver;
}
