import { resolve } from "node:path";
import {
  type CryptoKey,
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JWK,
} from "jose";
import { type KeySource, loadKey } from "../files.js";

/**
 * The service's own signing key: an Ed25519 key pair created in the data directory on first start, readable by
 * the service's user only. `seintje token` signs with it; the service verifies with its public half.
 */

export const SIGNING_ALGORITHM = "EdDSA";
export const SIGNING_KEY_FILE = "signing-key.jwk";

export interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

/** A new Ed25519 private key as a JWK, with its thumbprint as kid. */
async function generate(): Promise<string> {
  const { privateKey } = await generateKeyPair(SIGNING_ALGORITHM, { crv: "Ed25519", extractable: true });
  const jwk = await exportJWK(privateKey);
  jwk.kid = await calculateJwkThumbprint(jwk);
  jwk.alg = SIGNING_ALGORITHM;
  jwk.use = "sig";
  return `${JSON.stringify(jwk)}\n`;
}

/**
 * Loads the signing key from `dataDir`, creating it first when there is none (the service does, on first start;
 * `created` says so). Commands that only mint tokens use readSigningKey: a key they made would be one the service
 * does not know.
 */
export async function loadSigningKey(
  dataDir: string,
  source: KeySource = {},
): Promise<SigningKey & { path: string; created: boolean }> {
  const { path, text, created } = await loadKey(dataDir, SIGNING_KEY_FILE, source, generate);
  return { ...(await parseSigningKey(path, text)), path, created };
}

/**
 * The service's signing key: from SEINTJE_SIGNING_KEY(_FILE) when `source` says so, else from `dataDir`, where it
 * must exist; MissingSigningKey says where it was looked for.
 */
export async function readSigningKey(dataDir: string, source: KeySource = {}): Promise<SigningKey> {
  let loaded: { path: string; text: string };
  try {
    loaded = await loadKey(dataDir, SIGNING_KEY_FILE, source, undefined);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      throw new MissingSigningKey(resolve(dataDir, SIGNING_KEY_FILE));
    }
    throw error;
  }
  return parseSigningKey(loaded.path, loaded.text);
}

export class MissingSigningKey extends Error {
  constructor(readonly path: string) {
    super(
      `no signing key at ${path}: the service creates it in its data directory on first start. Run this where ` +
        "the service runs, or name its data directory with --data-dir DIR or SEINTJE_DATA_DIR.",
    );
    this.name = "MissingSigningKey";
  }
}

async function parseSigningKey(path: string, text: string): Promise<SigningKey> {
  let jwk: JWK;
  try {
    jwk = JSON.parse(text) as JWK;
  } catch {
    throw new Error(`${path} does not hold a JWK (JSON)`);
  }
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

/**
 * The signing key a rotation replaced, from SEINTJE_SIGNING_KEY_PREVIOUS(_FILE): only its public half is kept (a
 * private JWK is accepted, and its `d` dropped at once), with its thumbprint as `kid` when it has none. Undefined
 * when none is configured.
 */
export async function loadPreviousSigningKey(source: KeySource): Promise<JWK | undefined> {
  if (source.text === undefined && source.file === undefined) return undefined;
  const { path, text } = await loadKey("", SIGNING_KEY_FILE, source, undefined);
  let jwk: JWK;
  try {
    jwk = JSON.parse(text) as JWK;
  } catch {
    throw new Error(`${path} does not hold a JWK (JSON)`);
  }
  if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || typeof jwk.x !== "string") {
    throw new Error(`${path} does not hold an Ed25519 key`);
  }
  const { d: _private, ...publicJwk } = jwk;
  publicJwk.kid ??= await calculateJwkThumbprint(publicJwk);
  publicJwk.alg = SIGNING_ALGORITHM;
  publicJwk.use = "sig";
  // Importing it checks that it is a usable key.
  await importJWK(publicJwk, SIGNING_ALGORITHM);
  return publicJwk;
}
