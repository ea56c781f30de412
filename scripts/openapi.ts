import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { openApiDocument } from "../src/http/openapi.js";

/**
 * Writes the OpenAPI document the service serves at /v1/openapi.json to a file, for the NL API Design Rules linter
 * (`npm run lint:openapi`): `openapi.ts <file>`.
 */

const file = process.argv[2];
if (!file) {
  console.error("usage: openapi.ts <file>");
  process.exit(2);
}
mkdirSync(dirname(file), { recursive: true });
writeFileSync(file, `${JSON.stringify(openApiDocument(), null, 2)}\n`);
