/**
 * What tracing needs, read from the standard `OTEL_*` variables by the configuration (see tracing.ts). Apart from
 * tracing.ts, which loads the OpenTelemetry SDK, so that reading the configuration loads none of it.
 */

type OtelEnv = Record<string, string | undefined>;

/** The exporter's settings: where spans go (none: tracing is off), with which headers, in which batches. */
export interface TracingConfig {
  /** Where traces go; undefined: tracing is off. */
  url: string | undefined;
  headers: Record<string, string>;
  serviceName: string;
  batch: {
    scheduledDelayMillis?: number;
    exportTimeoutMillis?: number;
    maxQueueSize?: number;
    maxExportBatchSize?: number;
  };
}

export function tracingConfig(env: OtelEnv): TracingConfig {
  return {
    url: tracesEndpoint(env),
    headers: exportHeaders(env),
    serviceName: env.OTEL_SERVICE_NAME?.trim() || "seintje",
    batch: batchOptions(env),
  };
}

/** Where traces go, as the OTLP/HTTP specification builds it; undefined when the environment asks for none. */
export function tracesEndpoint(env: OtelEnv): string | undefined {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === "true") return undefined;
  if (env.OTEL_TRACES_EXPORTER?.trim().toLowerCase() === "none") return undefined;
  const traces = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  if (traces) return traces;
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  return base ? `${base.replace(/\/+$/, "")}/v1/traces` : undefined;
}

/** `OTEL_EXPORTER_OTLP_HEADERS` (and the traces one): `key=value` pairs, comma-separated, percent-encoded. */
function exportHeaders(env: OtelEnv): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const text of [env.OTEL_EXPORTER_OTLP_HEADERS, env.OTEL_EXPORTER_OTLP_TRACES_HEADERS]) {
    for (const pair of (text ?? "").split(",")) {
      const at = pair.indexOf("=");
      if (at > 0)
        headers[decodeURIComponent(pair.slice(0, at).trim())] = decodeURIComponent(pair.slice(at + 1).trim());
    }
  }
  return headers;
}

/** The batch processor's settings from the standard `OTEL_BSP_*` variables, where they are whole numbers. */
function batchOptions(env: OtelEnv) {
  const read = (name: string) => {
    const value = Number(env[name]);
    return env[name] !== undefined && Number.isSafeInteger(value) && value > 0 ? value : undefined;
  };
  const options = {
    scheduledDelayMillis: read("OTEL_BSP_SCHEDULE_DELAY"),
    exportTimeoutMillis: read("OTEL_BSP_EXPORT_TIMEOUT"),
    maxQueueSize: read("OTEL_BSP_MAX_QUEUE_SIZE"),
    maxExportBatchSize: read("OTEL_BSP_MAX_EXPORT_BATCH_SIZE"),
  };
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined));
}
