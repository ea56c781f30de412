/** Small fetch wrappers for tests: every call goes over real HTTP to the service under test. */

export interface Reply<T = unknown> {
  status: number;
  headers: Headers;
  body: T;
  text: string;
}

/** Tokens per service base URL: `call` sends the one registered for the URL's service unless told otherwise. */
const tokens = new Map<string, string>();

export function useToken(base: string, token: string | undefined): void {
  if (token === undefined) tokens.delete(base);
  else tokens.set(base, token);
}

/** The Authorization header `call` would send to this URL, for requests made otherwise (a stream). */
export function authorizationFor(url: string): Record<string, string> {
  for (const [base, token] of tokens)
    if (url.startsWith(`${base}/`)) return { authorization: `Bearer ${token}` };
  return {};
}

export async function call<T = any>(url: string, init: RequestInit = {}): Promise<Reply<T>> {
  const headers = new Headers(init.headers);
  if (!headers.has("authorization")) {
    for (const [name, value] of Object.entries(authorizationFor(url))) headers.set(name, value);
  }
  const response = await fetch(url, { ...init, headers });
  const text = await response.text();
  const type = response.headers.get("content-type") ?? "";
  const body = (text !== "" && /json/.test(type) ? JSON.parse(text) : text) as T;
  return { status: response.status, headers: response.headers, body, text };
}

export function putFeed(base: string, feed: string, settings: unknown = {}) {
  return call(`${base}/v1/feeds/${feed}`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(settings),
  });
}

/** `POST /v1/subscriptions` with this body. */
export function subscribe(base: string, body: Record<string, unknown>, headers: Record<string, string> = {}) {
  return call(`${base}/v1/subscriptions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
}

let counter = 0;

/** A valid CloudEvent in structured form; `overrides` replace or add attributes. */
export function cloudEvent(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  counter += 1;
  return {
    specversion: "1.0",
    id: `event-${process.pid}-${counter}`,
    source: "urn:nld:oin:00000001823288444000:systeem:test",
    type: "nl.example.zaak.aangemaakt",
    time: "2026-11-23T09:14:00Z",
    datacontenttype: "application/json",
    data: { zaak: counter },
    ...overrides,
  };
}

export function publish(base: string, feed: string, event: unknown, headers: Record<string, string> = {}) {
  return call(`${base}/v1/feeds/${feed}/events`, {
    method: "POST",
    headers: { "content-type": "application/cloudevents+json", ...headers },
    body: JSON.stringify(event),
  });
}

export function publishBatch(base: string, feed: string, events: unknown[]) {
  return call(`${base}/v1/feeds/${feed}/events`, {
    method: "POST",
    headers: { "content-type": "application/cloudevents-batch+json" },
    body: JSON.stringify(events),
  });
}

/** A page, or on error a problem document: tests look at whichever the status says. */
export function readPage(base: string, feed: string, query = "") {
  return call<any>(`${base}/v1/feeds/${feed}/events${query ? `?${query}` : ""}`);
}

/** Reads the whole feed with limit=1000 pages, following `next`; bounded to `maxPages`. */
export async function readAll(
  base: string,
  feed: string,
  maxPages = 1000,
): Promise<Array<Record<string, any>>> {
  const events: Array<Record<string, any>> = [];
  let after = "0";
  for (let page = 0; page < maxPages; page += 1) {
    const reply = await readPage(base, feed, `after=${after}&limit=1000`);
    if (reply.status !== 200) throw new Error(`read failed: ${reply.status} ${reply.text}`);
    events.push(...reply.body.events);
    if (reply.body.next === reply.body.head) return events;
    after = reply.body.next;
  }
  throw new Error("readAll: too many pages");
}
