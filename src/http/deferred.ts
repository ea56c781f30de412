import type { Context } from "koa";

/**
 * Requests answered after their middleware has returned: a long-poll that waits (see longpoll.ts). It leaves the
 * middleware at once, holding no promise chain through it, and writes its own answer when its wait ends. The
 * middleware that acts on an answer (the request log and metrics, the request's span) does so when `answered`
 * settles instead of when the chain returns.
 */

const ANSWERED = Symbol("answered");

type Deferrable = Context & { [ANSWERED]?: Promise<void> };

/**
 * Takes the request out of Koa's hands: Koa will not answer it, and the returned function must be called once the
 * answer is written (or the client is gone), whatever happened.
 */
export function answerLater(ctx: Context): () => void {
  let done!: () => void;
  (ctx as Deferrable)[ANSWERED] = new Promise<void>((resolve) => {
    done = resolve;
  });
  ctx.respond = false;
  return done;
}

/** When the request's answer comes later: settles once it is written. Undefined for an answer given in the chain. */
export function answered(ctx: Context): Promise<void> | undefined {
  return (ctx as Deferrable)[ANSWERED];
}
