import type { Context } from "koa";
import getRawBody from "raw-body";
import { HttpProblem } from "../errors.js";
import { decodeJson } from "../json.js";

/** Reads the request body as bytes, refusing more than `limit` (413) and any content coding (415). */
export async function readBody(ctx: Context, limit: number): Promise<Buffer> {
  const coding = ctx.get("Content-Encoding").trim().toLowerCase();
  if (coding !== "" && coding !== "identity") {
    throw new HttpProblem(415, "unsupportedMediaType", `Content-Encoding "${coding}" is not supported.`);
  }
  const length = ctx.get("Content-Length");
  if (length !== "" && Number(length) > limit) {
    throw new HttpProblem(413, "tooLarge", `The request body is larger than ${limit} bytes.`);
  }
  // Everything that could refuse the request before its body has been checked: the client may send it now.
  if (expectsContinue(ctx) && !ctx.res.headersSent) ctx.res.writeContinue();
  return getRawBody(ctx.req, { limit, length: length === "" ? undefined : length });
}

/** Whether the client waits for `100 Continue` before it sends the body. */
export function expectsContinue(ctx: Context): boolean {
  return ctx.get("Expect").toLowerCase() === "100-continue";
}

/**
 * A JSON request body (application/json or any +json type), at most `limit` bytes, decoded by the one rule of
 * `decodeJson`. An empty body is `empty`.
 */
export async function readJson(ctx: Context, limit: number, empty?: unknown): Promise<unknown> {
  const bytes = await readBody(ctx, limit);
  if (bytes.length === 0 && empty !== undefined) return empty;
  const type = ctx.request.type;
  if (type !== "application/json" && !type.endsWith("+json")) {
    throw new HttpProblem(415, "unsupportedMediaType", "This resource is sent as application/json.");
  }
  return decodeJson(bytes);
}
