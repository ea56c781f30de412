import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { OPTIONS } from "../../src/config.js";

describe("the README's configuration table", () => {
  it("lists exactly the options the code reads, with their defaults", () => {
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
    const section = readme.slice(readme.indexOf("## Configuration"));
    const rows = [...section.matchAll(/^\| `([A-Z_]+)` \| (.+?) \|/gm)].map((match) => [
      match[1],
      match[2]!.replace(/`/g, ""),
    ]);
    assert.deepEqual(
      rows,
      OPTIONS.map((option) => [option.variable, option.default]),
    );
  });
});
