import Router from "@koa/router";
import { authorizeEveryFeed } from "./auth.js";
import type { Services } from "./context.js";

/**
 * `GET /metrics`: Prometheus text format. Open by default (scrapers seldom carry tokens, and the figures name
 * feeds but hold no event); with SEINTJE_METRICS=token only a token with the `admin` grant on every feed may read
 * it, and with `off` there is no such path.
 */
export function metricsRouter(services: Services): Router {
  const router = new Router();
  if (services.metricsAccess === "off") return router;
  router.get("/metrics", async (ctx) => {
    if (services.metricsAccess === "token") authorizeEveryFeed(ctx, "admin");
    ctx.set("Cache-Control", "no-store");
    ctx.type = services.metrics.contentType;
    ctx.body = await services.metrics.text();
  });
  return router;
}
