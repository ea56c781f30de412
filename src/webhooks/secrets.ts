import { createCipheriv, createDecipheriv, createHmac, generateKeyPairSync, randomBytes } from "node:crypto";
import type { Storage } from "../db/database.js";
import { settleSetting } from "../db/settings.js";
import { type KeySource, loadKey } from "../files.js";

/**
 * Webhook secrets. A secret is `whsec_` + base64 of 32 random bytes (crypto.randomBytes, a CSPRNG), the form
 * Standard Webhooks libraries read. HMAC signing needs the secret itself, so it cannot be hashed like a password;
 * instead it is sealed with AES-256-GCM under a key that lives in the data directory (`webhook-secrets.key`,
 * mode 0600), never in the database. A dump of the database alone gives no secret. The subscription's id is the
 * additional authenticated data, so a sealed secret copied to another row does not open.
 */

const PREFIX = "whsec_";
const SECRET_BYTES = 32;
const KEY_FILE = "webhook-secrets.key";
const SEALED = "v1";

export function generateSecret(): string {
  return PREFIX + randomBytes(SECRET_BYTES).toString("base64");
}

/**
 * An Ed25519 key pair for `v1a` pings (Standard Webhooks asymmetric): the private key as `whsk_` + base64 of its
 * PKCS #8 form, sealed like a secret and never shown, and the public key as `whpk_` + base64 of its 32 bytes.
 */
export function generateSigningKeyPair(): { privateKey: string; publicKey: string } {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const raw = publicKey.export({ format: "der", type: "spki" }).subarray(-32);
  return {
    privateKey: `whsk_${privateKey.export({ format: "der", type: "pkcs8" }).toString("base64")}`,
    publicKey: `whpk_${raw.toString("base64")}`,
  };
}

export class SecretBox {
  private constructor(
    private readonly key: Buffer,
    /** Where the key is, for messages. */
    readonly path: string,
  ) {}

  /**
   * Loads the sealing key: from SEINTJE_SECRETS_KEY(_FILE) when `source` says so, else from `dataDir`, where it is
   * created on first use (`created` is told its path).
   */
  static async open(
    dataDir: string,
    created?: (path: string) => void,
    source: KeySource = {},
  ): Promise<SecretBox> {
    const {
      path,
      text,
      created: isNew,
    } = await loadKey(dataDir, KEY_FILE, source, () => `${randomBytes(32).toString("base64")}\n`);
    const key = Buffer.from(text.trim(), "base64");
    if (key.length !== 32) throw new Error(`${path} does not hold a 256-bit key (base64 of 32 bytes)`);
    if (isNew) created?.(path);
    return new SecretBox(key, path);
  }

  /** A value that tells keys apart without revealing them (an HMAC of a fixed text under the key). */
  checkValue(): string {
    return createHmac("sha256", this.key).update("seintje webhook-secrets.key check v1").digest("base64url");
  }

  seal(secret: string, subscriptionId: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.key, iv);
    cipher.setAAD(Buffer.from(subscriptionId));
    const ciphertext = Buffer.concat([cipher.update(secret, "utf8"), cipher.final()]);
    return `${SEALED}:${Buffer.concat([iv, cipher.getAuthTag(), ciphertext]).toString("base64")}`;
  }

  /** Throws when the sealed text was not sealed with this key for this subscription. */
  open(sealed: string, subscriptionId: string): string {
    const [version, payload] = sealed.split(":");
    if (version !== SEALED || payload === undefined) throw new Error("unknown sealed secret format");
    const bytes = Buffer.from(payload, "base64");
    const decipher = createDecipheriv("aes-256-gcm", this.key, bytes.subarray(0, 12));
    decipher.setAAD(Buffer.from(subscriptionId));
    decipher.setAuthTag(bytes.subarray(12, 28));
    return Buffer.concat([decipher.update(bytes.subarray(28)), decipher.final()]).toString("utf8");
  }
}

const KEY_CHECK = "webhook-secrets-key-check";

/**
 * Makes sure every process on one database seals with the same key. The first process records the key's check
 * value in the database; a process whose key differs (a second node given a fresh data dir, a key restored from
 * the wrong backup) refuses to start rather than seal secrets that the others cannot open. Does nothing before
 * the migration that makes the settings table has run.
 */
export async function checkSealingKey(storage: Storage, box: SecretBox): Promise<void> {
  if (!(await storage.reader.schema.hasTable("settings"))) return;
  const recorded = await settleSetting(storage.writer, KEY_CHECK, box.checkValue(), Date.now());
  if (recorded !== box.checkValue()) throw new SealingKeyMismatch(box.path);
}

/** The data dir's sealing key is not the one the database's secrets are sealed with. */
export class SealingKeyMismatch extends Error {
  constructor(readonly path: string) {
    super(
      `${path} is not the key that this database's webhook secrets are sealed with. Every process on one ` +
        "database needs the same webhook-secrets.key: copy it from the data dir of the node that created the database.",
    );
    this.name = "SealingKeyMismatch";
  }
}
