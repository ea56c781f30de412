import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { readSigningKey, SIGNING_KEY_FILE } from "../auth/keys.js";
import { mintToken } from "../auth/tokens.js";
import { SeintjeClient } from "../client/client.js";
import { CursorGoneError, SeintjeError } from "../client/errors.js";
import type { CloudEventInput, Feed, Subscription } from "../client/types.js";
import { loadConfig } from "../config.js";
import { parseSequence } from "../log/sequence.js";
import { type Command, CommandFailed, EXIT, UsageError } from "./command.js";

/**
 * The commands that talk to a running service over HTTP, through the SDK: publish, tail, feeds, types,
 * subscriptions.
 *
 * Where: --url, else SEINTJE_URL, else SEINTJE_PUBLIC_URL, else the SEINTJE_HOST and SEINTJE_PORT the service
 * would listen on. As whom: --token, else SEINTJE_TOKEN, else (on the service's own machine) a short-lived token
 * minted with the signing key in SEINTJE_DATA_DIR for just the grant the command needs.
 */

const CONNECTION_OPTIONS = {
  url: { type: "string" },
  token: { type: "string" },
  "data-dir": { type: "string" },
} as const;

const CONNECTION_HELP = `Connection:
  --url URL         the service (default SEINTJE_URL, SEINTJE_PUBLIC_URL, or http://SEINTJE_HOST:SEINTJE_PORT)
  --token TOKEN     a bearer token (default SEINTJE_TOKEN, or one minted with the service's signing key when
                    this runs beside the service)
  --data-dir DIR    where that key is: the service's data directory (default SEINTJE_DATA_DIR, or ./data)`;

/** A minted token lives this long; a new one is minted a minute before it ends. */
const MINTED_TTL_SECONDS = 15 * 60;

function serviceUrl(given: string | undefined): string {
  const url = given ?? process.env.SEINTJE_URL?.trim();
  if (url) {
    try {
      return new URL(url).href;
    } catch {
      throw new UsageError(`not a URL: "${url}"`);
    }
  }
  const config = loadConfig();
  if (config.publicUrl) return config.publicUrl;
  const host = ["0.0.0.0", "::", ""].includes(config.host) ? "127.0.0.1" : config.host;
  return `http://${host.includes(":") ? `[${host}]` : host}:${config.port}`;
}

/**
 * The token to send: given, or minted anew (before the last one expires) with the service's signing key in
 * `dataDir`, never with a key of its own making. Without either, none (the 401 then says where it looked).
 */
function tokenSource(
  given: string | undefined,
  scope: string,
  dataDir: string,
): (() => Promise<string>) | string | undefined {
  const token = given ?? process.env.SEINTJE_TOKEN?.trim();
  if (token) return token;
  const config = loadConfig();
  const source = config.keys.signing;
  const configured = source.text !== undefined || source.file !== undefined;
  if (!config.auth.enabled || (!configured && !existsSync(join(dataDir, SIGNING_KEY_FILE)))) return undefined;
  let minted: { token: string; until: number } | undefined;
  return async () => {
    if (!minted || Date.now() > minted.until) {
      const key = await readSigningKey(dataDir, source);
      const fresh = await mintToken(key, {
        scope,
        subject: `seintje-cli@${hostname()}`,
        ttlSeconds: MINTED_TTL_SECONDS,
        issuer: config.auth.issuer,
        audience: config.auth.audience,
      });
      minted = { token: fresh, until: Date.now() + (MINTED_TTL_SECONDS - 60) * 1000 };
    }
    return minted.token;
  };
}

function client(values: { url?: string; token?: string; "data-dir"?: string }, scope: string): SeintjeClient {
  const dataDir = values["data-dir"] ?? loadConfig().dataDir;
  return new SeintjeClient({ url: serviceUrl(values.url), token: tokenSource(values.token, scope, dataDir) });
}

/** A refusal or an unreachable service, said in one line. */
function failure(error: unknown, url: string): CommandFailed {
  if (error instanceof CursorGoneError) {
    return new CommandFailed(
      `${error.message} (oldest kept: ${error.oldest ?? "none"}); resume with --after ${error.oldest === null ? "0" : Number(error.oldest) - 1}`,
      EXIT.cursorGone,
    );
  }
  if (error instanceof SeintjeError) {
    const pointed = (error.problem?.errors ?? []).map((item) => `\n  ${item.pointer || "/"}: ${item.detail}`);
    const hint =
      error.status === 401
        ? " (pass --token or set SEINTJE_TOKEN; beside the service, name its data directory with --data-dir or SEINTJE_DATA_DIR so that a token is minted with its key)"
        : "";
    return new CommandFailed(`${error.status} ${error.message}${hint}${pointed.join("")}`);
  }
  const cause = (error as { cause?: { code?: string } }).cause?.code;
  return new CommandFailed(`cannot reach ${url}: ${cause ?? (error as Error).message}`);
}

function readStdin(): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    let input = "";
    process.stdin.setEncoding("utf8");
    process.stdin.on("data", (chunk: string) => {
      input += chunk;
    });
    process.stdin.once("end", () => resolve(input));
    process.stdin.once("error", reject);
  });
}

/**
 * JSON given to `option`: as text, @file or - (standard input); with `fileOnly`, a file's path or -. A file that
 * cannot be read or text that is not JSON is a usage error of `command`.
 */
async function readJsonArgument(
  given: string,
  option: string,
  command: Command,
  fileOnly = false,
): Promise<unknown> {
  const path = fileOnly ? given : given.startsWith("@") ? given.slice(1) : undefined;
  const text =
    given === "-"
      ? await readStdin()
      : path !== undefined
        ? await readFile(path, "utf8").catch((error: Error) => {
            throw new UsageError(`${option} ${given}: ${error.message}`, command);
          })
        : given;
  try {
    return JSON.parse(text);
  } catch {
    const forms = fileOnly
      ? "a file of JSON, or - for standard input"
      : "JSON (text, @file or - for standard input)";
    throw new UsageError(`${option} takes ${forms}`, command);
  }
}

function onePositional(positionals: string[], command: Command): string {
  if (positionals.length !== 1) throw new UsageError(`${command.name} takes one feed name`, command);
  return positionals[0]!;
}

export const publish: Command = {
  name: "publish",
  summary: "publish one event to a feed",
  help: `Usage: seintje publish <feed> --type TYPE [--source URI] [--subject S] [--id ID] [--time RFC3339]
                       [--data JSON|@file|-]

Publishes one CloudEvent (structured mode) and prints the stored event's {id, source, sequence} as JSON.
Warnings of the NL GOV profile go to standard error. Without --id the event gets a random one; without
--source, urn:seintje:cli:<host name>.

${CONNECTION_HELP}`,
  async run(args) {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        ...CONNECTION_OPTIONS,
        type: { type: "string" },
        source: { type: "string" },
        subject: { type: "string" },
        id: { type: "string" },
        time: { type: "string" },
        data: { type: "string" },
      },
    });
    const feed = onePositional(positionals, publish);
    if (!values.type)
      throw new UsageError("publish needs --type, e.g. --type nl.example.zaak.aangemaakt", publish);
    const event: CloudEventInput = {
      source: values.source ?? `urn:seintje:cli:${hostname()}`,
      type: values.type,
    };
    if (values.id !== undefined) event.id = values.id;
    if (values.subject !== undefined) event.subject = values.subject;
    if (values.time !== undefined) event.time = values.time;
    if (values.data !== undefined) {
      event.datacontenttype = "application/json";
      event.data = await readJsonArgument(values.data, "--data", publish);
    }
    const sdk = client(values, `publish:${feed}`);
    try {
      const result = await sdk.publish(feed, event);
      for (const warning of result.warnings)
        process.stderr.write(`warning: ${warning.pointer}: ${warning.detail}\n`);
      process.stdout.write(`${JSON.stringify(result.events[0])}\n`);
    } catch (error) {
      throw failure(error, sdk.url);
    }
  },
};

export const tail: Command = {
  name: "tail",
  summary: "print a feed's events as JSON lines, then each new one as it arrives",
  help: `Usage: seintje tail <feed> [--after N] [--type PREFIX]... [--subject S] [--mode poll|stream] [--count N]

Prints every event after sequence N (default 0: from the oldest kept) as one JSON line each, then waits for
new ones, for ever or until --count events were printed. It resumes after the last printed event whenever the
connection breaks. Ends with exit code 0 on SIGINT or SIGTERM, and 3 when retention removed events after the
cursor (the message says where to resume).

${CONNECTION_HELP}`,
  async run(args) {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        ...CONNECTION_OPTIONS,
        after: { type: "string", default: "0" },
        type: { type: "string", multiple: true },
        subject: { type: "string" },
        mode: { type: "string", default: "poll" },
        count: { type: "string" },
      },
    });
    const feed = onePositional(positionals, tail);
    if (parseSequence(values.after) === undefined) throw new UsageError("--after takes a sequence", tail);
    if (values.mode !== "poll" && values.mode !== "stream")
      throw new UsageError("--mode is poll or stream", tail);
    const count = values.count === undefined ? Number.POSITIVE_INFINITY : Number(values.count);
    if (!(Number.isInteger(count) && count > 0) && count !== Number.POSITIVE_INFINITY) {
      throw new UsageError("--count takes a positive whole number", tail);
    }
    const stop = new AbortController();
    for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => stop.abort());
    // A reader that went away (| head) ends the tail quietly.
    process.stdout.on("error", () => stop.abort());
    const sdk = client(values, `read:${feed}`);
    let printed = 0;
    try {
      for await (const event of sdk.follow(feed, {
        after: values.after,
        types: values.type,
        subject: values.subject,
        mode: values.mode,
        signal: stop.signal,
        onRetry: (error, delayMs) =>
          process.stderr.write(
            `seintje: ${(error as Error).message}; again in ${(delayMs / 1000).toFixed(1)} s\n`,
          ),
      })) {
        process.stdout.write(`${JSON.stringify(event)}\n`);
        printed += 1;
        if (printed >= count) break;
      }
    } catch (error) {
      throw failure(error, sdk.url);
    }
  },
};

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows
    .map((row) =>
      row
        .map((cell, column) => cell.padEnd(widths[column]!))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

export const feeds: Command = {
  name: "feeds",
  summary: "list the feeds the token may read",
  help: `Usage: seintje feeds [--json]

Lists the feeds with their head, oldest kept sequence and retention; --json prints the service's JSON.

${CONNECTION_HELP}`,
  async run(args) {
    const { values } = parseArgs({
      args,
      strict: true,
      options: { ...CONNECTION_OPTIONS, json: { type: "boolean" } },
    });
    const sdk = client(values, "read");
    let list: Feed[];
    try {
      list = await sdk.feeds.list();
    } catch (error) {
      throw failure(error, sdk.url);
    }
    if (values.json) {
      process.stdout.write(`${JSON.stringify(list)}\n`);
      return;
    }
    const retention = (feed: Feed) =>
      [feed.retention.maxAge, feed.retention.maxEvents === null ? null : `${feed.retention.maxEvents} events`]
        .filter(Boolean)
        .join(", ") || "-";
    process.stdout.write(
      `${table([
        ["NAME", "HEAD", "OLDEST", "RETENTION", "DESCRIPTION"],
        ...list.map((feed) => [
          feed.name,
          feed.head,
          feed.oldest ?? "-",
          retention(feed),
          feed.description ?? "",
        ]),
      ])}\n`,
    );
  },
};

export const subscriptions: Command = {
  name: "subscriptions",
  summary: "list the webhook subscriptions the token may see",
  help: `Usage: seintje subscriptions [--feed NAME] [--json]

Lists subscriptions (every page) with their status, acknowledged cursor, how pings are signed (v1 or v1a, and
+jwt or +static for an Authorization) and callback URL; --feed keeps one feed's; --json prints one JSON line per
subscription.

${CONNECTION_HELP}`,
  async run(args) {
    const { values } = parseArgs({
      args,
      strict: true,
      options: { ...CONNECTION_OPTIONS, json: { type: "boolean" }, feed: { type: "string" } },
    });
    const sdk = client(values, values.feed ? `subscribe:${values.feed}` : "subscribe admin");
    const list: Subscription[] = [];
    try {
      for await (const subscription of sdk.subscriptions.all()) {
        if (values.feed === undefined || subscription.feed === values.feed) list.push(subscription);
      }
    } catch (error) {
      throw failure(error, sdk.url);
    }
    if (values.json) {
      for (const subscription of list) process.stdout.write(`${JSON.stringify(subscription)}\n`);
      return;
    }
    process.stdout.write(
      `${table([
        ["ID", "FEED", "STATUS", "ACKED", "HEAD", "SIGNED", "URL"],
        ...list.map((item) => [
          item.id,
          item.feed,
          item.status,
          item.acked,
          item.head,
          // How a receiver checks the pings: the signature scheme, and an Authorization if any.
          [item.signature, item.authorization?.type].filter(Boolean).join("+"),
          item.url,
        ]),
      ])}\n`,
    );
  },
};

export const types: Command = {
  name: "types",
  summary: "list, show, declare or remove a feed's event types",
  help: `Usage: seintje types list <feed> [--json]
       seintje types get <feed> <type>
       seintje types put <feed> <type> [--schema FILE] [--example FILE] [--description TEXT] [--deprecated]
       seintje types delete <feed> <type>

list shows the feed's declared types and the types of events it holds, with how many it holds and when the
newest was appended. get prints one type as JSON. put declares a type or replaces its declaration (what it does
not name is none): --schema a JSON Schema (draft 2020-12) for the events' data, --example example data that
must match it (FILE may be - for standard input); the next publish to the feed applies it. delete removes the
declaration; the feed's events stay. put and delete need admin on the feed, list and get read.

${CONNECTION_HELP}`,
  async run(args) {
    const { values, positionals } = parseArgs({
      args,
      strict: true,
      allowPositionals: true,
      options: {
        ...CONNECTION_OPTIONS,
        json: { type: "boolean" },
        schema: { type: "string" },
        example: { type: "string" },
        description: { type: "string" },
        deprecated: { type: "boolean" },
      },
    });
    const [action, feed, type, ...extra] = positionals;
    const takesType = action === "get" || action === "put" || action === "delete";
    if (!["list", "get", "put", "delete"].includes(action ?? "")) {
      throw new UsageError("types takes list, get, put or delete", types);
    }
    if (feed === undefined || (takesType ? type === undefined : type !== undefined) || extra.length > 0) {
      throw new UsageError(`types ${action} takes a feed name${takesType ? " and a type" : ""}`, types);
    }
    const declares = [values.schema, values.example, values.description, values.deprecated];
    if (action !== "put" && declares.some((value) => value !== undefined)) {
      throw new UsageError("--schema, --example, --description and --deprecated go with put", types);
    }
    const sdk = client(values, `${action === "put" || action === "delete" ? "admin" : "read"}:${feed}`);
    const declaration =
      action === "put"
        ? {
            schema:
              values.schema === undefined
                ? undefined
                : await readJsonArgument(values.schema, "--schema", types, true),
            example:
              values.example === undefined
                ? undefined
                : await readJsonArgument(values.example, "--example", types, true),
            description: values.description,
            deprecated: values.deprecated,
          }
        : undefined;
    try {
      if (action === "list") {
        const list = await sdk.types.list(feed);
        if (values.json) {
          process.stdout.write(`${JSON.stringify(list)}\n`);
          return;
        }
        process.stdout.write(
          `${table([
            ["TYPE", "DECLARED", "SCHEMA", "COUNT", "LAST PUBLISHED", "DESCRIPTION"],
            ...list.map((entry) => [
              entry.type,
              entry.declared ? (entry.deprecated ? "deprecated" : "yes") : "no",
              entry.schema === null ? "-" : "yes",
              String(entry.count),
              entry.lastPublished ?? "-",
              entry.description ?? "",
            ]),
          ])}\n`,
        );
      } else if (action === "get") {
        process.stdout.write(`${JSON.stringify(await sdk.types.get(feed, type!), null, 2)}\n`);
      } else if (action === "put") {
        process.stdout.write(`${JSON.stringify(await sdk.types.put(feed, type!, declaration), null, 2)}\n`);
      } else {
        await sdk.types.delete(feed, type!);
      }
    } catch (error) {
      throw failure(error, sdk.url);
    }
  },
};
