/**
 * What a schema's rules cost against data made to be slow, seintje's ajv beside ajv as it comes: `uniqueItems`
 * over 16,000 different small objects, and the pattern `^(a+)+$` against a's and a `!` (ajv as it comes gets
 * 24 to 26 of them: each further one doubles its time). A probe, no baseline run: `node --import tsx
 * bench/schema-probe.ts`.
 */
import { Ajv2020 } from "ajv/dist/2020.js";
import { compileSchema } from "../src/events/schema.js";

function time(name: string, validate: (value: unknown) => unknown, value: unknown): void {
  const start = performance.now();
  validate(value);
  console.log(`${name}: ${(performance.now() - start).toFixed(1)} ms`);
}

const unique = { type: "array", uniqueItems: true };
const items = Array.from({ length: 16_000 }, (_, index) => ({ k: index }));
time("uniqueItems, 16,000 objects, seintje", compileSchema(unique), items);
time("uniqueItems, 16,000 objects, ajv as it comes", new Ajv2020().compile(unique), items);

const nested = { type: "string", pattern: "^(a+)+$" };
time("^(a+)+$ against 10,000 a's and a !, seintje", compileSchema(nested), `${"a".repeat(10_000)}!`);
for (const count of [24, 25, 26]) {
  time(
    `^(a+)+$ against ${count} a's and a !, ajv as it comes`,
    new Ajv2020().compile(nested),
    `${"a".repeat(count)}!`,
  );
}
