import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { Parser } from "@asyncapi/parser";
import { call, cloudEvent, publish, publishBatch, putFeed, readPage, useToken } from "../support/http.js";
import { type ServerProcess, startServerProcess } from "../support/process.js";
import { startTestService, type TestService, tempDir, tokenFor } from "../support/service.js";

/**
 * Event types (version 1.1): the catalogue, its schemas enforced at publish in every mode, the type policy,
 * deprecation, the counts, and the AsyncAPI documents checked with the official parser.
 */

const PERCEEL = {
  type: "object",
  required: ["perceel"],
  properties: {
    perceel: {
      type: "object",
      required: ["nummer"],
      properties: { nummer: { type: "integer", minimum: 1 }, gemeente: { type: "string" } },
    },
  },
};

const TYPE = "nl.kadaster.brk.perceel-overgedragen";

describe("event types", () => {
  let svc: TestService;
  before(async () => {
    svc = await startTestService();
  });
  after(() => svc.stop());

  const declare = (feed: string, type: string, body: unknown, headers: Record<string, string> = {}) =>
    call(`${svc.url}/v1/feeds/${feed}/types/${type}`, {
      method: "PUT",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(body),
    });
  const getType = (feed: string, type: string) => call(`${svc.url}/v1/feeds/${feed}/types/${type}`);
  const listTypes = async (feed: string) => (await call(`${svc.url}/v1/feeds/${feed}/types`)).body.types;
  const headOf = async (feed: string) => (await call(`${svc.url}/v1/feeds/${feed}`)).body.head;

  it("declares a type with 201, replaces it with 200, shows, lists and removes it", async () => {
    await putFeed(svc.url, "catalogue");
    const created = await declare("catalogue", TYPE, {
      description: "Een perceel is overgedragen",
      schema: PERCEEL,
      example: { perceel: { nummer: 4711 } },
    });
    assert.equal(created.status, 201, created.text);
    assert.equal(created.headers.get("location"), `${svc.url}/v1/feeds/catalogue/types/${TYPE}`);
    assert.deepEqual(
      { ...created.body, createdAt: undefined, updatedAt: undefined },
      {
        type: TYPE,
        declared: true,
        description: "Een perceel is overgedragen",
        schema: PERCEEL,
        example: { perceel: { nummer: 4711 } },
        deprecated: false,
        count: 0,
        lastPublished: null,
        createdAt: undefined,
        updatedAt: undefined,
      },
    );
    assert.equal(created.body.createdAt, created.body.updatedAt);

    const replaced = await declare("catalogue", TYPE, { deprecated: true });
    assert.equal(replaced.status, 200);
    assert.equal(replaced.body.description, null, "an absent member means none");
    assert.equal(replaced.body.schema, null);
    assert.equal(replaced.body.deprecated, true);
    assert.equal(replaced.body.createdAt, created.body.createdAt);

    assert.deepEqual((await getType("catalogue", TYPE)).body, replaced.body);
    assert.deepEqual(await listTypes("catalogue"), [replaced.body]);

    const removed = await call(`${svc.url}/v1/feeds/catalogue/types/${TYPE}`, { method: "DELETE" });
    assert.equal(removed.status, 204);
    assert.equal((await getType("catalogue", TYPE)).status, 404);
    const again = await call(`${svc.url}/v1/feeds/catalogue/types/${TYPE}`, { method: "DELETE" });
    assert.equal(again.status, 404);
    assert.equal(again.body.type, "urn:seintje:problem:event-type-not-found");
  });

  it("refuses a type that is not reverse-DNS, an unknown feed, and tokens without the grant", async () => {
    await putFeed(svc.url, "guarded");
    for (const name of ["perceel", "Nl.x", `nl.${"a".repeat(260)}`]) {
      const reply = await declare("guarded", name, {});
      assert.equal(reply.status, 400, name);
      assert.equal(reply.body.type, "urn:seintje:problem:invalid-type-name");
      assert.equal((await getType("guarded", name)).status, 400);
    }
    assert.equal((await declare("no-such-feed", TYPE, {})).status, 404);
    assert.equal((await call(`${svc.url}/v1/feeds/no-such-feed/types`)).status, 404);

    const reader = { authorization: `Bearer ${await tokenFor(svc.dir, "read:guarded")}` };
    assert.equal((await declare("guarded", TYPE, {}, reader)).status, 403);
    const removal = await call(`${svc.url}/v1/feeds/guarded/types/${TYPE}`, {
      method: "DELETE",
      headers: reader,
    });
    assert.equal(removal.status, 403);
    const list = await call(`${svc.url}/v1/feeds/guarded/types`, { headers: reader });
    assert.equal(list.status, 200);
    const other = { authorization: `Bearer ${await tokenFor(svc.dir, "read:other")}` };
    assert.equal((await call(`${svc.url}/v1/feeds/guarded/types`, { headers: other })).status, 403);
    assert.equal(
      (await call(`${svc.url}/v1/feeds/guarded/types`, { headers: { authorization: "" } })).status,
      401,
    );
  });

  it("refuses, with pointers under /schema and /example, a schema that does not compile or an example that does not match", async () => {
    await putFeed(svc.url, "schemas");
    const refused = async (body: unknown) => {
      const reply = await declare("schemas", TYPE, body);
      assert.equal(reply.status, 400, reply.text);
      assert.equal(reply.headers.get("content-type"), "application/problem+json");
      return reply.body.errors.map((error: { pointer: string }) => error.pointer);
    };
    assert.ok((await refused({ schema: { type: "objec" } })).includes("/schema/type"));
    assert.ok(
      (await refused({ schema: { properties: { a: { minimum: "1" } } } })).includes(
        "/schema/properties/a/minimum",
      ),
    );
    assert.deepEqual(await refused({ schema: "object" }), ["/schema"]);
    assert.deepEqual(await refused({ schema: { $ref: "https://example.com/remote.json" } }), ["/schema"]);
    assert.deepEqual(await refused({ schema: { $ref: "#/$defs/missing" } }), ["/schema"]);
    assert.deepEqual(await refused({ schema: { type: "string", pattern: "(" } }), ["/schema"]);
    // Patterns run on RE2, which matches in linear time and has no lookahead or backreferences.
    assert.deepEqual(await refused({ schema: { type: "string", pattern: "^(?=a)a$" } }), ["/schema"]);
    assert.deepEqual(await refused({ schema: { type: "string", pattern: "(a)\\1" } }), ["/schema"]);
    assert.deepEqual(
      await refused({ schema: { properties: { bsn: { type: "string", format: "bsn" } } } }),
      ["/schema/properties/bsn"],
      "a format nobody checks would be a rule that is not enforced",
    );
    assert.deepEqual(
      await refused({ schema: { $schema: "http://json-schema.org/draft-04/schema#", type: "object" } }),
      ["/schema/$schema"],
    );
    assert.deepEqual(await refused({ schema: PERCEEL, example: { perceel: { nummer: 0 } } }), [
      "/example/perceel/nummer",
    ]);
    assert.deepEqual(await refused({ schema: PERCEEL, example: { perceel: {} } }), [
      "/example/perceel/nummer",
    ]);
    assert.deepEqual(await refused({ deprecated: "yes", extra: 1 }), ["/extra", "/deprecated"]);
    assert.equal((await getType("schemas", TYPE)).status, 404, "a refused declaration stores nothing");

    const accepted = await declare("schemas", TYPE, {
      schema: {
        $schema: "https://json-schema.org/draft/2020-12/schema",
        $defs: { nummer: { type: "integer" } },
        properties: { n: { $ref: "#/$defs/nummer" }, at: { type: "string", format: "date-time" } },
      },
    });
    assert.equal(accepted.status, 201, accepted.text);
  });

  describe("publishing against a schema", () => {
    before(async () => {
      await putFeed(svc.url, "enforced");
      assert.equal((await declare("enforced", TYPE, { schema: PERCEEL })).status, 201);
    });

    const event = (data: unknown, overrides: Record<string, unknown> = {}) =>
      cloudEvent({ type: TYPE, data, ...overrides });

    it("accepts matching data and refuses other data in structured mode, pointing into the data", async () => {
      assert.equal((await publish(svc.url, "enforced", event({ perceel: { nummer: 1 } }))).status, 201);
      const head = await headOf("enforced");
      const missing = await publish(svc.url, "enforced", event({ perceel: { gemeente: "Delft" } }));
      assert.equal(missing.status, 400, missing.text);
      assert.equal(missing.body.type, "urn:seintje:problem:validation");
      assert.deepEqual(
        missing.body.errors.map((error: { pointer: string }) => error.pointer),
        ["/data/perceel/nummer"],
      );
      const wrong = await publish(svc.url, "enforced", event({ perceel: { nummer: "4711" } }));
      assert.deepEqual(
        wrong.body.errors.map((error: { pointer: string }) => error.pointer),
        ["/data/perceel/nummer"],
      );
      const absent = await publish(svc.url, "enforced", event(undefined));
      assert.equal(absent.status, 400, "absent data is null, which is not an object");
      assert.deepEqual(absent.body.errors[0].pointer, "/data");
      const base64 = await publish(svc.url, "enforced", event(undefined, { data_base64: "AAEC" }));
      assert.deepEqual(base64.body.errors[0].pointer, "/data_base64");
      assert.equal(await headOf("enforced"), head, "nothing of a refused request is stored");
    });

    it("checks data in binary mode, with the same pointers", async () => {
      const binary = (body: string, contentType: string) =>
        call(`${svc.url}/v1/feeds/enforced/events`, {
          method: "POST",
          headers: {
            "content-type": contentType,
            "ce-specversion": "1.0",
            "ce-id": `binary-${Math.random()}`,
            "ce-source": "urn:nld:test",
            "ce-type": TYPE,
          },
          body,
        });
      assert.equal((await binary('{"perceel":{"nummer":2}}', "application/json")).status, 201);
      const refused = await binary('{"perceel":{"nummer":-2}}', "application/json");
      assert.equal(refused.status, 400);
      assert.deepEqual(
        refused.body.errors.map((error: { pointer: string }) => error.pointer),
        ["/data/perceel/nummer"],
      );
      const xml = await binary("<perceel/>", "application/xml");
      assert.equal(xml.status, 400);
      assert.deepEqual(xml.body.errors[0].pointer, "/datacontenttype");
    });

    it("refuses a whole batch when one event does not match, pointing at its index", async () => {
      const head = await headOf("enforced");
      const batch = [
        event({ perceel: { nummer: 1 } }),
        cloudEvent({ type: "nl.example.other" }),
        event({ perceel: { nummer: 2 } }),
        event({ perceel: {} }),
      ];
      const reply = await publishBatch(svc.url, "enforced", batch);
      assert.equal(reply.status, 400, reply.text);
      assert.deepEqual(
        reply.body.errors.map((error: { pointer: string }) => error.pointer),
        ["/3/data/perceel/nummer"],
      );
      assert.equal(await headOf("enforced"), head, "all or none");
      batch[3] = event({ perceel: { nummer: 3 } });
      assert.equal((await publishBatch(svc.url, "enforced", batch)).status, 201);
      assert.equal(Number(await headOf("enforced")), Number(head) + 4);
    });

    it("applies a changed schema to the next publish, and answers a repeat of an event stored before", async () => {
      await putFeed(svc.url, "changing");
      const first = event({ perceel: { nummer: 5 } });
      assert.equal((await publish(svc.url, "changing", first)).status, 201, "no schema yet");
      const strict = {
        ...PERCEEL,
        properties: { perceel: { ...PERCEEL.properties.perceel, required: ["nummer", "gemeente"] } },
      };
      assert.equal((await declare("changing", TYPE, { schema: strict })).status, 201);
      const next = await publish(svc.url, "changing", event({ perceel: { nummer: 6 } }));
      assert.equal(next.status, 400);
      assert.deepEqual(next.body.errors[0].pointer, "/data/perceel/gemeente");
      const repeat = await publish(svc.url, "changing", first);
      assert.equal(repeat.status, 200, "a repeat is answered with its sequence: it is stored already");
      assert.equal(repeat.body.events[0].sequence, "1");
      assert.equal((await declare("changing", TYPE, { schema: PERCEEL })).status, 200);
      assert.equal((await publish(svc.url, "changing", event({ perceel: { nummer: 6 } }))).status, 201);
      assert.equal(
        (await call(`${svc.url}/v1/feeds/changing/types/${TYPE}`, { method: "DELETE" })).status,
        204,
      );
      assert.equal(
        (await publish(svc.url, "changing", event("any data"))).status,
        201,
        "the declaration is gone",
      );
    });
  });

  it("takes only declared types on a feed whose typePolicy is declared", async () => {
    const created = await putFeed(svc.url, "strict", { typePolicy: "declared" });
    assert.equal(created.body.typePolicy, "declared");
    assert.equal((await putFeed(svc.url, "strict-bad", { typePolicy: "closed" })).status, 400);
    const undeclared = await publish(svc.url, "strict", cloudEvent({ type: "nl.example.undeclared" }));
    assert.equal(undeclared.status, 400);
    assert.deepEqual(undeclared.body.errors, [
      { pointer: "/type", detail: "is not a declared type of this feed, whose typePolicy is declared" },
    ]);
    assert.equal((await declare("strict", "nl.example.declared", {})).status, 201);
    const batch = await publishBatch(svc.url, "strict", [
      cloudEvent({ type: "nl.example.declared", data: "anything: the type has no schema" }),
      cloudEvent({ type: "nl.example.undeclared" }),
    ]);
    assert.deepEqual(
      batch.body.errors.map((error: { pointer: string }) => error.pointer),
      ["/1/type"],
    );
    assert.equal(await headOf("strict"), "0");
    assert.equal((await publish(svc.url, "strict", cloudEvent({ type: "nl.example.declared" }))).status, 201);

    const opened = await putFeed(svc.url, "strict", {});
    assert.equal(opened.body.typePolicy, "open", "absent means open");
    assert.equal(
      (await publish(svc.url, "strict", cloudEvent({ type: "nl.example.undeclared" }))).status,
      201,
    );
  });

  it("accepts an event of a deprecated type with a warning at its type", async () => {
    await putFeed(svc.url, "old-types");
    await declare("old-types", "nl.example.old", { deprecated: true, description: "use nl.example.new" });
    const single = await publish(svc.url, "old-types", cloudEvent({ type: "nl.example.old" }));
    assert.equal(single.status, 201);
    assert.deepEqual(single.body.warnings, [
      { pointer: "/type", detail: "is a deprecated type of this feed" },
    ]);
    const batch = await publishBatch(svc.url, "old-types", [
      cloudEvent({ type: "nl.example.new" }),
      cloudEvent({ type: "nl.example.old" }),
    ]);
    assert.equal(batch.status, 201);
    assert.deepEqual(batch.body.warnings, [
      { pointer: "/1/type", detail: "is a deprecated type of this feed" },
    ]);
  });

  it("lists declared types and types seen, with counts and the newest's time, kept by retention too", async () => {
    await putFeed(svc.url, "counted", { retention: { maxEvents: 3 } });
    await declare("counted", "nl.example.declared", { description: "declared, never published" });
    const before = Date.now();
    await publishBatch(svc.url, "counted", [
      cloudEvent({ type: "nl.example.a" }),
      cloudEvent({ type: "nl.example.a" }),
      cloudEvent({ type: "nl.example.b" }),
    ]);
    let types = await listTypes("counted");
    assert.deepEqual(
      types.map((entry: { type: string; declared: boolean; count: number }) => [
        entry.type,
        entry.declared,
        entry.count,
      ]),
      [
        ["nl.example.a", false, 2],
        ["nl.example.b", false, 1],
        ["nl.example.declared", true, 0],
      ],
    );
    const seen = types[0];
    assert.deepEqual(
      { ...seen, lastPublished: undefined },
      {
        type: "nl.example.a",
        declared: false,
        description: null,
        schema: null,
        example: null,
        deprecated: null,
        count: 2,
        lastPublished: undefined,
        createdAt: null,
        updatedAt: null,
      },
    );
    assert.ok(Date.parse(seen.lastPublished) >= before - 1000, seen.lastPublished);
    assert.equal(types[2].lastPublished, null);
    assert.deepEqual((await getType("counted", "nl.example.a")).body, seen, "a type seen is found alone too");

    // Three more events of b: retention keeps the newest three, so every a goes and the feed holds three b.
    await publishBatch(
      svc.url,
      "counted",
      [1, 2, 3].map(() => cloudEvent({ type: "nl.example.b" })),
    );
    assert.equal(await svc.service.retention.pass(), 3);
    types = await listTypes("counted");
    assert.deepEqual(
      types.map((entry: { type: string; count: number }) => [entry.type, entry.count]),
      [
        ["nl.example.b", 3],
        ["nl.example.declared", 0],
      ],
    );
    assert.equal((await getType("counted", "nl.example.a")).status, 404, "no longer declared nor held");
    const page = await readPage(svc.url, "counted");
    assert.equal(page.body.events.length, 3);
  });

  it("forgets a deleted feed's types: a feed created again under its name starts without them", async () => {
    await putFeed(svc.url, "recreated", { typePolicy: "declared" });
    await declare("recreated", TYPE, { schema: PERCEEL });
    await publish(svc.url, "recreated", cloudEvent({ type: TYPE, data: { perceel: { nummer: 1 } } }));
    assert.equal((await call(`${svc.url}/v1/feeds/recreated`, { method: "DELETE" })).status, 204);
    await putFeed(svc.url, "recreated");
    assert.deepEqual(await listTypes("recreated"), []);
    assert.equal((await publish(svc.url, "recreated", cloudEvent({ type: TYPE, data: 1 }))).status, 201);
  });

  describe("AsyncAPI", () => {
    const parser = new Parser();

    async function parse(document: unknown) {
      const { document: parsed, diagnostics } = await parser.parse(JSON.stringify(document));
      // Severity 0 is an error, 1 a warning; the parser only informs (2) that AsyncAPI 3.1 exists.
      const problems = diagnostics.filter((diagnostic) => diagnostic.severity <= 1);
      assert.deepEqual(
        problems.map(
          (diagnostic) => `${diagnostic.code}: ${diagnostic.message} at ${diagnostic.path.join("/")}`,
        ),
        [],
      );
      assert.ok(parsed, "the parser made a document of it");
      return parsed;
    }

    it("serves a generic document without a token, to any origin, that the AsyncAPI parser accepts", async () => {
      const reply = await fetch(`${svc.url}/v1/asyncapi.json`, {
        headers: { origin: "https://elsewhere.example" },
      });
      assert.equal(reply.status, 200);
      assert.equal(reply.headers.get("access-control-allow-origin"), "*");
      const document = (await reply.json()) as { asyncapi: string };
      assert.equal(document.asyncapi, "3.0.0");
      const parsed = await parse(document);
      assert.deepEqual(
        parsed
          .operations()
          .all()
          .map((operation) => operation.id())
          .sort(),
        ["pullEvents", "sendPing", "streamEvents"],
      );
      assert.equal(parsed.channels().get("feedEvents")?.address(), "/feeds/{feed}/events");
    });

    it("serves a feed's document, to readers of the feed, with a message per declared type carrying its schema", async () => {
      await putFeed(svc.url, "described", { typePolicy: "declared", description: "BRK-mutaties" });
      const schema = {
        $schema: "https://json-schema.org/draft/2020-12/schema",
        $defs: { nummer: { type: "integer" } },
        type: "object",
        properties: { perceel: { type: "object", properties: { nummer: { $ref: "#/$defs/nummer" } } } },
      };
      await declare("described", TYPE, {
        schema,
        example: { perceel: { nummer: 1 } },
        description: "Overdracht",
      });
      await declare("described", "nl.kadaster.brk.oud", { deprecated: true });

      const anonymous = await fetch(`${svc.url}/v1/feeds/described/asyncapi.json`);
      assert.equal(anonymous.status, 401);
      const other = { authorization: `Bearer ${await tokenFor(svc.dir, "read:other")}` };
      assert.equal(
        (await call(`${svc.url}/v1/feeds/described/asyncapi.json`, { headers: other })).status,
        403,
      );
      const reader = { authorization: `Bearer ${await tokenFor(svc.dir, "read:described")}` };
      const reply = await call(`${svc.url}/v1/feeds/described/asyncapi.json`, { headers: reader });
      assert.equal(reply.status, 200);
      const parsed = await parse(reply.body);
      assert.equal(parsed.info().description(), "BRK-mutaties");
      assert.equal(parsed.channels().get("feedEvents")?.address(), "/feeds/described/events");

      const messages = parsed.channels().get("feedEvents")!.messages();
      assert.deepEqual(
        messages
          .all()
          .map((message) => message.id())
          .sort(),
        [TYPE, "nl.kadaster.brk.oud", "page"].sort(),
        "a declared feed has no message for other types",
      );
      const message = messages.get(TYPE)!;
      assert.equal(message.summary(), "Overdracht");
      const payload = message.payload()!.json() as { allOf: Array<{ properties?: Record<string, unknown> }> };
      const data = payload.allOf[1]!.properties!.data as Record<string, unknown>;
      // The parser marks each schema it read with an x-parser-schema-id of its own.
      const plain = JSON.parse(
        JSON.stringify(data.properties, (key, value) => (key === "x-parser-schema-id" ? undefined : value)),
      );
      assert.deepEqual(plain, { perceel: { type: "object", properties: { nummer: { type: "integer" } } } });
      const example = message.examples().all()[0]!.payload() as { data: { perceel: { nummer: number } } };
      assert.equal(example.data.perceel.nummer, 1);

      await putFeed(svc.url, "described", {});
      const open = await parse((await call(`${svc.url}/v1/feeds/described/asyncapi.json`)).body);
      assert.ok(
        open.channels().get("feedEvents")!.messages().get("event"),
        "an open feed takes other types too",
      );
    });
  });
});

describe("a schema's pattern against data made to make it backtrack", () => {
  // The service runs in a process of its own: on a backtracking engine it would stop answering altogether (each
  // further "a" doubles the time; 28 took 8 s, these 64 would take ages), and this test says so after 10 s instead
  // of stopping with it.
  const dir = tempDir("seintje-pattern-");
  let server: ServerProcess;
  before(async () => {
    server = await startServerProcess({ SEINTJE_DATA_DIR: dir });
    useToken(server.url, await tokenFor(dir, "admin"));
  });
  after(async () => {
    useToken(server.url, undefined);
    // SIGKILL: a service whose event loop were held could not act on SIGTERM.
    server.child.kill("SIGKILL");
    await server.exited;
    rmSync(dir, { recursive: true, force: true });
  });

  it("is answered at once: patterns run on RE2", async () => {
    const type = "nl.example.genest";
    await putFeed(server.url, "patterns");
    const declared = await call(`${server.url}/v1/feeds/patterns/types/${type}`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        schema: { type: "object", properties: { s: { type: "string", pattern: "^(a+)+$" } } },
      }),
    });
    assert.equal(declared.status, 201, declared.text);
    const send = (s: string) =>
      call(`${server.url}/v1/feeds/patterns/events`, {
        method: "POST",
        headers: { "content-type": "application/cloudevents+json" },
        body: JSON.stringify(cloudEvent({ type, data: { s } })),
        signal: AbortSignal.timeout(10_000),
      });
    // On a backtracking engine this request does not end within its 10 s, and the test fails there.
    const refused = await send(`${"a".repeat(64)}!`);
    assert.equal(refused.status, 400, refused.text);
    assert.deepEqual(
      refused.body.errors.map((error: { pointer: string }) => error.pointer),
      ["/data/s"],
    );
    assert.equal((await send("a".repeat(64))).status, 201);
  });
});
