import { HttpProblem, validationProblem } from "../errors.js";
import type { CallbackClient } from "./client.js";
import { type AddressGuard, AddressRefused } from "./guard.js";

/**
 * What a callback URL must pass before it is stored: the scheme rule, the address guard on every address its
 * host resolves to, and the CloudEvents webhook abuse-protection handshake (Webhooks spec 1.0 §4.2): an OPTIONS
 * request with `WebHook-Request-Origin`, answered with a 2xx whose `WebHook-Allowed-Origin` is that origin or `*`.
 * Only the synchronous handshake is supported; a receiver that wants to confirm later through
 * `WebHook-Request-Callback` is refused.
 */

const MAX_URL_LENGTH = 2048;

function refused(detail: string): HttpProblem {
  return new HttpProblem(400, "callbackRefused", detail, { errors: [{ pointer: "/url", detail }] });
}

export class CallbackChecker {
  constructor(
    private readonly guard: AddressGuard,
    private readonly client: CallbackClient,
    private readonly allowHttp: boolean,
    /** The origin pings come from: the host name of the public URL. */
    private readonly origin: () => string,
  ) {}

  /** The URL as it will be stored, or a 400 that says what is wrong with it. */
  parse(text: string): string {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw validationProblem([{ pointer: "/url", detail: "must be an absolute URL" }]);
    }
    const problems: string[] = [];
    if (text.length > MAX_URL_LENGTH) problems.push(`must be at most ${MAX_URL_LENGTH} characters`);
    if (url.protocol !== "https:" && !(url.protocol === "http:" && this.allowHttp)) {
      problems.push(
        this.allowHttp ? "must be an http or https URL" : "must be an https URL (see SEINTJE_CALLBACK_HTTP)",
      );
    }
    if (url.username !== "" || url.password !== "") {
      problems.push("must not hold credentials; pings are authenticated by their signature");
    }
    if (url.hash !== "") problems.push("must not have a fragment");
    if (problems.length > 0) throw validationProblem(problems.map((detail) => ({ pointer: "/url", detail })));
    return url.href;
  }

  /** Runs the address guard and the handshake; throws a 400 problem when either refuses. */
  async verify(url: string): Promise<void> {
    const { hostname } = new URL(url);
    try {
      await this.guard.checkHost(hostname);
    } catch (error) {
      if (error instanceof AddressRefused) {
        throw refused(
          `the host ${hostname} resolves to ${error.address}, an internal address that callbacks may not reach (see SEINTJE_CALLBACK_ALLOW)`,
        );
      }
      throw refused(
        `the host ${hostname} does not resolve (${(error as NodeJS.ErrnoException).code ?? "error"})`,
      );
    }
    const origin = this.origin();
    const exchange = await this.client.exchange("OPTIONS", url, { "webhook-request-origin": origin });
    if (exchange.statusCode === null) {
      throw refused(`the handshake (OPTIONS) could not be completed: ${exchange.error}`);
    }
    if (exchange.statusCode < 200 || exchange.statusCode >= 300) {
      throw refused(`the handshake (OPTIONS) was answered with HTTP ${exchange.statusCode}`);
    }
    const allowed = (exchange.headers["webhook-allowed-origin"] ?? "")
      .split(",")
      .map((value) => value.trim());
    if (!allowed.includes("*") && !allowed.includes(origin)) {
      throw refused(
        `the handshake (OPTIONS) did not allow this origin: expected WebHook-Allowed-Origin "${origin}" or "*"`,
      );
    }
  }
}
