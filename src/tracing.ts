import {
  type Context,
  type Link,
  ROOT_CONTEXT,
  type Span,
  type SpanOptions,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";
import type { TracingConfig } from "./tracing-config.js";
import { VERSION } from "./version.js";

/**
 * OpenTelemetry tracing, off unless the standard variables ask for it: an OTLP endpoint
 * (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), and not `OTEL_SDK_DISABLED=true` or
 * `OTEL_TRACES_EXPORTER=none`. Spans go out over OTLP/HTTP (JSON) in batches, with `OTEL_EXPORTER_OTLP_HEADERS`
 * and the `OTEL_BSP_*` settings; `OTEL_SERVICE_NAME` names the service (default `seintje`). The variables come
 * from the configuration's environment, read like every other option.
 *
 * Contexts are passed by hand, never through an ambient "active span": a request's span is the parent of what the
 * request does, and the W3C Trace Context (`traceparent`, `tracestate`) is read from requests, from the CloudEvents
 * distributed-tracing extension of published events (as links), and written into pings.
 */

export interface Tracing {
  readonly enabled: boolean;
  readonly tracer: Tracer;
  /** Sends what is buffered and stops. */
  shutdown(): Promise<void>;
}

const propagator = new W3CTraceContextPropagator();

/** Reads carriers as plain records of header-like names. */
const getter = {
  get: (carrier: Record<string, unknown>, key: string) => {
    const value = carrier[key];
    return typeof value === "string" ? value : Array.isArray(value) ? String(value[0]) : undefined;
  },
  keys: (carrier: Record<string, unknown>) => Object.keys(carrier),
};
const setter = {
  set: (carrier: Record<string, string>, key: string, value: string) => {
    carrier[key] = value;
  },
};

/** Tracing for one service: exporting when the environment asks for it, else a tracer that records nothing. */
export function startTracing(config: TracingConfig): Tracing {
  const { url } = config;
  if (url === undefined) {
    // No provider is registered globally, so this is the API's no-op tracer: spans cost next to nothing.
    return { enabled: false, tracer: trace.getTracer("seintje", VERSION), shutdown: async () => {} };
  }
  const provider = new TracerProvider({
    resource: resourceFromAttributes({
      "service.name": config.serviceName,
      "service.version": VERSION,
    }),
    spanProcessors: [
      new BatchSpanProcessor({
        exporter: new OTLPTraceExporter({ url, headers: config.headers }),
        ...config.batch,
      }),
    ],
  });
  return {
    enabled: true,
    tracer: provider.getTracer("seintje", VERSION),
    shutdown: () => provider.shutdown(),
  };
}

/** The context a request carries in its `traceparent` and `tracestate` headers (none: the root). */
export function contextFrom(headers: Record<string, unknown>): Context {
  return propagator.extract(ROOT_CONTEXT, headers, getter);
}

/** A link to the context named by a CloudEvent's `traceparent` (and `tracestate`), when they are valid. */
export function linkTo(traceparent: unknown, tracestate: unknown): Link | undefined {
  if (typeof traceparent !== "string") return undefined;
  const carrier = { traceparent, ...(typeof tracestate === "string" ? { tracestate } : {}) };
  const spanContext = trace.getSpanContext(propagator.extract(ROOT_CONTEXT, carrier, getter));
  return spanContext && trace.isSpanContextValid(spanContext) ? { context: spanContext } : undefined;
}

/** The `traceparent` (and `tracestate`) headers that name `span`, for an outgoing request. */
export function headersFor(span: Span): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagator.inject(trace.setSpan(ROOT_CONTEXT, span), carrier, setter);
  return carrier;
}

/** Starts a span as a child of `parent` (a span, or a context; none: a new trace). */
export function startSpan(tracer: Tracer, name: string, options: SpanOptions, parent?: Span | Context): Span {
  const parentContext =
    parent === undefined
      ? ROOT_CONTEXT
      : "spanContext" in parent
        ? trace.setSpan(ROOT_CONTEXT, parent)
        : parent;
  return tracer.startSpan(name, options, parentContext);
}
