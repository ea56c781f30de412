import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, it } from "node:test";

/**
 * The house has floors, and imports go down only: the CLI and service.ts on top, then config.ts, then HTTP, then
 * the domain (log, stream, webhooks, events, auth), then storage (db). This test reads every import in src/ (type
 * imports too: they are dependencies of the design as much as of the build) and fails when one goes the wrong way.
 */

const SRC = new URL("../../src/", import.meta.url).pathname;

interface Import {
  from: string;
  /** A path under src/ (without extension), or the package name. */
  to: string;
  typeOnly: boolean;
}

function sources(directory: string): string[] {
  return readdirSync(directory).flatMap((name) => {
    const path = join(directory, name);
    if (statSync(path).isDirectory()) return sources(path);
    return path.endsWith(".ts") ? [path] : [];
  });
}

const IMPORT = /^(?:import|export)\s+(type\s+)?(?:[^;]*?\s+from\s+)?"([^"]+)"/gms;

function importsOf(file: string): Import[] {
  const from = relative(SRC, file).replace(/\.ts$/, "");
  return [...readFileSync(file, "utf8").matchAll(IMPORT)].map(([, typeOnly, specifier]) => ({
    from,
    to: specifier!.startsWith(".")
      ? relative(SRC, resolve(dirname(file), specifier!)).replace(/\.js$/, "")
      : specifier!,
    typeOnly: typeOnly !== undefined,
  }));
}

const ALL = sources(SRC).flatMap(importsOf);
const under = (path: string, ...folders: string[]) =>
  folders.some((folder) => path === folder || path.startsWith(`${folder}/`));
const shown = (found: Import[]) => found.map((edge) => `${edge.from} -> ${edge.to}`);

describe("the layers of src/", () => {
  it("reads the imports it judges", () => {
    assert.ok(ALL.length > 100, `${ALL.length} imports`);
    assert.ok(ALL.some((edge) => edge.from === "db/notify" && edge.to === "db/database"));
  });

  it("keeps storage below the domain: src/db imports no domain, HTTP, configuration or CLI module", () => {
    const wrong = ALL.filter(
      (edge) =>
        under(edge.from, "db") &&
        under(edge.to, "log", "stream", "webhooks", "events", "auth", "http", "cli", "config", "service"),
    );
    assert.deepEqual(shown(wrong), []);
  });

  it("lets HTTP reach storage only through the domain: no query family of src/db, types apart", () => {
    const wrong = ALL.filter(
      (edge) =>
        under(edge.from, "http") &&
        !edge.typeOnly &&
        under(edge.to, "db") &&
        !["db/database", "db/failures"].includes(edge.to),
    );
    assert.deepEqual(shown(wrong), []);
  });

  it("hands HTTP no storage: the Services it is given carry domain objects only", () => {
    const context = readFileSync(join(SRC, "http/context.ts"), "utf8");
    assert.doesNotMatch(context, /\bStorage\b/);
    assert.doesNotMatch(context, /from "\.\.\/db\/database\.js"/);
  });

  it("keeps Koa and the HTTP layer out of everything below it", () => {
    const wrong = ALL.filter(
      (edge) =>
        !under(edge.from, "http", "cli", "service") &&
        (under(edge.to, "http") || edge.to === "koa" || edge.to.startsWith("@koa/")),
    );
    assert.deepEqual(shown(wrong), []);
  });

  it("puts configuration on top: nothing but the CLI and service.ts imports config.ts", () => {
    const wrong = ALL.filter((edge) => edge.to === "config" && !under(edge.from, "cli", "service"));
    assert.deepEqual(shown(wrong), []);
  });

  it("keeps the SDK apart: src/client imports nothing of the server", () => {
    const wrong = ALL.filter(
      (edge) => under(edge.from, "client") && existsUnderSrc(edge.to) && !under(edge.to, "client"),
    );
    assert.deepEqual(shown(wrong), []);
  });

  it("keeps SQL and table names in src/db: no other module queries a table", () => {
    const TABLE_QUERY = /\b(?:trx|db|writer|reader)\("[a-z_]+"\)|\.raw\(/;
    const wrong = sources(SRC)
      .filter((file) => !under(relative(SRC, file), "db"))
      .filter((file) => TABLE_QUERY.test(readFileSync(file, "utf8")))
      .map((file) => relative(SRC, file));
    assert.deepEqual(wrong, []);
  });

  it("lets the seintje command start light: before serve, migrate or backup runs, it loads no storage, HTTP or tracing SDK", () => {
    // Those commands import the service and the storage when they run (cli/service-commands.ts); loaded at
    // start, they made every other command and help take 0.65 s instead of 0.15 s.
    const loaded = new Set<string>(["cli/main"]);
    for (const module of loaded) {
      for (const edge of ALL) if (edge.from === module && !edge.typeOnly) loaded.add(edge.to);
    }
    const heavy = [...loaded].filter(
      (module) =>
        under(module, "db", "http", "service", "knex", "pg", "better-sqlite3", "koa") ||
        /^@opentelemetry\/(?:sdk|exporter)/.test(module),
    );
    assert.ok(loaded.has("config") && loaded.has("client/client"), [...loaded].join(", "));
    assert.deepEqual(heavy, []);
  });

  it("has no import cycles", () => {
    const graph = new Map<string, string[]>();
    for (const edge of ALL) {
      if (edge.typeOnly || !existsUnderSrc(edge.to)) continue;
      graph.set(edge.from, [...(graph.get(edge.from) ?? []), edge.to]);
    }
    const cycles: string[] = [];
    const state = new Map<string, "open" | "done">();
    const path: string[] = [];
    const visit = (node: string) => {
      state.set(node, "open");
      path.push(node);
      for (const next of graph.get(node) ?? []) {
        if (state.get(next) === "open") cycles.push([...path.slice(path.indexOf(next)), next].join(" -> "));
        else if (!state.has(next)) visit(next);
      }
      path.pop();
      state.set(node, "done");
    };
    for (const node of graph.keys()) if (!state.has(node)) visit(node);
    assert.deepEqual(cycles, []);
  });
});

function topLevelFolders(): string[] {
  return readdirSync(SRC).map((name) => name.replace(/\.ts$/, ""));
}

function existsUnderSrc(path: string): boolean {
  return !path.startsWith("..") && topLevelFolders().includes(path.split("/")[0]!);
}
