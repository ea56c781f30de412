import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Ajv2020 } from "ajv/dist/2020.js";
import { checkSchema, compileSchema, mismatches } from "../../src/events/schema.js";

describe("schemas of event data", () => {
  it("find duplicate items as ajv's own uniqueItems does, in one pass", () => {
    const schema = { type: "array", uniqueItems: true };
    const ours = compileSchema(schema);
    const reference = new Ajv2020({ strict: false }).compile(schema);
    const arrays: unknown[][] = [
      [],
      [1, 2, 3],
      [1, 2, 1],
      [1, "1"],
      [true, 1],
      [null, null],
      [0, 0.5, 1.0, 1],
      [
        { x: 1, y: 2 },
        { y: 2, x: 1 },
      ],
      [{ x: 1 }, { x: 1, y: null }],
      [{ a: [] }, { a: {} }],
      [
        [1, [2]],
        [1, [2]],
      ],
      [
        [1, 2],
        [2, 1],
      ],
      ["a", "b", "c", "a"],
    ];
    for (const items of arrays) {
      assert.equal(ours(items), reference(items), JSON.stringify(items));
    }
    assert.deepEqual(mismatches(ours, ["a", "b", "a"], "/data/tags"), [
      {
        pointer: "/data/tags",
        detail: "must NOT have duplicate items (items ## 0 and 2 are identical) (schema #/uniqueItems)",
      },
    ]);
    assert.deepEqual(mismatches(compileSchema({ uniqueItems: false }), [1, 1], ""), []);
    const any = compileSchema({ uniqueItems: true });
    assert.deepEqual(mismatches(any, "not an array", ""), [], "uniqueItems says nothing of other values");
    assert.deepEqual(mismatches(any, { a: 1, b: 1 }, ""), []);
  });

  it("match patterns as RE2 does, refusing what RE2 cannot run when the schema is declared", () => {
    const postcode = compileSchema({ type: "string", pattern: "^[1-9][0-9]{3} ?[A-Z]{2}$" });
    assert.deepEqual(mismatches(postcode, "2628 CD", ""), []);
    assert.equal(mismatches(postcode, "0628 CD", "").length, 1);
    const letters = compileSchema({ type: "string", pattern: "^\\p{L}+$" });
    assert.deepEqual(mismatches(letters, "Delft", ""), []);
    assert.deepEqual(mismatches(letters, "Fryslân", ""), []);
    assert.equal(mismatches(letters, "4711", "").length, 1);
    const keys = compileSchema({ type: "object", patternProperties: { "^x-": { type: "number" } } });
    assert.deepEqual(
      mismatches(keys, { "x-a": "1", y: "2" }, "/data").map((error) => error.pointer),
      ["/data/x-a"],
    );
    for (const pattern of ["^(?=a)a$", "(?<!a)b", "(a)\\1"]) {
      const refused = checkSchema({ type: "string", pattern }, "/schema");
      assert.equal(refused.length, 1, pattern);
      assert.equal(refused[0]!.pointer, "/schema");
      assert.match(refused[0]!.detail, /does not compile/);
    }
  });
});
