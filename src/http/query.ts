import type { ParsedUrlQuery } from "node:querystring";
import { HttpProblem } from "../errors.js";
import { parseSequence } from "../log/sequence.js";

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

/** `limit`: a whole number from 1 to `limits.max`, `limits.default` when absent. */
export function limitParameter(query: ParsedUrlQuery, limits: { default: number; max: number }): number {
  return integerParameter(query, "limit", limits.default, 1, limits.max);
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

/** A text of 1 to `maxLength` characters. */
export function stringParameter(query: ParsedUrlQuery, name: string, maxLength: number): string | undefined {
  const raw = single(query, name);
  if (raw !== undefined) checkText(name, raw, maxLength);
  return raw;
}

/** A repeatable parameter, `type=a&type=b`: at most `maxCount` values of 1 to `maxLength` characters. */
export function listParameter(
  query: ParsedUrlQuery,
  name: string,
  maxCount: number,
  maxLength: number,
): string[] {
  const raw = query[name];
  const values = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
  if (values.length > maxCount) {
    throw new HttpProblem(400, "badRequest", `"${name}" may be given at most ${maxCount} times.`, {
      parameter: name,
    });
  }
  for (const value of values) checkText(name, value, maxLength);
  return values;
}

function checkText(name: string, value: string, maxLength: number): void {
  if (value === "" || value.length > maxLength) {
    throw new HttpProblem(400, "badRequest", `"${name}" must be 1 to ${maxLength} characters long.`, {
      parameter: name,
    });
  }
}
