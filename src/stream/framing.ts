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

const CRLF = Buffer.from("\r\n");

/**
 * An SSE message as one HTTP/1.1 chunk (RFC 9112, section 7.1): its size in hex, CRLF, the bytes, CRLF. Chunks
 * written one after another are a valid chunked body, so a run of framed events can be written as one buffer.
 */
export function httpChunk(message: string | Buffer): Buffer {
  const bytes = typeof message === "string" ? Buffer.from(message) : message;
  return Buffer.concat([Buffer.from(`${bytes.length.toString(16)}\r\n`), bytes, CRLF]);
}

/** The SSE message inside an HTTP/1.1 chunk made by `httpChunk`. */
export function chunkMessage(chunk: Buffer): Buffer {
  return chunk.subarray(chunk.indexOf(CRLF) + 2, chunk.length - 2);
}
