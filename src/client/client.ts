import { randomUUID } from "node:crypto";
import { errorFor } from "./errors.js";
import { type FollowOptions, follow } from "./follow.js";
import { isTransient, retryDelay } from "./retry.js";
import type {
  Attempt,
  CloudEventInput,
  EventType,
  EventTypeDeclaration,
  Feed,
  FeedEvent,
  FeedPage,
  FeedSettings,
  NewSubscription,
  Problem,
  PublishResult,
  Subscription,
  SubscriptionChanges,
} from "./types.js";

/**
 * The seintje consumer and publisher SDK: one client per service, a bearer token per request (a function, so a
 * token can be refreshed), and typed errors. Reads and follows never need more than the `read` grant.
 */

export interface ClientOptions {
  /** The service's base URL, e.g. https://feeds.example.nl (without /v1). */
  url: string;
  /** A bearer token, or a function that returns a fresh one for each request. */
  token?: string | (() => string | Promise<string>);
  /** Another fetch (a proxy agent, tests). */
  fetch?: typeof fetch;
  /** Attempts for a publish whose answer did not come or was a server error (idempotent by event id). */
  publishAttempts?: number;
}

export interface ReadOptions {
  after?: string | number;
  limit?: number;
  /** Seconds to wait for an event when none is newer than `after` (long-poll), 0 to 60. */
  wait?: number;
  /** Prefixes of event types. */
  types?: readonly string[];
  subject?: string;
  signal?: AbortSignal;
}

export interface RequestOptions {
  method?: string;
  body?: string;
  contentType?: string;
  signal?: AbortSignal;
  headers?: Record<string, string>;
}

export interface SubscriptionPage {
  subscriptions: Subscription[];
  /** The next page's URL, or null. */
  next: string | null;
}

export interface AttemptPage {
  attempts: Attempt[];
  next: string | null;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class SeintjeClient {
  readonly url: string;
  /** The fetch every request goes through. */
  readonly fetcher: typeof fetch;

  constructor(private readonly options: ClientOptions) {
    const url = new URL(options.url);
    this.url = url.href.replace(/\/+$/, "");
    this.fetcher = options.fetch ?? fetch;
  }

  /** The headers every request carries: the token, when there is one. */
  async authorization(): Promise<Record<string, string>> {
    const token = typeof this.options.token === "function" ? await this.options.token() : this.options.token;
    return token ? { authorization: `Bearer ${token}` } : {};
  }

  /** The absolute URL of a path under the service (`/v1/feeds`). */
  resolve(path: string): string {
    return path.startsWith("http://") || path.startsWith("https://") ? path : `${this.url}${path}`;
  }

  /** One request; a 4xx or 5xx answer is thrown as a typed SeintjeError. Answers the parsed JSON (or undefined). */
  async request<T>(path: string, options: RequestOptions = {}): Promise<{ status: number; body: T }> {
    const headers: Record<string, string> = {
      accept: "application/json",
      ...(await this.authorization()),
      ...options.headers,
    };
    if (options.contentType) headers["content-type"] = options.contentType;
    const response = await this.fetcher(this.resolve(path), {
      method: options.method ?? "GET",
      headers,
      body: options.body,
      signal: options.signal,
    });
    const text = await response.text();
    const type = response.headers.get("content-type") ?? "";
    const body = text !== "" && /json/.test(type) ? (JSON.parse(text) as unknown) : undefined;
    if (!response.ok) {
      throw errorFor(response.status, body as Problem | undefined, response.headers.get("retry-after"));
    }
    return { status: response.status, body: body as T };
  }

  /**
   * Publishes one event (structured mode) or several (batch mode, appended all or none, in order). An event
   * without `id` gets a random one before the first attempt, so a retry after a lost answer is a repeat the
   * service recognises, not a second event.
   */
  async publish(feed: string, events: CloudEventInput | CloudEventInput[]): Promise<PublishResult> {
    const batch = Array.isArray(events);
    const complete = (batch ? events : [events]).map((event) => ({
      ...event,
      specversion: event.specversion ?? "1.0",
      id: event.id ?? randomUUID(),
    }));
    const body = JSON.stringify(batch ? complete : complete[0]);
    const contentType = batch ? "application/cloudevents-batch+json" : "application/cloudevents+json";
    const attempts = Math.max(1, this.options.publishAttempts ?? 3);
    for (let attempt = 1; ; attempt += 1) {
      try {
        const reply = await this.request<Omit<PublishResult, "repeat">>(`/v1/feeds/${encode(feed)}/events`, {
          method: "POST",
          body,
          contentType,
        });
        return {
          repeat: reply.status === 200,
          events: reply.body.events,
          warnings: reply.body.warnings ?? [],
        };
      } catch (error) {
        if (attempt >= attempts || !isTransient(error)) throw error;
        await sleep(retryDelay(error, attempt));
      }
    }
  }

  /** One page of the feed after a cursor; with `wait`, a long-poll. */
  async readPage(feed: string, options: ReadOptions = {}): Promise<FeedPage> {
    const query = new URLSearchParams();
    query.set("after", String(options.after ?? "0"));
    if (options.limit !== undefined) query.set("limit", String(options.limit));
    if (options.wait !== undefined) query.set("wait", String(options.wait));
    for (const type of options.types ?? []) query.append("type", type);
    if (options.subject !== undefined) query.set("subject", options.subject);
    const reply = await this.request<FeedPage>(`/v1/feeds/${encode(feed)}/events?${query}`, {
      signal: options.signal,
    });
    return reply.body;
  }

  /** One event by its sequence. */
  async readEvent(feed: string, sequence: string | number): Promise<FeedEvent> {
    return (await this.request<FeedEvent>(`/v1/feeds/${encode(feed)}/events/${sequence}`)).body;
  }

  /**
   * Every event after `after`, in order, for as long as the caller iterates: by long-poll (`mode: "poll"`, the
   * default) or by Server-Sent Events (`mode: "stream"`). After any transient error it resumes from the last
   * event it yielded, backing off exponentially (capped). It throws CursorGoneError when retention passed the
   * cursor, and SeintjeError for refusals that retrying cannot mend (401, 403, 404, 400). Aborting `signal`, or
   * leaving the loop, ends it.
   */
  follow(feed: string, options: FollowOptions = {}): AsyncGenerator<FeedEvent, void, undefined> {
    return follow(this, feed, options);
  }

  readonly feeds = {
    list: async (): Promise<Feed[]> => (await this.request<{ feeds: Feed[] }>("/v1/feeds")).body.feeds,
    get: async (name: string): Promise<Feed> => (await this.request<Feed>(`/v1/feeds/${encode(name)}`)).body,
    /** Creates the feed or replaces its settings. */
    put: async (name: string, settings: FeedSettings = {}): Promise<Feed> =>
      (
        await this.request<Feed>(`/v1/feeds/${encode(name)}`, {
          method: "PUT",
          body: JSON.stringify(settings),
          contentType: "application/json",
        })
      ).body,
    delete: async (name: string): Promise<void> => {
      await this.request(`/v1/feeds/${encode(name)}`, { method: "DELETE" });
    },
  };

  /** A feed's catalogue of event types (declaring and removing need `admin`, reading `read`). */
  readonly types = {
    /** The declared types and the types of events the feed holds, by name. */
    list: async (feed: string): Promise<EventType[]> =>
      (await this.request<{ types: EventType[] }>(`/v1/feeds/${encode(feed)}/types`)).body.types,
    get: async (feed: string, type: string): Promise<EventType> =>
      (await this.request<EventType>(`/v1/feeds/${encode(feed)}/types/${encode(type)}`)).body,
    /** Declares the type or replaces its declaration; the next publish to the feed applies it. */
    put: async (feed: string, type: string, declaration: EventTypeDeclaration = {}): Promise<EventType> =>
      (
        await this.request<EventType>(`/v1/feeds/${encode(feed)}/types/${encode(type)}`, {
          method: "PUT",
          body: JSON.stringify(declaration),
          contentType: "application/json",
        })
      ).body,
    /** Removes the declaration; the feed's events of the type stay. */
    delete: async (feed: string, type: string): Promise<void> => {
      await this.request(`/v1/feeds/${encode(feed)}/types/${encode(type)}`, { method: "DELETE" });
    },
    /** The feed's AsyncAPI 3.0 document, with a message per declared type. */
    asyncApi: async (feed: string): Promise<Record<string, unknown>> =>
      (await this.request<Record<string, unknown>>(`/v1/feeds/${encode(feed)}/asyncapi.json`)).body,
  };

  readonly subscriptions = {
    /** Creates a subscription; the answer holds its `secret`, this once. */
    create: async (subscription: NewSubscription): Promise<Subscription & { secret: string }> =>
      (await this.send<Subscription & { secret: string }>("POST", "/v1/subscriptions", subscription)).body,
    /** One page; pass `next` (a URL) to `page` for the following one. */
    list: async (options: { limit?: number } = {}): Promise<SubscriptionPage> =>
      (
        await this.request<SubscriptionPage>(
          `/v1/subscriptions${options.limit === undefined ? "" : `?limit=${options.limit}`}`,
        )
      ).body,
    page: async (next: string): Promise<SubscriptionPage> =>
      (await this.request<SubscriptionPage>(next)).body,
    /** Every subscription the token may see, page by page. */
    all: async function* (this: SeintjeClient): AsyncGenerator<Subscription> {
      let page = await this.subscriptions.list({ limit: 1000 });
      for (;;) {
        yield* page.subscriptions;
        if (page.next === null) return;
        page = await this.subscriptions.page(page.next);
      }
    }.bind(this),
    get: async (id: string): Promise<Subscription> =>
      (await this.request<Subscription>(`/v1/subscriptions/${encode(id)}`)).body,
    update: async (id: string, changes: SubscriptionChanges): Promise<Subscription> =>
      (await this.send<Subscription>("PATCH", `/v1/subscriptions/${encode(id)}`, changes)).body,
    delete: async (id: string): Promise<void> => {
      await this.request(`/v1/subscriptions/${encode(id)}`, { method: "DELETE" });
    },
    /** Sends a test ping now and answers its attempt. */
    test: async (id: string): Promise<Attempt> =>
      (await this.request<Attempt>(`/v1/subscriptions/${encode(id)}/test`, { method: "POST" })).body,
    attempts: async (id: string, options: { limit?: number; before?: string } = {}): Promise<AttemptPage> => {
      const query = new URLSearchParams();
      if (options.limit !== undefined) query.set("limit", String(options.limit));
      if (options.before !== undefined) query.set("before", options.before);
      const suffix = query.size > 0 ? `?${query}` : "";
      return (await this.request<AttemptPage>(`/v1/subscriptions/${encode(id)}/attempts${suffix}`)).body;
    },
    /** Delivers the pending ping now, skipping the backoff; answers the attempt (a 409 when none is pending). */
    retry: async (id: string): Promise<Attempt> =>
      (await this.request<Attempt>(`/v1/subscriptions/${encode(id)}/retry`, { method: "POST" })).body,
    /**
     * New signing keys: answers the new secret (v1) or the new public key (v1a); the old key keeps signing beside
     * the new one for 24 hours.
     */
    rotateSecret: async (id: string): Promise<string> => {
      const { body } = await this.request<{ secret?: string; publicKey?: string }>(
        `/v1/subscriptions/${encode(id)}/rotate-secret`,
        { method: "POST" },
      );
      return (body.secret ?? body.publicKey)!;
    },
  };

  private send<T>(method: string, path: string, body: unknown) {
    return this.request<T>(path, { method, body: JSON.stringify(body), contentType: "application/json" });
  }
}

const encode = encodeURIComponent;
