import { type AddressInfo, connect, createServer, type Server, type Socket } from "node:net";

/**
 * A TCP proxy on 127.0.0.1 in front of a real server (PostgreSQL), which a test can tell to cut a connection at a
 * chosen moment around a statement that commits on its own (an append's write): either before the statement
 * reaches the server (nothing happens there) or after the server has it (it runs and commits, but the client never
 * hears so). Or it holds such a statement until the test lets it go, so that the test can act in the gap (another
 * connection's change between an append's read and its write). Nothing else about the traffic is touched.
 */

export type CutMoment = "before-commit" | "after-commit";

export interface TcpProxy {
  port: number;
  /**
   * Cuts the next connection that sends a statement with this text (or, prepared, with this name), at `moment`;
   * resolves once it did.
   */
  cutNextCommit(statement: string, moment: CutMoment): Promise<void>;
  /**
   * Holds the next statement with this text (or prepared name), and what its connection sends after it; resolves
   * once it is held, with the function that lets it through.
   */
  holdNext(statement: string): Promise<() => void>;
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  let armed: { statement: Buffer; moment: CutMoment; done: () => void } | undefined;
  let holding: { statement: Buffer; held: (release: () => void) => void } | undefined;

  const server: Server = createServer((client) => {
    const upstream = connect(target.port, target.host);
    sockets.add(client).add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("close", end).on("error", end);
    upstream.on("close", end).on("error", end);
    upstream.on("data", (chunk) => client.write(chunk));
    /** What this connection sent since a statement of it was held. */
    let held: Buffer[] | undefined;
    client.on("data", (chunk: Buffer) => {
      if (held) {
        held.push(chunk);
        return;
      }
      const hold = holding;
      if (hold && chunk.includes(hold.statement)) {
        holding = undefined;
        const waiting: Buffer[] = [chunk];
        held = waiting;
        hold.held(() => {
          held = undefined;
          for (const part of waiting) upstream.write(part);
        });
        return;
      }
      const cut = armed;
      if (!cut || !chunk.includes(cut.statement)) {
        upstream.write(chunk);
        return;
      }
      armed = undefined;
      if (cut.moment === "before-commit") {
        end();
      } else {
        // The server gets the statement; the client is cut off at once and never hears the answer.
        client
          .removeAllListeners("close")
          .removeAllListeners("error")
          .on("error", () => undefined);
        client.destroy();
        upstream.write(chunk);
        upstream.removeAllListeners("data");
        upstream.once("data", end);
      }
      cut.done();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    cutNextCommit(statement, moment) {
      return new Promise((resolve) => {
        armed = { statement: Buffer.from(statement), moment, done: resolve };
      });
    },
    holdNext(statement) {
      return new Promise((resolve) => {
        holding = { statement: Buffer.from(statement), held: resolve };
      });
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
