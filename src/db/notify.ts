import pg from "pg";
import type { Logger } from "../logger.js";
import { onPostgres, pgTypes, type Queryable } from "./database.js";

/**
 * Wake-ups between nodes on PostgreSQL: LISTEN/NOTIFY.
 *
 * An append (or a feed's removal) sends a NOTIFY inside its own transaction, so PostgreSQL delivers it exactly
 * when the change commits, never before. Each node listens on one dedicated connection and passes what other
 * nodes did to its in-process bus, where long-polls, streams and the ping dispatcher wait. A notification is only
 * a hint, as on one node: waiters re-read storage. When the listening connection breaks, it reconnects with
 * backoff and then reads every feed's head from storage, so whatever was announced while it was away still wakes
 * its waiters.
 */

export const CHANNEL = "seintje_wakeups";

/**
 * What this node's wake-up bus must offer for other nodes' changes to reach it. Declared here, by its user, so that
 * storage needs nothing from the domain; the domain's WakeupBus has this shape.
 */
export interface WakeupTarget {
  /** The newest head the bus knows of a feed. */
  headOf(feedId: number): number;
  appended(feedId: number, head: number): void;
  removed(feedId: number): void;
  /** The feeds the bus knows of. */
  feedIds(): Iterable<number>;
}

/** A notification's payload (appendNumbered writes the `appended` kind in SQL). */
interface Message {
  /** The node that made the change; it has told its own bus already. */
  node: string;
  /** [feed id, head] of appends. */
  appended?: Array<[number, number]>;
  removed?: number;
}

/** Announces a feed's removal to the other nodes when `trx` commits. */
export async function announceRemoval(trx: Queryable, node: string, feedId: number): Promise<void> {
  if (!onPostgres(trx)) return;
  await notify(trx, { node, removed: feedId });
}

async function notify(trx: Queryable, message: Message): Promise<void> {
  // A payload is at most 8,000 bytes; a group touches at most a few hundred feeds, far below that.
  await trx.raw("select pg_notify(?, ?)", [CHANNEL, JSON.stringify(message)]);
}

const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 5_000;
/** How often the listening connection is checked: a connection dropped without a word is noticed this soon. */
const CHECK_MS = 5_000;

export class PgWakeups {
  private client: pg.Client | undefined;
  private stopped = false;
  private backoffMs = BACKOFF_MIN_MS;
  private retry: NodeJS.Timeout | undefined;
  private check: NodeJS.Timeout | undefined;
  /** How many times the connection was (re)established; tests and logs use it. */
  connections = 0;

  constructor(
    private readonly url: string,
    private readonly node: string,
    private readonly reader: Queryable,
    private readonly bus: WakeupTarget,
    private readonly logger: Logger,
  ) {}

  /** Connects and listens; rejects when the first connection fails (the service does not start half-deaf). */
  async start(): Promise<void> {
    try {
      await this.connect();
    } catch (error) {
      await this.stop();
      throw error;
    }
    this.check = setInterval(() => void this.ping(), CHECK_MS);
    this.check.unref();
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({
      connectionString: this.url,
      application_name: "seintje-listen",
      types: pgTypes,
      keepAlive: true,
    });
    client.on("notification", (notification) => this.receive(notification.payload));
    client.on("error", (error) => this.lost(client, error));
    client.on("end", () => this.lost(client, undefined));
    this.client = client;
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
      this.connections += 1;
      // Anything committed while this node was not listening: wake its waiters from storage.
      await this.resync();
    } catch (error) {
      this.lost(client, error as Error);
      throw error;
    }
    this.backoffMs = BACKOFF_MIN_MS;
  }

  private receive(payload: string | undefined): void {
    let message: Message;
    try {
      message = JSON.parse(payload ?? "") as Message;
    } catch {
      this.logger.warn({ channel: CHANNEL }, "ignored a malformed wake-up notification");
      return;
    }
    if (message.node === this.node) return;
    for (const [feedId, head] of message.appended ?? []) {
      if (head > this.bus.headOf(feedId)) this.bus.appended(feedId, head);
    }
    if (message.removed !== undefined) this.bus.removed(message.removed);
  }

  private async resync(): Promise<void> {
    // A node started without migrating has no tables yet: nothing can have been appended.
    if (!(await this.reader.schema.hasTable("feeds"))) return;
    const rows: Array<{ id: number; head: number }> = await this.reader("feeds").select("id", "head");
    const present = new Set<number>();
    for (const { id, head } of rows) {
      present.add(id);
      if (head > this.bus.headOf(id)) this.bus.appended(id, head);
    }
    for (const id of this.bus.feedIds()) if (!present.has(id)) this.bus.removed(id);
  }

  /** The connection broke (or was found dead): drop it and connect again after the backoff. */
  private lost(client: pg.Client, error: Error | undefined): void {
    if (this.client !== client) return;
    this.client = undefined;
    client.removeAllListeners("notification");
    client.on("error", () => undefined);
    void client.end().catch(() => undefined);
    if (this.stopped) return;
    this.logger.warn(
      { err: error, retryInMs: this.backoffMs },
      "lost the connection that listens for other nodes; reconnecting",
    );
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.retry) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(BACKOFF_MAX_MS, this.backoffMs * 2);
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.connect().catch(() => this.scheduleReconnect());
    }, delay);
    this.retry.unref();
  }

  private async ping(): Promise<void> {
    const client = this.client;
    if (!client) return;
    const timeout = setTimeout(() => this.lost(client, new Error("no answer within 5 s")), CHECK_MS);
    try {
      await client.query("select 1");
    } catch (error) {
      this.lost(client, error as Error);
    } finally {
      clearTimeout(timeout);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retry);
    clearInterval(this.check);
    const client = this.client;
    this.client = undefined;
    if (client) {
      client.removeAllListeners();
      client.on("error", () => undefined);
      await client.end().catch(() => undefined);
    }
  }
}
