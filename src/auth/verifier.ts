import { readFileSync } from "node:fs";
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeProtectedHeader,
  errors,
  type JSONWebKeySet,
  type JWK,
  type JWTPayload,
  type JWTVerifyGetKey,
  jwtVerify,
} from "jose";
import { type Grant, parseScope } from "./grants.js";
import type { SigningKey } from "./keys.js";

/**
 * Verifies bearer tokens with jose against the service's own key, a local JWKS file and a remote JWKS URL (cached
 * and refreshed by jose: refetched when a token names an unknown `kid`, at most once per cooldown).
 */

export interface Principal {
  subject: string | undefined;
  grants: Grant[];
  /** When the token expires, epoch ms. */
  expiresAt: number | undefined;
}

export interface VerifierOptions {
  signingKey: SigningKey;
  jwksFile?: string | undefined;
  jwksUrl?: string | undefined;
  algorithms: string[];
  issuer?: string | undefined;
  audience?: string | undefined;
  /** Least time between two fetches of the remote JWKS triggered by unknown keys. */
  jwksCooldownMs: number;
  /** The signing key a rotation replaced: it verifies while `accepts(now)` says so (see `retire`). */
  previousKey?: JWK | undefined;
}

/** Tolerated clock difference for exp and nbf. */
export const CLOCK_SKEW_SECONDS = 30;

/**
 * A verified token is remembered this long (never past its `exp`), so a client that sends the same token with
 * every request is verified once a minute rather than each time: the signature check was about 7 % of the
 * service's time when publishing single events (an EdDSA verify through WebCrypto per request). A key taken out of
 * the JWKS stops being accepted within this time.
 */
export const VERIFIED_TOKEN_MS = 60_000;
/** At most this many verified tokens are remembered; the oldest are forgotten first. */
const VERIFIED_TOKENS = 10_000;

/** The token is not acceptable; `description` says why without echoing the token. */
export class InvalidToken extends Error {
  constructor(readonly description: string) {
    super(description);
    this.name = "InvalidToken";
  }
}

/** The keys needed to check the token could not be fetched: the client's token may be fine. */
export class KeysUnavailable extends Error {
  constructor(cause: unknown) {
    super("the keys to verify tokens could not be fetched", { cause });
    this.name = "KeysUnavailable";
  }
}

function readJwksFile(path: string): JSONWebKeySet {
  const parsed = JSON.parse(readFileSync(path, "utf8")) as JSONWebKeySet;
  if (!Array.isArray(parsed?.keys)) throw new Error(`${path} is not a JWKS: it has no "keys" array`);
  return parsed;
}

export class TokenVerifier {
  private readonly local: JWTVerifyGetKey;
  private readonly remote: JWTVerifyGetKey | undefined;
  /** Tokens verified lately, with until when their verification stands (epoch ms). */
  private readonly verified = new Map<string, { principal: Principal; until: number }>();

  /** Whether the previous signing key still verifies at a moment; until `retire` says otherwise, it does. */
  private previousAccepted: (now: number) => boolean = () => true;

  constructor(private readonly options: VerifierOptions) {
    const keys = [
      options.signingKey.publicJwk,
      ...(options.previousKey ? [options.previousKey] : []),
      ...(options.jwksFile ? readJwksFile(options.jwksFile).keys : []),
    ];
    this.local = createLocalJWKSet({ keys });
    this.remote = options.jwksUrl
      ? createRemoteJWKSet(new URL(options.jwksUrl), {
          cooldownDuration: options.jwksCooldownMs,
          timeoutDuration: 5000,
        })
      : undefined;
  }

  /** Sets when the previous signing key stops verifying: `accepts(now)` is false from then on. */
  retire(accepts: (now: number) => boolean): void {
    this.previousAccepted = accepts;
  }

  /** The public keys that verify now: the service's own, and the previous one during its overlap. */
  publicKeys(now = Date.now()): JWK[] {
    const previous = this.options.previousKey;
    return [this.options.signingKey.publicJwk, ...(previous && this.previousAccepted(now) ? [previous] : [])];
  }

  private isPrevious(token: string): boolean {
    const previous = this.options.previousKey;
    if (!previous) return false;
    try {
      return decodeProtectedHeader(token).kid === previous.kid;
    } catch {
      return false;
    }
  }

  private readonly resolveKey: JWTVerifyGetKey = async (header, token) => {
    try {
      return await this.local(header, token);
    } catch (error) {
      if (!this.remote || !(error instanceof errors.JWKSNoMatchingKey)) throw error;
      return this.remote(header, token);
    }
  };

  async verify(token: string, now = Date.now()): Promise<Principal> {
    const known = this.verified.get(token);
    if (known && now < known.until) return known.principal;
    if (known) this.verified.delete(token);
    const previous = this.isPrevious(token);
    if (previous && !this.previousAccepted(now)) {
      throw new InvalidToken("the token is signed with a signing key that has been retired");
    }
    const principal = await this.verifyNow(token, now);
    // A token of the previous key is verified each time: its key may retire at any moment.
    if (previous) return principal;
    // jose accepts a token until exp plus the clock skew; so may the memory of having verified it.
    const expires = (principal.expiresAt ?? now) + CLOCK_SKEW_SECONDS * 1000;
    this.verified.set(token, { principal, until: Math.min(now + VERIFIED_TOKEN_MS, expires) });
    if (this.verified.size > VERIFIED_TOKENS) this.verified.delete(this.verified.keys().next().value!);
    return principal;
  }

  private async verifyNow(token: string, now: number): Promise<Principal> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.resolveKey, {
        algorithms: this.options.algorithms,
        issuer: this.options.issuer,
        audience: this.options.audience,
        clockTolerance: CLOCK_SKEW_SECONDS,
        requiredClaims: ["exp"],
        currentDate: new Date(now),
      }));
    } catch (error) {
      throw describe(error);
    }
    return {
      subject: typeof payload.sub === "string" ? payload.sub : undefined,
      grants: parseScope(payload.scope),
      expiresAt: typeof payload.exp === "number" ? payload.exp * 1000 : undefined,
    };
  }
}

function describe(error: unknown): InvalidToken | KeysUnavailable {
  if (error instanceof errors.JWTExpired) return new InvalidToken("the token has expired");
  if (error instanceof errors.JWTClaimValidationFailed) {
    return new InvalidToken(`the token's "${error.claim}" claim is not accepted`);
  }
  if (error instanceof errors.JOSEAlgNotAllowed)
    return new InvalidToken("the token's algorithm is not allowed");
  if (error instanceof errors.JWSSignatureVerificationFailed)
    return new InvalidToken("the token's signature does not verify");
  if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) {
    return new InvalidToken("no known key matches the token");
  }
  if (error instanceof errors.JWKSTimeout || error instanceof errors.JWKSInvalid)
    return new KeysUnavailable(error);
  // The remote JWKS answered with an error status, or could not be reached at all.
  if (error instanceof Error && /Expected 200 OK|fetch failed/.test(error.message))
    return new KeysUnavailable(error);
  return new InvalidToken("the token is malformed");
}
