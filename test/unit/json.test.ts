import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { HttpProblem } from "../../src/errors.js";
import { decodeJson, isExact, MAX_DATA_DEPTH } from "../../src/json.js";

/** The one rule every JSON request body is decoded by. */

function refusal(bytes: Uint8Array | string, pointer = "", maxDepth?: number): HttpProblem {
  const input = typeof bytes === "string" ? Buffer.from(bytes) : bytes;
  try {
    decodeJson(input, pointer, maxDepth);
  } catch (error) {
    assert.ok(error instanceof HttpProblem, String(error));
    assert.equal(error.status, 400);
    return error;
  }
  assert.fail("the document was accepted");
}

const pointers = (problem: HttpProblem) =>
  (problem.extensions.errors as Array<{ pointer: string }>).map((error) => error.pointer);

describe("decoding JSON request bodies", () => {
  it("refuses bytes that are not UTF-8, and ignores a leading byte order mark", () => {
    const invalid = Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]);
    assert.deepEqual(pointers(refusal(invalid, "/data")), ["/data"]);
    const bom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"a":"é"}')]);
    assert.deepEqual(decodeJson(bom), { a: "é" });
  });

  it("refuses what is not JSON at the document's pointer", () => {
    assert.deepEqual(pointers(refusal("{nope", "/data")), ["/data"]);
  });

  it("takes nesting up to the limit and refuses one level more at the container that passes it", () => {
    const nested = (levels: number) => `${'{"a":'.repeat(levels)}1${"}".repeat(levels)}`;
    assert.ok(decodeJson(Buffer.from(nested(MAX_DATA_DEPTH))));
    const problem = refusal(nested(MAX_DATA_DEPTH + 1));
    assert.deepEqual(pointers(problem), ["/a".repeat(MAX_DATA_DEPTH)]);
    // Deep enough to overflow a recursive serializer: refused, not thrown as a RangeError.
    const deep = `${"[".repeat(5000)}${"]".repeat(5000)}`;
    assert.deepEqual(pointers(refusal(deep, "/3/data", 2)), ["/3/data/0/0"]);
  });

  it("refuses numbers that a double would change, pointing at each", () => {
    const problem = refusal(
      '{"ok":[1.5,-2,1e3,0.1,1.0],"big":9007199254740993,"huge":1e400,"tiny":1e-400,"neg":[-0],"k/~":-0.0}',
      "/data",
    );
    assert.deepEqual(pointers(problem), [
      "/data/big",
      "/data/huge",
      "/data/tiny",
      "/data/neg/0",
      "/data/k~1~0",
    ]);
    const [big] = problem.extensions.errors as Array<{ detail: string }>;
    assert.match(big!.detail, /9007199254740993 .* 9007199254740992/);
  });

  it("keeps strings that look like numbers or hold quotes and brackets out of the number and depth checks", () => {
    const text = '{"a":"9007199254740993 [[[[ \\" {{{{","b\\\\":"-0"}';
    assert.deepEqual(decodeJson(Buffer.from(text), "", 1), {
      a: '9007199254740993 [[[[ " {{{{',
      "b\\": "-0",
    });
  });

  it("judges a number exact when its decimal value survives, whatever its notation", () => {
    for (const token of [
      "0",
      "-1",
      "1.0",
      "1E2",
      "1e+21",
      "123456789012345",
      "0.30000000000000004",
      "5e-324",
    ]) {
      assert.equal(isExact(token), true, token);
    }
    for (const token of [
      "-0",
      "-0.0e5",
      "1e400",
      "1e-400",
      "12345678901234567890",
      "0.1234567890123456789",
    ]) {
      assert.equal(isExact(token), false, token);
    }
  });
});
