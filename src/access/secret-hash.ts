import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * API tokens and session ids are 256 random bits, so a plain SHA-256 of them cannot be searched
 * backwards and a lookup by hash costs one hash per request (no slow KDF on the hot path; device tokens are
 * checked the same way, with a keyed HMAC-SHA-256, in registry/device-token.ts).
 */
export function newSecret(prefix: string): string {
  return `${prefix}${randomBytes(32).toString('base64url')}`;
}

/** Hex SHA-256 of a high-entropy secret: what the database stores and is looked up by. */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** Constant-time comparison of two secrets of any length. */
export function secretEquals(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}
