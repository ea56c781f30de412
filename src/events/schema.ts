import type { SchemaValidateFunction } from "ajv";
import { Ajv2020, type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js";
import formats from "ajv-formats";
import { RE2JS } from "re2js";
import type { Pointed } from "../errors.js";
import { canonicalJson } from "../json.js";

/**
 * JSON Schemas (draft 2020-12) of event data, with ajv: compiled once per schema into a function, never per
 * request. Each schema gets an Ajv instance of its own (half a millisecond), so two types whose schemas carry the
 * same `$id` cannot collide, and nothing one schema registers is visible to another. No schema is ever fetched:
 * a `$ref` that points outside the schema does not compile.
 */

// ajv-formats is CommonJS: the default import is its module.exports, whose `default` is the plugin.
const addFormats = formats.default;

/** A compiled schema: whether a value matches, and where it does not. */
export type DataValidator = ValidateFunction;

/**
 * The regular expressions of schemas (`pattern`, `patternProperties`) run on RE2 (re2js), whose matching takes time
 * linear in the text, not on JavaScript's backtracking RegExp. A pattern is an admin's, the text any publisher's:
 * `^(a+)+$` against 28 `a`s and a `!` held the event loop for 8 s, and with it every client of the service; each
 * further `a` doubles that. RE2 has no backreferences and no lookahead: a pattern with either does not compile, and
 * its type is refused when it is declared. ajv keeps one compiled pattern per text (`toString` is its key).
 */
function linearRegExp(
  pattern: string,
  _unicode: string,
): { test(text: string): boolean; toString(): string } {
  const compiled = RE2JS.compile(RE2JS.translateRegExp(pattern));
  return { test: (text) => compiled.test(text), toString: () => `re2:${pattern}` };
}
// What ajv writes for it in standalone code, which seintje does not generate.
linearRegExp.code = "linearRegExp";

/**
 * `uniqueItems` by each item's canonical JSON, looked up in a map from it to the item's index, which takes time
 * linear in the array. ajv's own compares every pair of items that are objects or arrays: 16,000 small objects,
 * all different, took it 2.9 s, and one request may carry sixteen events of 64 KiB. Two items are the same when
 * their JSON is, whatever the key order, as ajv's deep equality has it. The error is ajv's, with the same message
 * and parameters.
 */
function linearUniqueItems(ajv: Ajv2020): void {
  const unique: SchemaValidateFunction = (required: boolean, items: unknown[]) => {
    unique.errors = [];
    if (!required) return true;
    const seen = new Map<string, number>();
    for (let index = 0; index < items.length; index += 1) {
      const text = canonicalJson(items[index]);
      const earlier = seen.get(text);
      if (earlier !== undefined) {
        unique.errors = [
          {
            keyword: "uniqueItems",
            message: `must NOT have duplicate items (items ## ${earlier} and ${index} are identical)`,
            params: { i: index, j: earlier },
          },
        ];
        return false;
      }
      seen.set(text, index);
    }
    return true;
  };
  ajv.removeKeyword("uniqueItems");
  ajv.addKeyword({
    keyword: "uniqueItems",
    type: "array",
    schemaType: "boolean",
    errors: true,
    validate: unique,
  });
}

function newAjv(allErrors: boolean, warnings: string[]): Ajv2020 {
  // strict: false accepts keywords ajv does not know (annotations such as `example`), as JSON Schema says.
  // A schema ajv could only half enforce (an unknown format) is refused by collecting ajv's warnings.
  const ajv = new Ajv2020({
    strict: false,
    allErrors,
    code: { regExp: linearRegExp },
    logger: { log: () => {}, warn: (message: unknown) => warnings.push(String(message)), error: () => {} },
  });
  addFormats(ajv);
  linearUniqueItems(ajv);
  return ajv;
}

/** The JSON Pointer of an ajv error, with the member a `required` or `additionalProperties` error is about. */
function pointerOf(error: ErrorObject, prefix: string): string {
  const member =
    error.keyword === "required"
      ? (error.params as { missingProperty: string }).missingProperty
      : error.keyword === "additionalProperties"
        ? (error.params as { additionalProperty: string }).additionalProperty
        : undefined;
  const escaped = member === undefined ? "" : `/${member.replace(/~/g, "~0").replace(/\//g, "~1")}`;
  return `${prefix}${error.instancePath}${escaped}`;
}

function detailOf(error: ErrorObject): string {
  if (error.keyword === "required") return "is required by the type's schema";
  if (error.keyword === "additionalProperties") return "is not allowed by the type's schema";
  return `${error.message ?? "does not match"} (schema ${error.schemaPath})`;
}

/** Where `value` does not match, each error pointing under `prefix` (such as `/data` or `/3/data`). */
export function mismatches(validate: DataValidator, value: unknown, prefix: string): Pointed[] {
  if (validate(value)) return [];
  return (validate.errors ?? []).map((error) => ({
    pointer: pointerOf(error, prefix),
    detail: detailOf(error),
  }));
}

/** A compile warning such as `unknown format "bsn" ignored in schema at path "#/properties/a"`, as a pointer. */
function warningPointer(warning: string, prefix: string): string {
  const path = /at path "#([^"]*)"/.exec(warning)?.[1];
  return path === undefined ? prefix : `${prefix}${path}`;
}

/**
 * Compiles a schema for publishing: the first mismatch is enough to refuse an event, and ajv's documentation
 * advises against `allErrors` on data from outside. Throws when the schema does not compile (the admin's check,
 * `checkSchema`, comes first).
 */
export function compileSchema(schema: unknown): DataValidator {
  return newAjv(false, []).compile(schema as object);
}

/**
 * Checks a schema an admin sends: that it is a valid draft 2020-12 schema, compiles without fetching anything,
 * and that ajv can enforce all of it. Problems point under `prefix` (`/schema`). With `example`, also checks the
 * example against it, every mismatch pointing under `/example`.
 */
export function checkSchema(
  schema: unknown,
  prefix: string,
  example?: { value: unknown; prefix: string },
): Pointed[] {
  if (
    typeof schema !== "boolean" &&
    (typeof schema !== "object" || schema === null || Array.isArray(schema))
  ) {
    return [{ pointer: prefix, detail: "must be a JSON Schema: an object or a boolean" }];
  }
  const warnings: string[] = [];
  const ajv = newAjv(true, warnings);
  let valid: boolean;
  try {
    valid = ajv.validateSchema(schema as object) as boolean;
  } catch (error) {
    // A `$schema` naming another draft, which this service does not take.
    return [{ pointer: `${prefix}/$schema`, detail: `must name draft 2020-12: ${(error as Error).message}` }];
  }
  if (!valid) {
    return (ajv.errors ?? []).map((error) => ({
      pointer: `${prefix}${error.instancePath}`,
      detail: `${error.message ?? "is invalid"} (draft 2020-12 meta-schema)`,
    }));
  }
  let validate: DataValidator;
  try {
    validate = ajv.compile(schema as object);
  } catch (error) {
    return [{ pointer: prefix, detail: `does not compile: ${(error as Error).message}` }];
  }
  if (warnings.length > 0) {
    // ajv may report one warning more than once.
    return [...new Set(warnings)].map((warning) => ({
      pointer: warningPointer(warning, prefix),
      detail: `cannot be enforced: ${warning}`,
    }));
  }
  return example === undefined ? [] : mismatches(validate, example.value, example.prefix);
}
