import type { Context } from "koa";
import getRawBody from "raw-body";
import { HttpProblem } from "../errors.js";

/** Reads the request body as bytes, refusing more than `limit` (413) and any content coding (415). */
export async function readBody(ctx: Context, limit: number): Promise<Buffer> {
  const coding = ctx.get("Content-Encoding").trim().toLowerCase();
  if (coding !== "" && coding !== "identity") {
    throw new HttpProblem(415, "unsupportedMediaType", `Content-Encoding "${coding}" is not supported.`);
  }
  const length = ctx.get("Content-Length");
  return getRawBody(ctx.req, { limit, length: length === "" ? undefined : length });
}
