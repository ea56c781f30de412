import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { validateEvent } from "../../src/events/validate.js";

const valid = {
  specversion: "1.0",
  id: "f3dce042-cd6e-4977-844d-05be8dce7cea",
  source: "urn:nld:oin:00000001823288444000:systeem:BRP-component",
  type: "nl.brp.persoon-verhuisd",
  time: "2021-12-10T17:31:00Z",
  datacontenttype: "application/json",
  data: { bsn: "999990342" },
};

function pointers(event: unknown, prefix = "") {
  return validateEvent(event, prefix).errors.map((error) => error.pointer);
}

describe("validateEvent", () => {
  it("accepts a complete NL GOV event without warnings", () => {
    assert.deepEqual(validateEvent(valid), { errors: [], warnings: [] });
  });

  it("requires specversion 1.0, id, source and type", () => {
    assert.deepEqual(pointers({}).sort(), ["/id", "/source", "/specversion", "/type"]);
    assert.deepEqual(pointers({ ...valid, specversion: "0.3" }), ["/specversion"]);
    assert.deepEqual(pointers({ ...valid, id: "" }), ["/id"]);
    assert.deepEqual(pointers({ ...valid, id: 7 }), ["/id"]);
  });

  it("refuses a non-object", () => {
    assert.deepEqual(pointers([valid]), [""]);
    assert.deepEqual(pointers("x", "/2"), ["/2"]);
  });

  it("prefixes pointers with the event's place in a batch", () => {
    assert.deepEqual(pointers({ ...valid, type: "Created" }, "/3"), ["/3/type"]);
  });

  it("wants type in reverse-DNS form", () => {
    for (const type of ["created", "Nl.brp.x", "nl..brp", "nl.brp.", "nl brp.x", ".nl.brp"]) {
      assert.deepEqual(pointers({ ...valid, type }), ["/type"], type);
    }
    for (const type of [
      "com.github.pull_request.opened",
      "nl.brp.verhuizing.binnengemeentelijk",
      "com.example.object.deleted.v2",
    ]) {
      assert.deepEqual(pointers({ ...valid, type }), [], type);
    }
  });

  it("checks time as RFC 3339", () => {
    for (const time of [
      "2021-12-10",
      "2021-12-10 17:31:00Z",
      "2021-13-10T17:31:00Z",
      "2021-02-30T00:00:00Z",
      "2021-12-10T24:00:00Z",
      "yesterday",
    ]) {
      assert.deepEqual(pointers({ ...valid, time }), ["/time"], time);
    }
    for (const time of [
      "2021-12-10T17:31:00.123456Z",
      "2021-12-10t17:31:00+01:00",
      "2024-02-29T00:00:00-05:30",
    ]) {
      assert.deepEqual(pointers({ ...valid, time }), [], time);
    }
  });

  it("checks source as a URI-reference and dataref and dataschema as URIs", () => {
    assert.deepEqual(pointers({ ...valid, source: "has space" }), ["/source"]);
    assert.deepEqual(pointers({ ...valid, source: "/relative/ok" }), []);
    assert.deepEqual(pointers({ ...valid, source: "bad%zz" }), ["/source"]);
    assert.deepEqual(pointers({ ...valid, dataref: "relative/path" }), ["/dataref"]);
    assert.deepEqual(pointers({ ...valid, dataref: "https://example.org/zaken/1" }), []);
    assert.deepEqual(pointers({ ...valid, dataschema: "schema.json" }), ["/dataschema"]);
  });

  it("refuses sequence and sequencetype: the feed assigns them", () => {
    assert.deepEqual(pointers({ ...valid, sequence: "1", sequencetype: "Integer" }), [
      "/sequence",
      "/sequencetype",
    ]);
  });

  it("checks attribute names and extension values", () => {
    assert.deepEqual(pointers({ ...valid, "nl-brp-geslacht": "V" }), ["/nl-brp-geslacht"]);
    assert.deepEqual(pointers({ ...valid, Upper: "x" }), ["/Upper"]);
    assert.deepEqual(pointers({ ...valid, "a/b": "x" }), ["/a~1b"]);
    assert.deepEqual(pointers({ ...valid, ext: { nested: true } }), ["/ext"]);
    assert.deepEqual(pointers({ ...valid, ext: 1.5 }), ["/ext"]);
    assert.deepEqual(pointers({ ...valid, ext: 2 ** 31 }), ["/ext"]);
    // The CloudEvents JSON format: null is absent, for extensions and optional context attributes alike.
    assert.deepEqual(pointers({ ...valid, ext: null, subject: null, time: null }), []);
    assert.deepEqual(
      pointers({ ...valid, id: null }),
      ["/id"],
      "a required attribute that is null is missing",
    );
    assert.deepEqual(pointers({ ...valid, ext: "line\nbreak" }), ["/ext"]);
    assert.deepEqual(pointers({ ...valid, ext: 42, flag: true, text: "ok" }), []);
  });

  it("checks data_base64 and datacontenttype", () => {
    const { data: _data, ...withoutData } = valid;
    assert.deepEqual(pointers({ ...withoutData, data_base64: "not base64!" }), ["/data_base64"]);
    assert.deepEqual(pointers({ ...valid, data_base64: "aGFsbG8=" }), ["/data_base64"]);
    assert.deepEqual(pointers({ ...valid, datacontenttype: "json" }), ["/datacontenttype"]);
    assert.deepEqual(pointers({ ...valid, datacontenttype: "application/json; charset=utf-8" }), []);
  });

  it("reports the NL GOV profile's SHOULDs as warnings, not errors", () => {
    const findings = validateEvent({
      ...valid,
      source: "https://example.org/zaken",
      datacontenttype: "text/xml",
      data: "<a/>",
      averyveryverylongattributename: "x",
    });
    assert.deepEqual(findings.errors, []);
    assert.deepEqual(findings.warnings.map((warning) => warning.pointer).sort(), [
      "/averyveryverylongattributename",
      "/datacontenttype",
      "/source",
    ]);
  });
});
