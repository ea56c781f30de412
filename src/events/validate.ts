import type { Pointed } from "../errors.js";

/**
 * CloudEvents 1.0 validation of one event in its structured JSON form, with the NL GOV profile's SHOULDs as
 * warnings. Every finding points at the attribute in the structured form (`/type`, or `/3/type` in a batch).
 */

export interface Findings {
  errors: Pointed[];
  warnings: Pointed[];
}

const REQUIRED = ["specversion", "id", "source", "type"] as const;
const CONTEXT_ATTRIBUTES = new Set([
  "specversion",
  "id",
  "source",
  "type",
  "datacontenttype",
  "dataschema",
  "subject",
  "time",
  "data",
  "data_base64",
]);
/** Set by the feed; a publisher may not choose them. */
const FEED_ATTRIBUTES = ["sequence", "sequencetype"] as const;

const ATTRIBUTE_NAME = /^[a-z0-9]+$/;
/** Reverse-DNS: a lower-case first label, then at least one more dot-separated label. */
export const REVERSE_DNS =
  /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?)+$/;
/** RFC 3986 characters, with every `%` starting a percent-encoding. */
const URI_REFERENCE = /^(?:[A-Za-z0-9\-._~:/?#[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})+$/;
const URI_SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:/;
const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/;
/** RFC 2046 / RFC 9110 media type with optional parameters. */
const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
const MEDIA_TYPE = new RegExp(
  `^${TOKEN}/${TOKEN}(?:\\s*;\\s*${TOKEN}=(?:${TOKEN}|"(?:[^"\\\\]|\\\\.)*"))*\\s*$`,
);
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** Control characters the CloudEvents type system does not allow in a String. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const INT32_MIN = -2_147_483_648;
const INT32_MAX = 2_147_483_647;

export function isJsonMediaType(mediaType: string): boolean {
  const essence = mediaType.split(";")[0]!.trim().toLowerCase();
  return essence === "application/json" || essence.endsWith("+json");
}

function isRfc3339(value: string): boolean {
  const match = RFC3339.exec(value);
  if (!match) return false;
  const [, year, month, day, hour, minute, second, , offsetHour, offsetMinute] = match.map(Number);
  const daysInMonth = new Date(Date.UTC(year!, month!, 0)).getUTCDate();
  return (
    month! >= 1 &&
    month! <= 12 &&
    day! >= 1 &&
    day! <= daysInMonth &&
    hour! <= 23 &&
    minute! <= 59 &&
    second! <= 60 &&
    (match[7] === undefined || (offsetHour! <= 23 && offsetMinute! <= 59))
  );
}

class Collector {
  readonly errors: Pointed[] = [];
  readonly warnings: Pointed[] = [];
  constructor(private readonly prefix: string) {}

  pointer(attribute?: string): string {
    return attribute === undefined
      ? this.prefix
      : `${this.prefix}/${attribute.replace(/~/g, "~0").replace(/\//g, "~1")}`;
  }
  error(attribute: string | undefined, detail: string): void {
    this.errors.push({ pointer: this.pointer(attribute), detail });
  }
  warn(attribute: string | undefined, detail: string): void {
    this.warnings.push({ pointer: this.pointer(attribute), detail });
  }
}

/** Checks a String-typed value; returns false (after reporting) when it is not a usable string. */
function checkString(found: Collector, name: string, value: unknown, nonEmpty: boolean): value is string {
  if (typeof value !== "string") {
    found.error(name, `must be a string`);
    return false;
  }
  if (nonEmpty && value.length === 0) {
    found.error(name, `must not be empty`);
    return false;
  }
  if (CONTROL.test(value)) {
    found.error(name, `must not contain control characters`);
    return false;
  }
  if (LONE_SURROGATE.test(value)) {
    found.error(name, `must not contain unpaired surrogates`);
    return false;
  }
  return true;
}

function checkContextAttribute(found: Collector, name: string, value: unknown): void {
  switch (name) {
    case "specversion":
      if (value !== "1.0") found.error(name, `must be "1.0"`);
      return;
    case "id":
    case "subject":
      checkString(found, name, value, true);
      return;
    case "source":
      if (checkString(found, name, value, true) && !URI_REFERENCE.test(value)) {
        found.error(name, "must be a URI-reference (RFC 3986)");
      }
      return;
    case "type":
      if (checkString(found, name, value, true) && !REVERSE_DNS.test(value)) {
        found.error(name, "must be in reverse-DNS form, e.g. nl.kadaster.brk.perceel-overgedragen");
      }
      return;
    case "time":
      if (checkString(found, name, value, true) && !isRfc3339(value)) {
        found.error(name, "must be an RFC 3339 timestamp, e.g. 2026-11-23T09:14:00Z");
      }
      return;
    case "dataschema":
      if (checkString(found, name, value, true) && !(URI_SCHEME.test(value) && URI_REFERENCE.test(value))) {
        found.error(name, "must be an absolute URI");
      }
      return;
    case "datacontenttype":
      if (checkString(found, name, value, true) && !MEDIA_TYPE.test(value)) {
        found.error(name, "must be a media type (RFC 2046), e.g. application/json");
      }
      return;
    case "data_base64":
      if (typeof value !== "string" || !BASE64.test(value)) found.error(name, "must be base64 (RFC 4648)");
      return;
    case "data":
      return;
  }
}

function checkExtension(found: Collector, name: string, value: unknown): void {
  if (name === "dataref") {
    if (checkString(found, name, value, true) && !(URI_SCHEME.test(value) && URI_REFERENCE.test(value))) {
      found.error(name, "must be an absolute URI");
    }
    return;
  }
  if (typeof value === "boolean") return;
  if (typeof value === "number") {
    if (!Number.isInteger(value) || value < INT32_MIN || value > INT32_MAX) {
      found.error(name, "a number must be a 32-bit integer (CloudEvents Integer)");
    }
    return;
  }
  if (typeof value === "string") {
    checkString(found, name, value, false);
    return;
  }
  found.error(name, "must be a string, an integer or a boolean");
}

/**
 * Validates one event given in structured form. `prefix` is the JSON Pointer of the event in the request body:
 * "" for a single event, "/3" for the fourth of a batch.
 */
export function validateEvent(event: unknown, prefix = ""): Findings {
  const found = new Collector(prefix);
  if (typeof event !== "object" || event === null || Array.isArray(event)) {
    found.error(undefined, "a CloudEvent must be a JSON object");
    return { errors: found.errors, warnings: found.warnings };
  }
  const attributes = event as Record<string, unknown>;

  for (const name of REQUIRED) {
    if (attributes[name] === undefined || attributes[name] === null) found.error(name, "is required");
  }
  for (const name of FEED_ATTRIBUTES) {
    if (attributes[name] !== undefined) found.error(name, "is assigned by the feed and may not be sent");
  }
  if (attributes.data !== undefined && attributes.data_base64 !== undefined) {
    found.error("data_base64", "an event has either data or data_base64, not both");
  }

  for (const [name, value] of Object.entries(attributes)) {
    if ((FEED_ATTRIBUTES as readonly string[]).includes(name)) continue;
    // Null is absent (the CloudEvents JSON format); the publish path drops such attributes before storing.
    if (value === null) continue;
    if (!CONTEXT_ATTRIBUTES.has(name) && !ATTRIBUTE_NAME.test(name)) {
      found.error(name, "attribute names consist of lower-case letters a-z and digits 0-9");
      continue;
    }
    if (CONTEXT_ATTRIBUTES.has(name)) checkContextAttribute(found, name, value);
    else checkExtension(found, name, value);
    if (name.length > 20 && name !== "data_base64") {
      found.warn(name, "attribute names SHOULD NOT exceed 20 characters (CloudEvents)");
    }
  }

  if (found.errors.length === 0) profileWarnings(found, attributes);
  return { errors: found.errors, warnings: found.warnings };
}

/** The NL GOV profile for CloudEvents: what it says SHOULD hold. Reported, never refused. */
function profileWarnings(found: Collector, event: Record<string, unknown>): void {
  const source = event.source as string;
  if (!source.toLowerCase().startsWith("urn:nld:")) {
    found.warn(
      "source",
      "SHOULD be a URN in the 'nld' namespace, e.g. urn:nld:oin:<OIN>:systeem:<name> (NL GOV)",
    );
  }
  if (typeof event.datacontenttype === "string" && !isJsonMediaType(event.datacontenttype)) {
    found.warn("datacontenttype", "data SHOULD be JSON (NL GOV)");
  } else if (event.data_base64 !== undefined) {
    found.warn("data_base64", "data SHOULD be JSON (NL GOV)");
  }
}
