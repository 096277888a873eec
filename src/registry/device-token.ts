import { randomBytes, scrypt as scryptCb, timingSafeEqual, createHash, type ScryptOptions } from 'node:crypto';

/**
 * Device tokens: 192 random bits, shown once at provisioning, stored only as a salted scrypt hash.
 * Format of the stored hash: `scrypt$<N>$<r>$<p>$<salt b64>$<hash b64>` so parameters can rise later
 * without invalidating old hashes.
 */
// The token is 192 random bits, not a password: brute force is out of reach whatever the work factor.
// scrypt's cost is only there so a stolen database row is useless; N = 2^11 (~6 ms here) keeps a
// reconnect storm of a whole fleet after a daemon restart affordable (100k devices ~ 5 CPU minutes).
const DEFAULT = { N: 2048, r: 8, p: 1, keylen: 32 };

function scrypt(password: string, salt: Buffer, keylen: number, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scryptCb(password, salt, keylen, { ...options, maxmem: 64 * 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

export function generateToken(): string {
  return randomBytes(24).toString('base64url');
}

export async function hashToken(token: string, params = DEFAULT): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(token, salt, params.keylen, { N: params.N, r: params.r, p: params.p });
  return `scrypt$${params.N}$${params.r}$${params.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

export async function verifyToken(token: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [, n, r, p, saltB64, hashB64] = parts as [string, string, string, string, string, string];
  const expected = Buffer.from(hashB64, 'base64');
  if (typeof token !== 'string' || token.length === 0 || token.length > 1024) return false;
  const key = await scrypt(token, Buffer.from(saltB64, 'base64'), expected.length, { N: Number(n), r: Number(r), p: Number(p) });
  return key.length === expected.length && timingSafeEqual(key, expected);
}

/** A fast, non-reversible fingerprint for the in-memory cache of already verified tokens. */
export function tokenFingerprint(token: string): string {
  return createHash('sha256').update(token).digest('base64');
}
