import Router from "@koa/router";
import { HttpProblem } from "../errors.js";
import type { Services } from "./context.js";

/** `/healthz`: the process answers. `/readyz`: the database answers and its schema is current. */
export function healthRouter(services: Services): Router {
  const router = new Router();

  router.get("/healthz", (ctx) => {
    ctx.set("Cache-Control", "no-store");
    ctx.body = { status: "ok" };
  });

  router.get("/readyz", async (ctx) => {
    ctx.set("Cache-Control", "no-store");
    if (services.stopping.aborted) throw new HttpProblem(503, "unavailable", "The service is shutting down.");
    let pending: string[];
    try {
      await services.database.ping();
      pending = await services.database.pendingMigrations();
    } catch (error) {
      services.logger.warn({ err: error }, "readiness check: database does not answer");
      throw new HttpProblem(503, "unavailable", "The database does not answer.");
    }
    await services.writeHealth.probe();
    if (services.writeHealth.full) {
      throw new HttpProblem(
        503,
        "unavailable",
        "Writes fail: the service's storage is full.",
        {},
        { "Retry-After": "30" },
      );
    }
    if (pending.length > 0) {
      throw new HttpProblem(
        503,
        "unavailable",
        `The database schema is not current: ${pending.length} migration(s) pending.`,
        {
          pending,
        },
      );
    }
    ctx.body = { status: "ready" };
  });

  return router;
}
