import { type AddressInfo, connect, createServer, type Server, type Socket } from "node:net";

/**
 * A TCP proxy on 127.0.0.1 in front of a real server (PostgreSQL), which a test can tell to cut a connection at a
 * chosen moment: when the client sends COMMIT on a connection that inserted into a given table, either before
 * the COMMIT reaches the server (the transaction rolls back) or after the server answered it (it committed, but
 * the client never hears so). Nothing else about the traffic is touched.
 */

export type CutMoment = "before-commit" | "after-commit";

export interface TcpProxy {
  port: number;
  /** Cuts the next connection that inserts into `table` and commits, at `moment`; resolves once it did. */
  cutNextCommit(table: string, moment: CutMoment): Promise<void>;
  close(): Promise<void>;
}

const COMMIT = Buffer.from("COMMIT");

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  let armed: { insert: Buffer; moment: CutMoment; done: () => void } | undefined;

  const server: Server = createServer((client) => {
    const upstream = connect(target.port, target.host);
    sockets.add(client).add(upstream);
    let inserted = false;
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("close", end).on("error", end);
    upstream.on("close", end).on("error", end);
    upstream.on("data", (chunk) => client.write(chunk));
    client.on("data", (chunk: Buffer) => {
      const cut = armed;
      if (cut && chunk.includes(cut.insert)) inserted = true;
      if (!cut || !inserted || !chunk.includes(COMMIT)) {
        upstream.write(chunk);
        return;
      }
      armed = undefined;
      if (cut.moment === "before-commit") {
        end();
      } else {
        // The server gets the COMMIT; the client is cut off at once and never hears the answer.
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
    cutNextCommit(table, moment) {
      return new Promise((resolve) => {
        armed = { insert: Buffer.from(`insert into "${table}"`), moment, done: resolve };
      });
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
