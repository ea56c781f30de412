import type { ParsedUrlQuery } from "node:querystring";
import { HttpProblem } from "../errors.js";

/** Query parameters: absent gives the default, malformed is a 400 naming the parameter. Unknown ones are ignored. */

function single(query: ParsedUrlQuery, name: string): string | undefined {
  const value = query[name];
  if (Array.isArray(value)) {
    throw new HttpProblem(400, "badRequest", `The query parameter "${name}" may appear only once.`, {
      parameter: name,
    });
  }
  return value;
}

const SEQUENCE = /^(0|[1-9][0-9]{0,15})$/;

/** A sequence as a cursor: a decimal string without sign or leading zeros. */
export function parseSequence(value: string | undefined): number | undefined {
  if (value === undefined || !SEQUENCE.test(value)) return undefined;
  const number = Number(value);
  return Number.isSafeInteger(number) ? number : undefined;
}

export function cursorParameter(query: ParsedUrlQuery, name = "after"): number | undefined {
  const raw = query[name];
  if (raw === undefined) return undefined;
  const sequence = Array.isArray(raw) ? undefined : parseSequence(raw);
  if (sequence === undefined) {
    throw new HttpProblem(
      400,
      "invalidCursor",
      `"${name}" must be a sequence: a non-negative decimal integer.`,
      {
        parameter: name,
      },
    );
  }
  return sequence;
}

export function integerParameter(
  query: ParsedUrlQuery,
  name: string,
  fallback: number,
  min: number,
  max: number,
): number {
  const raw = single(query, name);
  if (raw === undefined) return fallback;
  const value = /^\d{1,6}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(value >= min && value <= max)) {
    throw new HttpProblem(400, "badRequest", `"${name}" must be a whole number from ${min} to ${max}.`, {
      parameter: name,
    });
  }
  return value;
}

/** Seconds, whole or decimal, from 0 to max. */
export function secondsParameter(query: ParsedUrlQuery, name: string, max: number): number {
  const raw = single(query, name);
  if (raw === undefined) return 0;
  const value = /^\d{1,3}(\.\d{1,3})?$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(value >= 0 && value <= max)) {
    throw new HttpProblem(400, "badRequest", `"${name}" must be a number of seconds from 0 to ${max}.`, {
      parameter: name,
    });
  }
  return value;
}

export function stringParameter(query: ParsedUrlQuery, name: string): string | undefined {
  const raw = single(query, name);
  if (raw === "")
    throw new HttpProblem(400, "badRequest", `"${name}" must not be empty.`, { parameter: name });
  return raw;
}

/** A repeatable parameter: `type=a&type=b`. */
export function listParameter(query: ParsedUrlQuery, name: string): string[] {
  const raw = query[name];
  const values = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
  if (values.some((value) => value === "")) {
    throw new HttpProblem(400, "badRequest", `"${name}" must not be empty.`, { parameter: name });
  }
  return values;
}
