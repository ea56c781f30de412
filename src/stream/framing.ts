/**
 * Server-Sent Events framing (WHATWG HTML, "Server-sent events"). No CR or LF can reach an `id:`, `event:` or
 * `retry:` line: they would end the field and let the rest be read as another field. Data with line breaks is
 * split over several `data:` lines, which the client joins with LF again.
 */

const LINE_BREAK = /\r\n|\r|\n/;
// A NUL in an id makes the client ignore the id (WHATWG: "If the field value does not contain U+0000 NULL").
// biome-ignore lint/suspicious/noControlCharactersInRegex: removing control characters is the point
const NOT_IN_FIELD = /[\r\n\u0000]/g;

function field(name: string, value: string): string {
  return `${name}: ${value.replace(NOT_IN_FIELD, "")}\n`;
}

function data(text: string): string {
  return text
    .split(LINE_BREAK)
    .map((line) => `data: ${line}\n`)
    .join("");
}

/** One event: its sequence as the id, its JSON as data; no `event:` field, so `onmessage` receives it. */
export function eventMessage(id: number | string, json: string): string {
  return `${field("id", String(id))}${data(json)}\n`;
}

/** An id with no data: moves the client's Last-Event-ID past skipped events without dispatching anything. */
export function progressMessage(id: number | string): string {
  return `${field("id", String(id))}\n`;
}

/** A named event (`reset`, `token-expiring`) with data. */
export function namedMessage(event: string, json: string): string {
  return `${field("event", event)}${data(json)}\n`;
}

export function retryMessage(milliseconds: number): string {
  return field("retry", String(Math.max(0, Math.round(milliseconds))));
}

export function comment(text: string): string {
  return `: ${text.replace(NOT_IN_FIELD, " ")}\n\n`;
}
