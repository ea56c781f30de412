/**
 * `seintje/client`: the SDK for publishers and consumers of a seintje service.
 *
 * ```ts
 * import { SeintjeClient, FileCursorStore } from "seintje/client";
 * const client = new SeintjeClient({ url: "https://feeds.example.nl", token: process.env.SEINTJE_TOKEN });
 * const cursor = new FileCursorStore("./brk.cursor");
 * for await (const event of client.follow("brk", { after: (await cursor.load()) ?? "0" })) {
 *   await handle(event);
 *   await cursor.save(event.sequence);
 * }
 * ```
 */
export { type ClientOptions, type ReadOptions, SeintjeClient } from "./client.js";
export { FileCursorStore } from "./cursor.js";
export {
  CursorAheadError,
  CursorGoneError,
  type PingRefusal,
  PingVerificationError,
  SeintjeError,
} from "./errors.js";
export type { FollowOptions } from "./follow.js";
export { verifyPing, verifyPingJwt } from "./ping.js";
export { isTransient, retryDelay } from "./retry.js";
export type * from "./types.js";
