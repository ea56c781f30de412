/**
 * A sequence in text, as every channel carries it (`after`, `sequence`, the SSE id, `Last-Event-ID`, pings): a
 * decimal string without sign or leading zeros. At most 16 digits, so that every one is below 2^53 and exact as a
 * JavaScript number. The OpenAPI document publishes this same pattern.
 */
export const SEQUENCE_PATTERN = "^(0|[1-9][0-9]{0,15})$";

const SEQUENCE = new RegExp(SEQUENCE_PATTERN);

/** The sequence a text names, or undefined when it is not one. */
export function parseSequence(value: string | undefined): number | undefined {
  if (value === undefined || !SEQUENCE.test(value)) return undefined;
  const number = Number(value);
  return Number.isSafeInteger(number) ? number : undefined;
}
