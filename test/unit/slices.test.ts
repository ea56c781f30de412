import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { powerOfTwoSlices } from "../../src/db/database.js";

describe("powerOfTwoSlices", () => {
  it("cuts items into powers of two, largest first, in order", () => {
    const items = Array.from({ length: 999 }, (_, index) => index);
    const slices = powerOfTwoSlices(items, 256);
    assert.deepEqual(
      slices.map((slice) => slice.length),
      [256, 256, 256, 128, 64, 32, 4, 2, 1],
    );
    assert.deepEqual(slices.flat(), items);
  });

  it("gives nothing for nothing and one slice for one item", () => {
    assert.deepEqual(powerOfTwoSlices([], 256), []);
    assert.deepEqual(powerOfTwoSlices(["a"], 256), [["a"]]);
    assert.deepEqual(powerOfTwoSlices([1, 2, 3, 4], 4), [[1, 2, 3, 4]]);
  });
});
