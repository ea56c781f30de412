import { randomUUID } from "node:crypto";
import { SignJWT } from "jose";
import { SIGNING_ALGORITHM, type SigningKey } from "./keys.js";

/** Mints a token with the service's own key, as `seintje token` does. */
export async function mintToken(
  key: SigningKey,
  claims: { scope: string; subject: string; ttlSeconds: number; issuer?: string; audience?: string },
): Promise<string> {
  const jwt = new SignJWT({ scope: claims.scope })
    .setProtectedHeader({ alg: SIGNING_ALGORITHM, kid: key.kid, typ: "JWT" })
    .setSubject(claims.subject)
    .setIssuedAt()
    .setJti(randomUUID())
    .setExpirationTime(`${claims.ttlSeconds}s`);
  if (claims.issuer) jwt.setIssuer(claims.issuer);
  if (claims.audience) jwt.setAudience(claims.audience);
  return jwt.sign(key.privateKey);
}

/** A time to live as the CLI takes it: `90s`, `15m`, `1h`, `7d`. */
export function parseTtl(text: string): number | undefined {
  const match = /^(\d{1,7})([smhd])$/.exec(text.trim());
  if (!match) return undefined;
  const seconds = Number(match[1]) * { s: 1, m: 60, h: 3600, d: 86_400 }[match[2] as "s" | "m" | "h" | "d"];
  return seconds > 0 ? seconds : undefined;
}
