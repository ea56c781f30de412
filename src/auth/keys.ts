import { chmodSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  type CryptoKey,
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JWK,
} from "jose";
import { createPrivateFile } from "../files.js";

/**
 * The service's own signing key: an Ed25519 key pair created in the data directory on first start, readable by
 * the service's user only. `seintje token` signs with it; the service verifies with its public half.
 */

export const SIGNING_ALGORITHM = "EdDSA";
const FILE = "signing-key.jwk";

export interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

async function create(path: string): Promise<void> {
  const { privateKey } = await generateKeyPair(SIGNING_ALGORITHM, { crv: "Ed25519", extractable: true });
  const jwk = await exportJWK(privateKey);
  jwk.kid = await calculateJwkThumbprint(jwk);
  jwk.alg = SIGNING_ALGORITHM;
  jwk.use = "sig";
  createPrivateFile(path, `${JSON.stringify(jwk)}\n`);
}

/** Loads the signing key from `dataDir`, creating it first when there is none. */
export async function loadSigningKey(dataDir: string): Promise<SigningKey> {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const path = join(dataDir, FILE);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    await create(path);
    text = readFileSync(path, "utf8");
  }
  chmodSync(path, 0o600);
  const jwk = JSON.parse(text) as JWK;
  if (
    jwk.kty !== "OKP" ||
    jwk.crv !== "Ed25519" ||
    typeof jwk.d !== "string" ||
    typeof jwk.kid !== "string"
  ) {
    throw new Error(`${path} does not hold an Ed25519 private key`);
  }
  const privateKey = (await importJWK(jwk, SIGNING_ALGORITHM)) as CryptoKey;
  const { d: _private, ...publicJwk } = jwk;
  return { kid: jwk.kid, privateKey, publicJwk };
}
