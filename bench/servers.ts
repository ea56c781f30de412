import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import Database from "better-sqlite3";
import Koa from "koa";

/**
 * The baselines' servers, each run in a process of its own by the harness:
 *   node-http <port> [page-file]  bare Node http: GET / answers a hello, GET /page the bytes of page-file
 *   koa <port>                    a bare Koa app answering the same hello
 *   node-sse <port>               bare Node SSE: GET /sub holds a stream, POST /pub writes the body to all of them
 *   node-longpoll <port>          bare Node long-poll: GET /poll is held, POST /pub answers every held one with the
 *                                 body as a JSON page; GET /held answers how many are held
 *   sqlite-page <port> <db-file>  bare Node reading a page from seintje's SQLite file: GET /v1/feeds/<feed>/events
 *                                 ?after=&limit= answers the stored bodies after the cursor, joined into a page,
 *                                 with one prepared statement (the durable read's floor: no auth, no filters)
 *   receiver <port>               a webhook receiver: answers the handshake; POST /<delay>/<key> answers 204 after
 *                                 <delay> ms and prints "ping <key> <epoch ms> <webhook-id>"
 * Each prints "listening" when it is.
 */

const [mode, portText, extra] = process.argv.slice(2);
const port = Number(portText);
const now = () => performance.timeOrigin + performance.now();
const HELLO = JSON.stringify({ hello: "world" });

function body(request: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => resolve(Buffer.concat(chunks)));
  });
}

function listen(handler: (request: IncomingMessage, response: ServerResponse) => void): void {
  const server = createServer(handler);
  server.keepAliveTimeout = 65_000;
  server.listen(port, "127.0.0.1", () => console.log("listening"));
}

switch (mode) {
  case "node-http": {
    const page = extra ? readFileSync(extra) : Buffer.from("[]");
    listen((request, response) => {
      void body(request).then(() => {
        const payload = request.url?.startsWith("/page") ? page : HELLO;
        response.writeHead(200, {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(payload),
        });
        response.end(payload);
      });
    });
    break;
  }
  case "koa": {
    const app = new Koa();
    app.use((ctx) => {
      ctx.body = { hello: "world" };
    });
    const server = app.listen(port, "127.0.0.1", () => console.log("listening"));
    server.keepAliveTimeout = 65_000;
    break;
  }
  case "node-sse": {
    const streams = new Set<ServerResponse>();
    let id = 0;
    listen((request, response) => {
      if (request.method === "GET") {
        request.socket.setNoDelay(true);
        response.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store" });
        response.write("retry: 2000\n\n");
        streams.add(response);
        response.once("close", () => streams.delete(response));
        return;
      }
      void body(request).then((data) => {
        id += 1;
        const message = `id: ${id}\ndata: ${data.toString("utf8")}\n\n`;
        for (const stream of streams) stream.write(message);
        response.writeHead(201).end();
      });
    });
    break;
  }
  case "node-longpoll": {
    const held = new Set<ServerResponse>();
    let id = 0;
    listen((request, response) => {
      if (request.method === "GET" && request.url === "/held") {
        response.end(String(held.size));
        return;
      }
      if (request.method === "GET") {
        held.add(response);
        response.once("close", () => held.delete(response));
        return;
      }
      void body(request).then((data) => {
        id += 1;
        const page = `{"events":[${data.toString("utf8")}],"next":"${id}","head":"${id}"}`;
        for (const waiting of held) {
          waiting.writeHead(200, {
            "content-type": "application/json",
            "content-length": Buffer.byteLength(page),
            "cache-control": "no-store",
          });
          waiting.end(page);
        }
        held.clear();
        response.writeHead(201).end();
      });
    });
    break;
  }
  case "sqlite-page": {
    const database = new Database(extra!, { readonly: true, fileMustExist: true });
    const feedOf = database.prepare("select id, head from feeds where name = ?");
    const bodies = database
      .prepare(
        "select sequence, body from events where feed_id = ? and sequence > ? order by sequence limit ?",
      )
      .raw();
    listen((request, response) => {
      void body(request).then(() => {
        const url = new URL(request.url ?? "/", "http://localhost");
        const feed = feedOf.get(decodeURIComponent(url.pathname.split("/")[3] ?? "")) as
          | { id: number; head: number }
          | undefined;
        if (!feed) {
          response.writeHead(404).end();
          return;
        }
        const rows = bodies.all(
          feed.id,
          Number(url.searchParams.get("after") ?? 0),
          Number(url.searchParams.get("limit") ?? 100),
        ) as Array<[number, string]>;
        const next = rows.length > 0 ? rows[rows.length - 1]![0] : Number(url.searchParams.get("after") ?? 0);
        const page = `{"events":[${rows.map((row) => row[1]).join(",")}],"next":"${next}","head":"${feed.head}"}`;
        response.writeHead(200, {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(page),
        });
        response.end(page);
      });
    });
    break;
  }
  case "receiver": {
    listen((request, response) => {
      void body(request).then(() => {
        if (request.method === "OPTIONS") {
          response.writeHead(200, { "webhook-allowed-origin": "*" }).end();
          return;
        }
        const [, delay, key] = (request.url ?? "").split("/");
        console.log(`ping ${key} ${now()} ${request.headers["webhook-id"]}`);
        setTimeout(() => response.writeHead(204).end(), Number(delay) || 0);
      });
    });
    break;
  }
  default:
    console.error(`unknown mode ${mode}`);
    process.exit(2);
}
