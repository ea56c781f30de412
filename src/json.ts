import { validationProblem } from "./errors.js";

/**
 * Every JSON request body is decoded by one rule: UTF-8 (invalid bytes are a 400; a leading byte order mark is
 * ignored, as RFC 8259 §8.1 allows), valid JSON, nested no deeper than a limit, and every number exactly what the
 * service will store and serve. A problem is a 400 whose pointers name the place in the document.
 *
 * Why the last two: events are stored as the JSON text `JSON.stringify` makes of the parsed document. A number that
 * a double cannot hold (`1e400`, `9007199254740993`, `-0`) would come back as something else (`null`,
 * `9007199254740992`, `0`), so it is refused rather than changed; and a document nested thousands of levels deep
 * breaks recursive serializers (ours included) and other consumers' parsers.
 */

/**
 * How deep an event's `data` (and any other request document) may nest: `{"a": {"b": 1}}` is 2. .NET's
 * System.Text.Json refuses more than 64 levels by default, and a page puts an event's data 3 levels down.
 */
export const MAX_DATA_DEPTH = 32;

/** At most this many number problems are listed; finding each one's pointer scans the text again. */
const MAX_REPORTED = 20;

const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

/** UTF-8 text without a leading byte order mark, or undefined when the bytes are not UTF-8. */
export function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return decoder.decode(bytes);
  } catch {
    return undefined;
  }
}

/**
 * Decodes a JSON document. `pointer` is where the document sits in the request as the client sees it (`/data` for
 * the data of a binary-mode event, `` for a whole body); `maxDepth` bounds its nesting.
 */
export function decodeJson(bytes: Uint8Array, pointer = "", maxDepth = MAX_DATA_DEPTH): unknown {
  const text = decodeUtf8(bytes);
  if (text === undefined) throw validationProblem([{ pointer, detail: "is not valid UTF-8" }]);
  return parseJsonText(text, pointer, maxDepth);
}

/** JSON.parse with the depth and number rules of `decodeJson`, for text already decoded. */
export function parseJsonText(text: string, pointer = "", maxDepth = MAX_DATA_DEPTH): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw validationProblem(
      [{ pointer, detail: `not valid JSON: ${(error as Error).message}` }],
      "The body is not valid JSON.",
    );
  }
  const found = inspect(text, maxDepth);
  if (found.tooDeep !== undefined) {
    throw validationProblem([
      {
        pointer: pointer + pointerAt(text, found.tooDeep),
        detail: `nests deeper than allowed (data may nest at most ${MAX_DATA_DEPTH} levels)`,
      },
    ]);
  }
  if (found.inexact.length > 0) {
    throw validationProblem(
      found.inexact.map((at) => ({
        pointer: pointer + pointerAt(text, at),
        detail: `the number ${numberAt(text, at)} cannot be stored exactly (a 64-bit binary floating-point number holds it as ${JSON.stringify(Number(numberAt(text, at)))}); send it as a string`,
      })),
      "The request holds numbers that would be changed.",
    );
  }
  return value;
}

/** The index of the quote that closes the string opening at `start`. The text is valid JSON. */
function endOfString(text: string, start: number): number {
  let end = text.indexOf('"', start + 1);
  for (;;) {
    let backslashes = 0;
    while (text.charCodeAt(end - 1 - backslashes) === 0x5c) backslashes += 1;
    if (backslashes % 2 === 0) return end;
    end = text.indexOf('"', end + 1);
  }
}

const isNumberChar = (code: number) =>
  (code >= 0x30 && code <= 0x39) ||
  code === 0x2d ||
  code === 0x2b ||
  code === 0x2e ||
  code === 0x65 ||
  code === 0x45;

function endOfNumber(text: string, start: number): number {
  let end = start;
  while (end < text.length && isNumberChar(text.charCodeAt(end))) end += 1;
  return end;
}

function numberAt(text: string, start: number): string {
  return text.slice(start, endOfNumber(text, start));
}

/**
 * One pass over valid JSON text: the offset of the first container deeper than `maxDepth`, and the offsets of
 * numbers that do not survive parsing and serializing. Strings are skipped whole, so this stays cheap on the
 * publish path: a number of at most 15 characters without an exponent is always exact (a double holds 15
 * significant decimal digits), except -0.
 */
function inspect(text: string, maxDepth: number): { tooDeep?: number; inexact: number[] } {
  const inexact: number[] = [];
  let depth = 0;
  for (let index = 0; index < text.length; index += 1) {
    const code = text.charCodeAt(index);
    if (code === 0x22) {
      index = endOfString(text, index);
    } else if (code === 0x7b || code === 0x5b) {
      depth += 1;
      if (depth > maxDepth) return { tooDeep: index, inexact };
    } else if (code === 0x7d || code === 0x5d) {
      depth -= 1;
    } else if (code === 0x2d || (code >= 0x30 && code <= 0x39)) {
      const end = endOfNumber(text, index);
      const token = text.slice(index, end);
      const plain = end - index <= 15 && !/[eE]/.test(token) && code !== 0x2d;
      if (!plain && !isExact(token) && inexact.length < MAX_REPORTED) inexact.push(index);
      index = end - 1;
    }
  }
  return { inexact };
}

/** A decimal number as sign, significant digits and exponent: `-1.50e2` is `-15e1`. Zero is `0`. */
function canonicalDecimal(token: string): string {
  const negative = token.startsWith("-");
  let text = negative ? token.slice(1) : token;
  let exponent = 0;
  const marker = text.search(/[eE]/);
  if (marker >= 0) {
    exponent = Number(text.slice(marker + 1));
    text = text.slice(0, marker);
  }
  const dot = text.indexOf(".");
  if (dot >= 0) {
    exponent -= text.length - dot - 1;
    text = text.slice(0, dot) + text.slice(dot + 1);
  }
  const digits = text.replace(/^0+/, "");
  const significant = digits.replace(/0+$/, "");
  if (significant === "") return negative ? "-0" : "0";
  exponent += digits.length - significant.length;
  return `${negative ? "-" : ""}${significant}e${exponent}`;
}

/** Whether the number token comes back as the same decimal value once parsed into a double and serialized. */
export function isExact(token: string): boolean {
  const value = Number(token);
  if (!Number.isFinite(value)) return false;
  return canonicalDecimal(token) === canonicalDecimal(JSON.stringify(value));
}

/** The JSON Pointer of the value that starts at `offset` in valid JSON text. */
function pointerAt(text: string, offset: number): string {
  const path: Array<{ array: boolean; member: string | number }> = [];
  let expectingKey = false;
  for (let index = 0; index < offset; index += 1) {
    const code = text.charCodeAt(index);
    const top = path.at(-1);
    if (code === 0x22) {
      const end = endOfString(text, index);
      if (top && !top.array && expectingKey) top.member = JSON.parse(text.slice(index, end + 1)) as string;
      index = end;
    } else if (code === 0x3a) {
      expectingKey = false;
    } else if (code === 0x2c) {
      if (top?.array) top.member = (top.member as number) + 1;
      else expectingKey = true;
    } else if (code === 0x7b) {
      path.push({ array: false, member: "" });
      expectingKey = true;
    } else if (code === 0x5b) {
      path.push({ array: true, member: 0 });
    } else if (code === 0x7d || code === 0x5d) {
      path.pop();
    }
  }
  return path.map(({ member }) => `/${String(member).replace(/~/g, "~0").replace(/\//g, "~1")}`).join("");
}

/**
 * The JSON text of `value` with every object's keys in code-unit order: equal for equal content, whatever the
 * key order or mode it was published in. (Written as loops: it is on the publish path of every event.) The
 * digests of stored events are made with it, so its output must never change.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) {
    let text = "[";
    for (let index = 0; index < value.length; index += 1) {
      if (index > 0) text += ",";
      text += canonicalJson(value[index]) ?? "";
    }
    return `${text}]`;
  }
  const object = value as Record<string, unknown>;
  let text = "{";
  let first = true;
  for (const key of Object.keys(object).sort()) {
    const member = object[key];
    if (member === undefined) continue;
    if (!first) text += ",";
    first = false;
    text += `${JSON.stringify(key)}:${canonicalJson(member)}`;
  }
  return `${text}}`;
}
