import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parsePublishRequest } from "../../src/events/encoding.js";

/** The digest of an event's content decides whether a publish is a repeat; stored digests must stay comparable. */

const digestOf = (event: unknown) =>
  parsePublishRequest({
    contentType: "application/cloudevents+json",
    headers: {},
    body: Buffer.from(JSON.stringify(event)),
  }).events[0]!.digest;

const EVENT = {
  specversion: "1.0",
  id: "g-1",
  source: "urn:nld:oin:1:systeem:x",
  type: "nl.example.golden",
  subject: "s",
  time: "2026-11-29T12:00:00Z",
  datacontenttype: "application/json",
  data: { b: [1, "two", { z: null, a: true }], a: 1.5, é: "ü", "10": "x", "2": "y" },
  ext: "v",
};

describe("the content digest", () => {
  it("is the same as it has always been, so events stored by earlier versions are still recognised", () => {
    // Computed by the first release's canonical JSON; a change here makes every stored event a conflict.
    assert.equal(digestOf(EVENT), "c9ee3c0f663e14974e2f86c5bcdb0480c55a5fb4a0eaedbec58895c0807c36b2");
  });

  it("does not depend on key order, and does depend on content", () => {
    const { data, ext, ...attributes } = EVENT;
    const reordered = {
      ext,
      data: { a: data.a, "2": "y", "10": "x", é: "ü", b: [1, "two", { a: true, z: null }] },
      ...attributes,
    };
    assert.notEqual(JSON.stringify(reordered), JSON.stringify(EVENT), "another text");
    assert.equal(digestOf(reordered), digestOf(EVENT));
    assert.notEqual(digestOf({ ...EVENT, data: { ...EVENT.data, a: 1.25 } }), digestOf(EVENT));
    assert.notEqual(
      digestOf({ ...EVENT, data: { ...EVENT.data, b: [1, { z: null, a: true }, "two"] } }),
      digestOf(EVENT),
    );
  });
});
