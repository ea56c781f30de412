import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Validator } from "@seriousme/openapi-schema-validator";
import { Ajv2020 } from "ajv/dist/2020.js";
import formats from "ajv-formats";
import { createRouters } from "../../src/http/app.js";
import type { Services } from "../../src/http/context.js";
import { call, cloudEvent, type Reply } from "../support/http.js";
import { type Receiver, startReceiver } from "../support/receiver.js";
import { startTestService, type TestService, tokenFor } from "../support/service.js";

/**
 * The OpenAPI document cannot drift from the server: it validates as OpenAPI 3.1, it names exactly the routes the
 * routers register, and what the server really answers validates against its schemas.
 */

// ajv-formats is CommonJS: the default import is its module.exports, whose `default` is the plugin.
const addFormats = formats.default;

type Document = any;

/**
 * The document's key for a route: the /v1 routes are written relative to the server URL `/v1`, the operational
 * ones (/healthz, ...) name `/` as their server.
 */
const documentPath = (template: string) =>
  template.startsWith("/v1/") ? template.slice("/v1".length) : template;

/** The schema the document gives for an answer, or undefined when it gives none (204, a stream). */
function responseSchema(document: Document, method: string, template: string, status: number, type: string) {
  const operation = document.paths[documentPath(template)]?.[method.toLowerCase()];
  assert.ok(operation, `the document has ${method} ${template}`);
  let response = operation.responses[String(status)];
  assert.ok(response, `the document lists ${status} for ${method} ${template}`);
  if (response.$ref) response = document.components.responses[response.$ref.split("/").at(-1)];
  const mediaType = type.split(";")[0]!.trim();
  if (!response.content) return undefined;
  const content = response.content[mediaType];
  assert.ok(content, `the document has ${mediaType} for ${status} of ${method} ${template}`);
  return content.schema;
}

describe("the OpenAPI document", () => {
  let svc: TestService;
  let receiver: Receiver;
  let document: Document;
  let ajv: Ajv2020;

  before(async () => {
    svc = await startTestService({ SEINTJE_CALLBACK_HTTP: "true", SEINTJE_CALLBACK_ALLOW: "127.0.0.1" });
    receiver = await startReceiver();
    const reply = await fetch(`${svc.url}/v1/openapi.json`);
    assert.equal(reply.status, 200, "served without a token");
    document = await reply.json();
    ajv = new Ajv2020({ strict: false, allErrors: true, validateSchema: false });
    addFormats(ajv);
    ajv.addSchema(document, "openapi.json");
  });
  after(async () => {
    await svc.stop();
    await receiver.close();
  });

  /** Asserts that a real answer is what the document says for it. */
  function conforms(method: string, template: string, reply: Reply, expectedStatus: number) {
    assert.equal(reply.status, expectedStatus, reply.text);
    const type = reply.headers.get("content-type") ?? "";
    const schema = responseSchema(document, method, template, reply.status, type);
    if (schema === undefined) {
      assert.equal(reply.text, "", `${method} ${template} ${reply.status} has no body in the document`);
      return;
    }
    const validate = ajv.compile(schema.$ref ? { $ref: `openapi.json${schema.$ref}` } : schema);
    const body = typeof reply.body === "string" && /json/.test(type) ? JSON.parse(reply.body) : reply.body;
    assert.ok(
      validate(body),
      `${method} ${template} ${reply.status}: ${ajv.errorsText(validate.errors)}\n${reply.text.slice(0, 500)}`,
    );
  }

  it("validates as OpenAPI 3.1", async () => {
    const validator = new Validator();
    const result = await validator.validate(document);
    assert.deepEqual(result.errors, undefined);
    assert.equal(result.valid, true);
    assert.equal(validator.version, "3.1");
    assert.equal(document.info.version, (await call(`${svc.url}/healthz`)).headers.get("api-version"));
    assert.ok(document.webhooks.feedUpdated, "the ping is under webhooks");
    for (const name of ["CloudEvent", "Feed", "Subscription", "Problem", "Ping"]) {
      assert.ok(document.components.schemas[name], `a reusable ${name} schema`);
    }
  });

  it("documents API-Version on every answer, a 507 on every write, and /v1 as the server", () => {
    assert.deepEqual(document.servers, [{ url: "/v1" }]);
    for (const [path, item] of Object.entries<Record<string, any>>(document.paths)) {
      for (const method of ["get", "put", "post", "patch", "delete"]) {
        if (!item[method]) continue;
        for (const [status, entry] of Object.entries<any>(item[method].responses)) {
          const response = entry.$ref ? document.components.responses[entry.$ref.split("/").at(-1)] : entry;
          assert.ok(response.headers?.["API-Version"], `API-Version on ${status} of ${method} ${path}`);
        }
        if (method !== "get") assert.ok(item[method].responses["507"], `507 on ${method} ${path}`);
      }
    }
  });

  it("gives the limits and patterns the server enforces, so that neither drifts from the other", async () => {
    await call(`${svc.url}/v1/feeds/limits`, { method: "PUT" });
    const read = document.paths["/feeds/{feed}/events"].get.parameters;
    const parameter = (name: string) => read.find((entry: { name: string }) => entry.name === name).schema;
    const status = async (query: string) => (await call(`${svc.url}/v1/feeds/limits/events?${query}`)).status;
    assert.equal(await status(`limit=${parameter("limit").maximum}`), 200);
    assert.equal(await status(`limit=${parameter("limit").maximum + 1}`), 400);
    assert.equal(await status(`wait=${parameter("wait").maximum + 1}`), 400);
    const types = (count: number) => Array.from({ length: count }, (_, index) => `type=t.${index}`).join("&");
    assert.equal(await status(types(parameter("type").maxItems)), 200);
    assert.equal(await status(types(parameter("type").maxItems + 1)), 400);
    assert.equal(await status(`subject=${"s".repeat(parameter("subject").maxLength + 1)}`), 400);

    const sequence = new RegExp(document.components.schemas.Sequence.pattern);
    for (const text of ["0", "42", "1".repeat(16), "1".repeat(17), "042", "-1"]) {
      const reply = await call(`${svc.url}/v1/feeds/limits/events?after=${text}`);
      const refusedAsMalformed = reply.body.type === "urn:seintje:problem:invalid-cursor";
      assert.equal(refusedAsMalformed, !sequence.test(text), `after=${text}: ${reply.text}`);
    }
    const feedName = new RegExp(document.paths["/feeds/{feed}"].parameters[0].schema.pattern);
    for (const name of ["a", "0.a_b-c", "a".repeat(63), "a".repeat(64), "A", "-a"]) {
      const reply = await call(`${svc.url}/v1/feeds/${name}`);
      assert.equal(reply.status === 400, !feedName.test(name), name);
    }
    const subscriptions = document.paths["/subscriptions"].get.parameters[0].schema;
    assert.equal((await call(`${svc.url}/v1/subscriptions?limit=${subscriptions.maximum}`)).status, 200);
    assert.equal((await call(`${svc.url}/v1/subscriptions?limit=${subscriptions.maximum + 1}`)).status, 400);
  });

  it("names every route the server registers, and none that it does not", () => {
    const routers = createRouters({ metricsAccess: "open" } as Services);
    const registered = new Set<string>();
    for (const router of routers) {
      for (const layer of router.stack) {
        const path = String(layer.path)
          .replace(/\/$/, "")
          .replace(/:(\w+)/g, "{$1}");
        for (const method of layer.methods) if (method !== "HEAD") registered.add(`${method} ${path}`);
      }
    }
    const documented = new Set<string>();
    for (const [path, item] of Object.entries<Record<string, any>>(document.paths)) {
      const server = item.servers?.[0]?.url ?? document.servers[0].url;
      for (const method of ["get", "put", "post", "patch", "delete"]) {
        if (item[method]) documented.add(`${method.toUpperCase()} ${server.replace(/\/$/, "")}${path}`);
      }
    }
    assert.deepEqual([...registered].sort(), [...documented].sort());
  });

  it("describes what the feed and event endpoints answer", async () => {
    const base = svc.url;
    const put = (name: string, body: unknown) =>
      call(`${base}/v1/feeds/${name}`, {
        method: "PUT",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    conforms("PUT", "/v1/feeds/{feed}", await put("described", { retention: { maxEvents: 100 } }), 201);
    conforms("PUT", "/v1/feeds/{feed}", await put("described", { description: "BRK" }), 200);
    conforms("PUT", "/v1/feeds/{feed}", await put("described", { retension: 1 }), 400);
    conforms("GET", "/v1/feeds/{feed}", await call(`${base}/v1/feeds/described`), 200);
    conforms("GET", "/v1/feeds/{feed}", await call(`${base}/v1/feeds/missing`), 404);
    conforms("GET", "/v1/feeds/{feed}", await call(`${base}/v1/feeds/Not_A_Name`), 400);
    conforms(
      "DELETE",
      "/v1/feeds/{feed}",
      await call(`${base}/v1/feeds/Not_A_Name`, { method: "DELETE" }),
      400,
    );
    const plain = { method: "PUT", headers: { "content-type": "text/plain" }, body: "x" };
    conforms("PUT", "/v1/feeds/{feed}", await call(`${base}/v1/feeds/described`, plain), 415);
    conforms(
      "POST",
      "/v1/subscriptions",
      await call(`${base}/v1/subscriptions`, { ...plain, method: "POST" }),
      415,
    );
    conforms("GET", "/v1/feeds", await call(`${base}/v1/feeds`), 200);

    const post = (body: unknown, type = "application/cloudevents+json") =>
      call(`${base}/v1/feeds/described/events`, {
        method: "POST",
        headers: { "content-type": type },
        body: JSON.stringify(body),
      });
    const event = cloudEvent({ source: "urn:example:not-nl-gov", subject: "s-1" });
    const published = await post(event);
    conforms("POST", "/v1/feeds/{feed}/events", published, 201);
    assert.ok(published.body.warnings.length > 0, "warnings are part of what was checked");
    conforms("POST", "/v1/feeds/{feed}/events", await post(event), 200);
    conforms(
      "POST",
      "/v1/feeds/{feed}/events",
      await post([cloudEvent(), cloudEvent()], "application/cloudevents-batch+json"),
      201,
    );
    conforms("POST", "/v1/feeds/{feed}/events", await post({ ...event, data: "other" }), 409);
    conforms("POST", "/v1/feeds/{feed}/events", await post({ specversion: "1.0" }), 400);
    conforms("POST", "/v1/feeds/{feed}/events", await post(event, "text/plain"), 415);

    conforms("GET", "/v1/feeds/{feed}/events", await call(`${base}/v1/feeds/described/events?after=0`), 200);
    conforms("GET", "/v1/feeds/{feed}/events", await call(`${base}/v1/feeds/described/events?after=99`), 400);
    conforms(
      "GET",
      "/v1/feeds/{feed}/events/{sequence}",
      await call(`${base}/v1/feeds/described/events/1`),
      200,
    );
    conforms(
      "GET",
      "/v1/feeds/{feed}/events/{sequence}",
      await call(`${base}/v1/feeds/described/events/9`),
      404,
    );
    const tagged = await call(`${base}/v1/feeds/described/events/1`);
    const etag = { "if-none-match": tagged.headers.get("etag")! };
    conforms(
      "GET",
      "/v1/feeds/{feed}/events/{sequence}",
      await call(`${base}/v1/feeds/described/events/1`, { headers: etag }),
      304,
    );
    const page = await call(`${base}/v1/feeds/described/events?after=0`);
    conforms(
      "GET",
      "/v1/feeds/{feed}/events",
      await call(`${base}/v1/feeds/described/events?after=0`, {
        headers: { "if-none-match": page.headers.get("etag")! },
      }),
      304,
    );

    const anonymous = await call(`${base}/v1/feeds`, { headers: { authorization: "Bearer x" } });
    conforms("GET", "/v1/feeds", anonymous, 401);
    const reader = { authorization: `Bearer ${await tokenFor(svc.dir, "read")}` };
    conforms(
      "DELETE",
      "/v1/feeds/{feed}",
      await call(`${base}/v1/feeds/described`, { method: "DELETE", headers: reader }),
      403,
    );
    conforms(
      "DELETE",
      "/v1/feeds/{feed}",
      await call(`${base}/v1/feeds/described`, { method: "DELETE" }),
      204,
    );
  });

  it("describes what the subscription endpoints answer, and the ping", async () => {
    const base = svc.url;
    await call(`${base}/v1/feeds/pinged`, { method: "PUT" });
    const send = (method: string, path: string, body?: unknown) =>
      call(`${base}${path}`, {
        method,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    const created = await send("POST", "/v1/subscriptions", {
      feed: "pinged",
      url: receiver.url,
      after: "0",
    });
    conforms("POST", "/v1/subscriptions", created, 201);
    const id = created.body.id as string;
    conforms("POST", "/v1/subscriptions", await send("POST", "/v1/subscriptions", { feed: "pinged" }), 400);
    conforms("GET", "/v1/subscriptions", await send("GET", "/v1/subscriptions"), 200);
    conforms("GET", "/v1/subscriptions/{id}", await send("GET", `/v1/subscriptions/${id}`), 200);
    conforms(
      "GET",
      "/v1/subscriptions/{id}",
      await send("GET", "/v1/subscriptions/01900000-0000-7000-8000-000000000000"),
      404,
    );
    conforms(
      "PATCH",
      "/v1/subscriptions/{id}",
      await send("PATCH", `/v1/subscriptions/${id}`, { types: ["nl."] }),
      200,
    );

    await call(`${base}/v1/feeds/pinged/events`, {
      method: "POST",
      headers: { "content-type": "application/cloudevents+json" },
      body: JSON.stringify(cloudEvent({ type: "nl.example.pinged" })),
    });
    const [ping] = await receiver.waitForPings(1);
    const pingBody = document.webhooks.feedUpdated.post.requestBody.content["application/cloudevents+json"];
    assert.match(ping!.headers["content-type"] as string, /^application\/cloudevents\+json/);
    const validatePing = ajv.compile({ $ref: `openapi.json${pingBody.schema.$ref}` });
    assert.ok(validatePing(ping!.event), `the ping: ${ajv.errorsText(validatePing.errors)}\n${ping!.body}`);
    conforms("POST", "/v1/subscriptions/{id}/test", await send("POST", `/v1/subscriptions/${id}/test`), 200);
    conforms(
      "GET",
      "/v1/subscriptions/{id}/attempts",
      await send("GET", `/v1/subscriptions/${id}/attempts`),
      200,
    );
    conforms(
      "POST",
      "/v1/subscriptions/{id}/rotate-secret",
      await send("POST", `/v1/subscriptions/${id}/rotate-secret`),
      200,
    );
    conforms("DELETE", "/v1/subscriptions/{id}", await send("DELETE", `/v1/subscriptions/${id}`), 204);
  });

  it("describes what the type endpoints answer, and publishing against a schema", async () => {
    const base = svc.url;
    await call(`${base}/v1/feeds/typed`, { method: "PUT" });
    const declare = (type: string, body: unknown) =>
      call(`${base}/v1/feeds/typed/types/${type}`, {
        method: "PUT",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    const template = "/v1/feeds/{feed}/types/{type}";
    const schema = { type: "object", required: ["perceel"], properties: { perceel: { type: "string" } } };
    conforms("PUT", template, await declare("nl.example.typed", { schema, deprecated: true }), 201);
    conforms("PUT", template, await declare("nl.example.typed", { schema, example: { perceel: "1" } }), 200);
    conforms("PUT", template, await declare("nl.example.typed", { schema, example: {} }), 400);
    conforms("PUT", template, await declare("not-reverse-dns", {}), 400);
    conforms("PUT", template, await declare("nl.example.x", { schema: { type: 1 } }), 400);
    const publish = (data: unknown) =>
      call(`${base}/v1/feeds/typed/events`, {
        method: "POST",
        headers: { "content-type": "application/cloudevents+json" },
        body: JSON.stringify(cloudEvent({ type: "nl.example.typed", data })),
      });
    conforms("POST", "/v1/feeds/{feed}/events", await publish({ perceel: "1" }), 201);
    conforms("POST", "/v1/feeds/{feed}/events", await publish({ perceel: 1 }), 400);
    conforms("GET", "/v1/feeds/{feed}/types", await call(`${base}/v1/feeds/typed/types`), 200);
    conforms("GET", template, await call(`${base}/v1/feeds/typed/types/nl.example.typed`), 200);
    conforms("GET", template, await call(`${base}/v1/feeds/typed/types/nl.example.none`), 404);
    conforms(
      "GET",
      "/v1/feeds/{feed}/asyncapi.json",
      await call(`${base}/v1/feeds/typed/asyncapi.json`),
      200,
    );
    conforms(
      "DELETE",
      template,
      await call(`${base}/v1/feeds/typed/types/nl.example.typed`, { method: "DELETE" }),
      204,
    );
    conforms(
      "DELETE",
      template,
      await call(`${base}/v1/feeds/typed/types/nl.example.typed`, { method: "DELETE" }),
      404,
    );
  });

  it("describes the operational endpoints", async () => {
    conforms("GET", "/healthz", await call(`${svc.url}/healthz`), 200);
    conforms("GET", "/readyz", await call(`${svc.url}/readyz`), 200);
    conforms("GET", "/metrics", await call(`${svc.url}/metrics`), 200);
    conforms("GET", "/v1/openapi.json", await call(`${svc.url}/v1/openapi.json`), 200);
    conforms("GET", "/v1/asyncapi.json", await call(`${svc.url}/v1/asyncapi.json`), 200);
  });
});
