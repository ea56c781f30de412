import Router from "@koa/router";
import type { Services } from "./context.js";

/**
 * `GET /.well-known/jwks.json` (no token): the public keys of the service's signing keys as a JWK Set (RFC 7517),
 * so that a receiver can verify the JWT a ping carries, and anyone the tokens the service mints.
 */
export const JWKS_PATH = "/.well-known/jwks.json";

export function jwksRouter(services: Services): Router {
  const router = new Router();
  router.get(JWKS_PATH, (ctx) => {
    // Short enough that a rotated key is seen soon, long enough that receivers need not ask per ping.
    ctx.set("Cache-Control", "public, max-age=300");
    ctx.type = "application/jwk-set+json";
    ctx.body = JSON.stringify({ keys: services.jwks() });
  });
  return router;
}
