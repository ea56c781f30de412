import { readFileSync } from "node:fs";

/** The package's version: package.json is one folder up from src, two from dist/src. */
function readVersion(): string {
  for (const path of ["../package.json", "../../package.json"]) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(path, import.meta.url), "utf8")) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === "seintje" && pkg.version) return pkg.version;
    } catch {
      // not this one
    }
  }
  return "unknown";
}

export const VERSION = readVersion();
