import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { after, before, describe, it } from "node:test";
import { call, cloudEvent, publish, putFeed, subscribe } from "../support/http.js";
import { type Receiver, startReceiver } from "../support/receiver.js";
import { startTestService, type TestService } from "../support/service.js";
import { eventually } from "../support/wait.js";

/**
 * OpenTelemetry traces (issue #23), received over OTLP/HTTP on a loopback receiver: the publish span links the
 * publisher's `traceparent` (the CloudEvents distributed tracing extension), and the ping's delivery span is the one
 * its `traceparent` header names.
 */

interface ExportedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  links?: Array<{ traceId: string; spanId: string }>;
  attributes?: Array<{ key: string; value: Record<string, unknown> }>;
}

/** OTLP/JSON writes ids as hex; the protobuf-JSON mapping would write base64. Either way: hex. */
const hex = (id: string | undefined) =>
  id === undefined || /^[0-9a-f]+$/.test(id) ? id : Buffer.from(id, "base64").toString("hex");

const HOOKS = { SEINTJE_CALLBACK_HTTP: "true", SEINTJE_CALLBACK_ALLOW: "127.0.0.1" };
// The example of the W3C Trace Context specification.
const PUBLISHER_TRACE = "0af7651916cd43dd8448eb211c80319c";
const PUBLISHER_SPAN = "b7ad6b7169203331";

describe("tracing", () => {
  let collector: Server;
  let collectorUrl: string;
  const spans: ExportedSpan[] = [];
  const requests: Array<{ path: string; type: string | undefined }> = [];
  let svc: TestService;
  let receiver: Receiver;

  before(async () => {
    collector = createServer((req, res) => {
      let body = "";
      req.setEncoding("utf8");
      req.on("data", (chunk: string) => {
        body += chunk;
      });
      req.on("end", () => {
        requests.push({ path: req.url ?? "", type: req.headers["content-type"] });
        const exported = JSON.parse(body) as {
          resourceSpans: Array<{ scopeSpans: Array<{ spans: ExportedSpan[] }> }>;
        };
        for (const resource of exported.resourceSpans ?? []) {
          for (const scope of resource.scopeSpans ?? []) {
            for (const span of scope.spans ?? []) {
              spans.push({
                ...span,
                traceId: hex(span.traceId)!,
                spanId: hex(span.spanId)!,
                parentSpanId: hex(span.parentSpanId),
                links: (span.links ?? []).map((link) => ({
                  traceId: hex(link.traceId)!,
                  spanId: hex(link.spanId)!,
                })),
              });
            }
          }
        }
        res.writeHead(200, { "content-type": "application/json" });
        res.end("{}");
      });
    });
    await new Promise<void>((resolve) => collector.listen(0, "127.0.0.1", resolve));
    collectorUrl = `http://127.0.0.1:${(collector.address() as { port: number }).port}`;
    svc = await startTestService({
      ...HOOKS,
      OTEL_EXPORTER_OTLP_ENDPOINT: collectorUrl,
      OTEL_BSP_SCHEDULE_DELAY: "100",
      OTEL_SERVICE_NAME: "seintje-under-test",
    });
    receiver = await startReceiver();
  });
  after(async () => {
    await svc.stop();
    await receiver.close();
    await new Promise((resolve) => collector.close(resolve));
  });

  it("links the publish span to the event's traceparent and sends the ping's delivery span as its traceparent", async () => {
    await putFeed(svc.url, "traced");
    const created = await subscribe(svc.url, { feed: "traced", url: receiver.url });
    assert.equal(created.status, 201, created.text);
    const traceparent = `00-${PUBLISHER_TRACE}-${PUBLISHER_SPAN}-01`;
    const event = cloudEvent({ traceparent, tracestate: "vendor=value" });
    const requestTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
    const requestSpan = "00f067aa0ba902b7";
    const published = await publish(svc.url, "traced", event, {
      traceparent: `00-${requestTrace}-${requestSpan}-01`,
    });
    assert.equal(published.status, 201, published.text);

    const stored = await call(`${svc.url}/v1/feeds/traced/events/1`);
    assert.equal(stored.body.traceparent, traceparent, "kept with the event");
    assert.equal(stored.body.tracestate, "vendor=value");

    const [ping] = await receiver.waitForPings(1);
    const header = String(ping!.headers.traceparent);
    const match = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(header);
    assert.ok(match, `the ping's traceparent: ${header}`);

    const append = await eventually(
      () => spans.find((span) => span.name === "append traced"),
      10_000,
      "the append span exported",
    );
    assert.deepEqual(append.links, [{ traceId: PUBLISHER_TRACE, spanId: PUBLISHER_SPAN }]);
    const request = spans.find((span) => span.spanId === append.parentSpanId);
    assert.ok(request, "the append is a child of its request's span");
    assert.equal(request.name, "POST /v1/feeds/:feed/events");
    assert.equal(request.traceId, requestTrace, "the request continues its caller's trace");
    assert.equal(request.parentSpanId, requestSpan);

    const delivery = await eventually(
      () => spans.find((span) => span.spanId === match[2]),
      10_000,
      "the ping's delivery span exported",
    );
    assert.equal(delivery.name, "ping");
    assert.equal(delivery.traceId, match[1]);
    assert.ok(
      delivery.attributes?.some((attribute) => attribute.key === "seintje.subscription"),
      "it names the subscription",
    );
    assert.ok(requests.every((exported) => exported.path === "/v1/traces"));
    assert.ok(requests.every((exported) => /json/.test(exported.type ?? "")));
  });

  it("names reads and long-polls by route, never with the query", async () => {
    await call(`${svc.url}/v1/feeds/traced/events?after=0&access_token=secret-in-query`, {
      headers: { accept: "application/json" },
    });
    await call(`${svc.url}/v1/feeds/traced/events?after=1&wait=0.2`);
    const reads = await eventually(
      () => {
        const found = spans.filter((span) => span.name === "GET /v1/feeds/:feed/events");
        return found.length >= 2 ? found : undefined;
      },
      10_000,
      "the read spans exported",
    );
    assert.ok(!JSON.stringify(spans).includes("secret-in-query"), "no query string in any span");
    const waited = reads.find((span) =>
      span.attributes?.some(
        (attribute) =>
          attribute.key === "seintje.wait_ms" && Number(Object.values(attribute.value)[0]) === 200,
      ),
    );
    assert.ok(waited, "the long-poll says how long it waited");
  });

  it("sends no traceparent when no OTEL_ variable asks for tracing", async () => {
    const quiet = await startTestService(HOOKS);
    const own = await startReceiver();
    try {
      await putFeed(quiet.url, "untraced");
      await subscribe(quiet.url, { feed: "untraced", url: own.url });
      await publish(quiet.url, "untraced", cloudEvent());
      const [ping] = await own.waitForPings(1);
      assert.equal(ping!.headers.traceparent, undefined);
    } finally {
      await quiet.stop();
      await own.close();
    }
  });
});
