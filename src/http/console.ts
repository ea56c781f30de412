import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type Koa from "koa";

/**
 * `GET /console/`: the web console (console/ in the package), static files read once at start and served without
 * a token (they hold no data; the console asks the API with the token its user gives it). A strict
 * Content-Security-Policy: scripts and styles from this origin only, no inline script, no eval, no frames; the
 * page may talk to this origin alone. The language of the page follows Accept-Language (Dutch or English); the
 * console has a switch.
 */

export const CONSOLE_PATH = "/console/";

export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const TYPES: Record<string, string> = {
  "index.html": "text/html; charset=utf-8",
  "app.js": "text/javascript; charset=utf-8",
  "style.css": "text/css; charset=utf-8",
};

/** The console's folder: beside src/ when run from the sources, beside dist/ when run from the build. */
function consoleDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let up = 0; up < 5; up += 1) {
    if (existsSync(join(dir, "console", "index.html"))) return join(dir, "console");
    dir = dirname(dir);
  }
  throw new Error("the console's files (console/index.html) are not in the package");
}

export function consoleMiddleware(): Koa.Middleware {
  const dir = consoleDir();
  const files = new Map(Object.keys(TYPES).map((name) => [name, readFileSync(join(dir, name), "utf8")]));
  return async (ctx, next) => {
    if (ctx.path === "/console") {
      ctx.status = 308;
      ctx.redirect(CONSOLE_PATH);
      return;
    }
    if (!ctx.path.startsWith(CONSOLE_PATH) || (ctx.method !== "GET" && ctx.method !== "HEAD")) return next();
    const name = ctx.path.slice(CONSOLE_PATH.length) || "index.html";
    const content = files.get(name);
    if (content === undefined) return next();
    ctx.set("Content-Security-Policy", CONSOLE_CSP);
    ctx.set("X-Content-Type-Options", "nosniff");
    ctx.set("Referrer-Policy", "no-referrer");
    ctx.set("Cache-Control", "no-cache");
    ctx.type = TYPES[name]!;
    if (name === "index.html") {
      ctx.vary("Accept-Language");
      ctx.body =
        ctx.acceptsLanguages("en", "nl") === "nl"
          ? content.replace('<html lang="en">', '<html lang="nl">')
          : content;
    } else {
      ctx.body = content;
    }
  };
}
