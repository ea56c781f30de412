import { createHash } from "node:crypto";
import { HttpProblem, validationProblem } from "../errors.js";
import { canonicalJson, decodeUtf8, MAX_DATA_DEPTH, parseJsonText } from "../json.js";
import { isJsonMediaType, validateEvent } from "./validate.js";

/**
 * The CloudEvents HTTP binding: structured, batch and binary mode, each turned into events in structured JSON
 * form. The `cloudevents` package is not used on this path: its parser invents an `id` and `time` when they are
 * missing (hiding the publisher's mistake), rewrites `time` into another notation, and reports no JSON Pointers.
 */

export const MAX_EVENT_BYTES = 64 * 1024;
export const MAX_EVENTS_PER_REQUEST = 1000;
/** The contract's limit on a publish request's body; SEINTJE_MAX_REQUEST_BYTES may change it. */
export const MAX_REQUEST_BYTES = 1024 * 1024;

export const STRUCTURED = "application/cloudevents+json";
export const BATCH = "application/cloudevents-batch+json";

export type Mode = "structured" | "batch" | "binary";

/** One event ready to append: its identity, filter fields, and the JSON text it was published as. */
export interface PreparedEvent {
  id: string;
  source: string;
  type: string;
  subject: string | null;
  /** Structured JSON as published, without sequence; the stored body adds sequence and sequencetype. */
  json: string;
  /** sha256 of the canonical JSON: equal digests mean the same content, whatever the key order or mode. */
  digest: string;
  /** The event in structured form, as parsed: what its type's schema is checked against. */
  attributes: Record<string, unknown>;
}

export interface ParsedRequest {
  mode: Mode;
  events: PreparedEvent[];
  warnings: Array<{ pointer: string; detail: string }>;
}

export interface IncomingMessage {
  contentType: string | undefined;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

function mediaTypeEssence(contentType: string | undefined): string {
  return (contentType ?? "").split(";")[0]!.trim().toLowerCase();
}

function charsetIsUtf8(contentType: string | undefined): boolean {
  const match = /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(contentType ?? "");
  return match === null || /^utf-?8$/i.test(match[1]!);
}

/** HTTP binding 3.1.3.2: ce- header values are percent-encoded where they hold non-printable or non-ASCII text. */
function decodeHeaderValue(value: string, attribute: string): string {
  if (!value.includes("%")) return value;
  try {
    return decodeURIComponent(value);
  } catch {
    throw validationProblem([{ pointer: `/${attribute}`, detail: "has an invalid percent-encoding" }]);
  }
}

function isTextual(mediaType: string): boolean {
  const essence = mediaTypeEssence(mediaType);
  return essence.startsWith("text/") || essence === "application/xml" || essence.endsWith("+xml");
}

/** Binary mode: attributes from `ce-*` headers, `datacontenttype` from Content-Type, the body as data. */
function fromBinary(message: IncomingMessage): Record<string, unknown> {
  const event: Record<string, unknown> = {};
  for (const [header, raw] of Object.entries(message.headers)) {
    const name = header.toLowerCase();
    if (!name.startsWith("ce-") || raw === undefined) continue;
    const attribute = name.slice(3);
    if (Array.isArray(raw)) {
      throw validationProblem([
        { pointer: `/${attribute}`, detail: `header ${name} appears more than once` },
      ]);
    }
    event[attribute] = decodeHeaderValue(raw, attribute);
  }
  if (message.contentType !== undefined) event.datacontenttype = message.contentType;
  if (message.body.length > 0) {
    const contentType = message.contentType ?? "application/json";
    const text = charsetIsUtf8(contentType) ? decodeUtf8(message.body) : undefined;
    if (isJsonMediaType(contentType)) {
      if (text === undefined)
        throw validationProblem([{ pointer: "/data", detail: "JSON data must be UTF-8" }]);
      event.data = parseJsonText(text, "/data", MAX_DATA_DEPTH);
    } else if (isTextual(contentType) && text !== undefined) {
      event.data = text;
    } else {
      event.data_base64 = message.body.toString("base64");
    }
  }
  return event;
}

function prepare(event: Record<string, unknown>, pointer: string): PreparedEvent {
  const json = JSON.stringify(event);
  const bytes = Buffer.byteLength(json);
  if (bytes > MAX_EVENT_BYTES) {
    throw new HttpProblem(413, "tooLarge", `An event may be at most ${MAX_EVENT_BYTES} bytes serialized.`, {
      errors: [{ pointer, detail: `is ${bytes} bytes serialized` }],
    });
  }
  return {
    id: event.id as string,
    source: event.source as string,
    type: event.type as string,
    subject: (event.subject as string | undefined) ?? null,
    json,
    digest: createHash("sha256").update(canonicalJson(event)).digest("hex"),
    attributes: event,
  };
}

/**
 * The CloudEvents JSON format: an attribute whose value is null is treated as absent, so it is neither stored nor
 * an error (a required one is then reported missing). `data: null` stays: it is the event's data, and events
 * stored with it keep their digest.
 */
function dropNullAttributes(event: unknown): void {
  if (typeof event !== "object" || event === null || Array.isArray(event)) return;
  const attributes = event as Record<string, unknown>;
  for (const name of Object.keys(attributes)) {
    if (attributes[name] === null && name !== "data") delete attributes[name];
  }
}

function modeOf(message: IncomingMessage): Mode {
  const essence = mediaTypeEssence(message.contentType);
  if (essence === BATCH) return "batch";
  if (essence === STRUCTURED) return "structured";
  if (Object.keys(message.headers).some((header) => header.toLowerCase().startsWith("ce-"))) return "binary";
  throw new HttpProblem(
    415,
    "unsupportedMediaType",
    `Send a CloudEvent as ${STRUCTURED}, a batch as ${BATCH}, or in binary mode with ce-* headers.`,
  );
}

/**
 * Reads a publish request into events, or throws the problem to answer: 400 with `errors[]` for invalid events
 * (every event checked, so one answer lists every mistake), 413 for size limits, 415 for an unknown mode.
 */
export function parsePublishRequest(message: IncomingMessage): ParsedRequest {
  const mode = modeOf(message);
  let raw: unknown[];
  if (mode === "binary") {
    raw = [fromBinary(message)];
  } else {
    if (!charsetIsUtf8(message.contentType)) {
      throw new HttpProblem(415, "unsupportedMediaType", "CloudEvents JSON must be UTF-8.");
    }
    const text = decodeUtf8(message.body);
    if (text === undefined) throw validationProblem([{ pointer: "", detail: "is not valid UTF-8" }]);
    // The data sits one level down in an event, two in a batch.
    const body = parseJsonText(text, "", MAX_DATA_DEPTH + (mode === "batch" ? 2 : 1));
    if (mode === "batch") {
      if (!Array.isArray(body))
        throw validationProblem([{ pointer: "", detail: "a batch must be a JSON array" }]);
      if (body.length > MAX_EVENTS_PER_REQUEST) {
        throw new HttpProblem(
          413,
          "tooLarge",
          `A request may hold at most ${MAX_EVENTS_PER_REQUEST} events.`,
        );
      }
      raw = body;
    } else {
      raw = [body];
    }
  }

  for (const event of raw) dropNullAttributes(event);
  const pointerOf = (index: number) => (mode === "batch" ? `/${index}` : "");
  const errors: ParsedRequest["warnings"] = [];
  const warnings: ParsedRequest["warnings"] = [];
  raw.forEach((event, index) => {
    const findings = validateEvent(event, pointerOf(index));
    errors.push(...findings.errors);
    warnings.push(...findings.warnings);
  });
  if (errors.length > 0) throw validationProblem(errors);

  const events = raw.map((event, index) => prepare(event as Record<string, unknown>, pointerOf(index)));
  return { mode, events, warnings };
}
