import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { OPTIONS } from "../../src/config.js";

describe("the configuration table in docs/OPERATIONS.md", () => {
  it("lists exactly the options the code reads, with their defaults and meanings", () => {
    const operations = readFileSync(new URL("../../docs/OPERATIONS.md", import.meta.url), "utf8");
    const start = operations.indexOf("## Configuration");
    const section = operations.slice(start, operations.indexOf("\n## ", start + 1));
    const rows = [...section.matchAll(/^\| `([A-Z_]+)` \| (.+?) \| (.+) \|$/gm)].map((match) => [
      match[1],
      match[2]!.replace(/`/g, ""),
      match[3],
    ]);
    assert.deepEqual(
      rows,
      OPTIONS.map((option) => [option.variable, option.default, option.meaning]),
    );
  });
});
