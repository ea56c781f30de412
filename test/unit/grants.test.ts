import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { allows, parseScope } from "../../src/auth/grants.js";

describe("grants", () => {
  it("reads actions with and without feed globs, ignoring other scopes", () => {
    const grants = parseScope("openid read:zaken publish:brk-* subscribe bogus:x read:UPPER");
    assert.deepEqual(
      grants.map((grant) => grant.text),
      ["read:zaken", "publish:brk-*", "subscribe"],
    );
    assert.deepEqual(parseScope(undefined), []);
    assert.deepEqual(parseScope(["read"]), []);
  });

  it("matches globs against whole feed names", () => {
    const grants = parseScope("read:brk-*");
    assert.ok(allows(grants, "read", "brk-a"));
    assert.ok(allows(grants, "read", "brk-"));
    assert.ok(!allows(grants, "read", "zaken"));
    assert.ok(!allows(grants, "read", "xbrk-a"));
    assert.ok(!allows(parseScope("read:brk.a"), "read", "brkxa"), "a dot is a dot, not any character");
    assert.ok(allows(parseScope("read:*-test"), "read", "zaken-test"));
    assert.ok(allows(parseScope("read:a*b*c"), "read", "a-1b2c"));
  });

  it("keeps actions apart, with admin implying the rest", () => {
    const grants = parseScope("publish:zaken");
    assert.ok(allows(grants, "publish", "zaken"));
    assert.ok(!allows(grants, "read", "zaken"));
    assert.ok(!allows(grants, "admin", "zaken"));
    for (const action of ["read", "publish", "subscribe", "admin"] as const) {
      assert.ok(allows(parseScope("admin"), action, "anything"), action);
      assert.ok(allows(parseScope("admin:brk-*"), action, "brk-1"), action);
      assert.ok(!allows(parseScope("admin:brk-*"), action, "zaken"), action);
    }
  });

  it("answers for some feed when no feed is named", () => {
    assert.ok(allows(parseScope("read:brk-*"), "read"));
    assert.ok(!allows(parseScope("publish:brk-*"), "read"));
  });
});
