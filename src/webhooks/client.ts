import { isIP } from "node:net";
import { rootCertificates } from "node:tls";
import { Agent, buildConnector, request } from "undici";
import { deadline } from "../client/deadline.js";
import { type AddressGuard, AddressRefused } from "./guard.js";

/**
 * Outbound HTTP to callbacks: one pooled keep-alive client (undici) for every delivery, so thousands of
 * subscriptions on one receiver reuse a few sockets. Every connection goes through the address guard, before
 * connecting (DNS answers are filtered) and after (the socket's remote address is checked), redirects are never
 * followed, and a request is bounded by the configured timeout from connect to the end of the response.
 */

export interface ClientOptions {
  timeoutMs: number;
  userAgent: string;
  /** Sockets kept per callback origin. */
  connectionsPerOrigin?: number;
  /** Mutual TLS: a client certificate and key to present, and trust anchors added to Node's own. */
  tls?: { cert?: string; key?: string; ca?: string };
}

export interface Exchange {
  /** Null when no response came (network error, timeout, refused address). */
  statusCode: number | null;
  durationMs: number;
  /** What went wrong, cut short; null for a 2xx. */
  error: string | null;
  /** No response came within the timeout. */
  timedOut: boolean;
  headers: Record<string, string>;
}

const ERROR_TEXT_LIMIT = 200;

export function cutShort(text: string, limit = ERROR_TEXT_LIMIT): string {
  const flat = text.replace(/[\r\n]+/g, " ");
  return flat.length <= limit ? flat : `${flat.slice(0, limit - 1)}…`;
}

const TIMEOUT_CODES = new Set(["UND_ERR_CONNECT_TIMEOUT", "UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT"]);

function isTimeout(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" && TIMEOUT_CODES.has(code);
}

function describe(error: unknown, timedOut: boolean, timeoutMs: number): string {
  if (timedOut) return `timed out after ${timeoutMs / 1000} s`;
  const cause = (error as { cause?: unknown }).cause;
  const root = cause instanceof AddressRefused ? cause : error;
  if (!(root instanceof Error)) return cutShort(String(root));
  const rootCode = (root as { code?: unknown }).code;
  const text =
    typeof rootCode === "string" && !root.message.includes(rootCode)
      ? `${rootCode}: ${root.message}`
      : root.message;
  return cutShort(text);
}

function flatHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const flat: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) flat[name.toLowerCase()] = Array.isArray(value) ? value.join(", ") : value;
  }
  return flat;
}

export class CallbackClient {
  private readonly agent: Agent;

  constructor(
    private readonly guard: AddressGuard,
    private readonly options: ClientOptions,
  ) {
    const tlsOptions = options.tls ?? {};
    const connect = buildConnector({
      lookup: guard.lookup,
      timeout: options.timeoutMs,
      ...(tlsOptions.cert ? { cert: tlsOptions.cert, key: tlsOptions.key } : {}),
      // `ca` replaces Node's trust store: give it back beside the added anchors.
      ...(tlsOptions.ca ? { ca: [...rootCertificates, tlsOptions.ca] } : {}),
    });
    this.agent = new Agent({
      connect: (connectOptions, callback) => {
        connect(connectOptions, (error, socket) => {
          if (error) return callback(error, null);
          const remote = socket.remoteAddress;
          if (remote === undefined || !guard.allows(remote)) {
            socket.destroy();
            return callback(new AddressRefused(remote ?? connectOptions.hostname), null);
          }
          callback(null, socket);
        });
      },
      connections: options.connectionsPerOrigin ?? 32,
      keepAliveTimeout: 30_000,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
    });
  }

  /**
   * Sends one request and reads (and discards) the response. Never throws for what the receiver or the network
   * did: that is in the Exchange. `signal` aborts it early (shutdown).
   */
  async exchange(
    method: "POST" | "OPTIONS",
    url: string,
    headers: Record<string, string>,
    body?: string,
    signal?: AbortSignal,
  ): Promise<Exchange> {
    const started = performance.now();
    const { timeoutMs } = this.options;
    const elapsed = () => Math.round(performance.now() - started);
    const timeout = deadline(timeoutMs, signal);
    try {
      const host = new URL(url).hostname.replace(/^\[(.*)\]$/, "$1");
      if (isIP(host)) this.guard.check(host);
      const response = await request(url, {
        method,
        headers: { "user-agent": this.options.userAgent, ...headers },
        body,
        dispatcher: this.agent,
        signal: timeout.signal,
      });
      await response.body.dump({ limit: 64 * 1024 }).catch(() => undefined);
      const { statusCode } = response;
      let error: string | null = null;
      if (statusCode >= 300 && statusCode < 400) error = `HTTP ${statusCode}: redirects are not followed`;
      else if (statusCode < 200 || statusCode >= 300) error = `HTTP ${statusCode}`;
      return {
        statusCode,
        durationMs: elapsed(),
        error,
        timedOut: false,
        headers: flatHeaders(response.headers),
      };
    } catch (error) {
      const timedOut = timeout.timedOut() || isTimeout(error);
      return {
        statusCode: null,
        durationMs: elapsed(),
        error: describe(error, timedOut, timeoutMs),
        timedOut,
        headers: {},
      };
    } finally {
      timeout.clear();
    }
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  /** Drops every socket at once (shutdown after the grace period). */
  async destroy(): Promise<void> {
    await this.agent.destroy();
  }
}
