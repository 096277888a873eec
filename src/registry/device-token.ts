import { randomBytes, scrypt as scryptCb, timingSafeEqual, createHmac, type ScryptOptions } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../log.js';

/**
 * Device tokens (issue 12 "Cheap, safe device auth"): 192 random bits, shown once at provisioning and
 * stored as `hmac-sha256$<base64 digest>`, the HMAC-SHA-256 of the token under a server key kept in the
 * data dir (`device-token.key`, mode 0600).
 *
 * Why not a slow KDF: scrypt and friends protect low-entropy passwords from offline guessing. A 192-bit
 * random token is out of reach of guessing whatever the work factor, and a keyed hash makes a stolen
 * database row useless without the key file. What a slow KDF did cost was ~6 ms of CPU per first
 * CONNECT, so a fleet of 5,000 reconnecting after a restart took 19 s to get in (issue 12).
 *
 * Rows written before this change hold `scrypt$<N>$<r>$<p>$<salt b64>$<hash b64>`; they still verify
 * (once, slowly) and the registry rewrites them as HMAC on the device's next successful CONNECT.
 */

/** The 32-byte server key every stored device-token digest depends on. */
export type TokenKey = Buffer;

const HMAC_PREFIX = 'hmac-sha256$';
/** The key file's name in the data dir (instances of one cluster on several hosts each need a copy). */
export const KEY_FILE = 'device-token.key';
const DIGEST_BYTES = 32;
// Tokens are 32 characters; anything far longer is not one of ours and is not worth hashing.
const MAX_TOKEN_CHARS = 1024;

/** A new device token: 24 random bytes (192 bits), base64url (32 characters). */
export function generateToken(): string {
  return randomBytes(24).toString('base64url');
}

/**
 * The server key from `<dataDir>/device-token.key`, generated (32 random bytes, hex, mode 0600) on first
 * start. A key file readable by others is narrowed to 0600 with a warning. Losing the file invalidates
 * every device token (they must be rotated), so it belongs in backups next to the database.
 * Throws when the file exists but does not hold a 32-byte hex key: a silently regenerated key would lock
 * out the whole fleet.
 */
export function loadTokenKey(dataDir: string, log: Logger): TokenKey {
  const file = join(dataDir, KEY_FILE);
  if (existsSync(file)) {
    const mode = statSync(file).mode & 0o777;
    if ((mode & 0o077) !== 0) {
      chmodSync(file, 0o600);
      log.warn({ path: file, mode: mode.toString(8) }, 'device token key was readable by others; narrowed to 0600');
    }
    const hex = readFileSync(file, 'utf8').trim();
    if (!/^[0-9a-f]{64}$/i.test(hex)) throw new Error(`${file}: expected a 32-byte hex key; restore it from backup (or remove it and rotate every device token)`);
    return Buffer.from(hex, 'hex');
  }
  mkdirSync(dataDir, { recursive: true });
  const key = randomBytes(DIGEST_BYTES);
  writeFileSync(file, `${key.toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
  chmodSync(file, 0o600);
  log.info({ path: file }, 'generated device token key');
  return key;
}

/** HMAC-SHA-256 of the token under the key: always 32 bytes, whatever the token's length. */
export function tokenDigest(key: TokenKey, token: string): Buffer {
  return createHmac('sha256', key).update(token.length > MAX_TOKEN_CHARS ? token.slice(0, MAX_TOKEN_CHARS) : token).digest();
}

/** The stored form of a token: `hmac-sha256$<base64 digest>`. */
export function hashTokenHmac(key: TokenKey, token: string): string {
  return HMAC_PREFIX + tokenDigest(key, token).toString('base64');
}

/** The digest inside a stored `hmac-sha256$...` value, or undefined for any other form. */
export function storedDigest(stored: string): Buffer | undefined {
  if (!stored.startsWith(HMAC_PREFIX)) return undefined;
  const digest = Buffer.from(stored.slice(HMAC_PREFIX.length), 'base64');
  return digest.length === DIGEST_BYTES ? digest : undefined;
}

/**
 * Constant-time check of a presented token against a stored digest: one HMAC and one
 * `timingSafeEqual` over 32 bytes, so the time taken does not depend on where a wrong token
 * differs or on its length (beyond the HMAC's block count for tokens over 64 bytes).
 */
export function digestMatches(key: TokenKey, token: string, expected: Buffer): boolean {
  const presented = tokenDigest(key, token);
  return timingSafeEqual(presented, expected) && token.length <= MAX_TOKEN_CHARS;
}

/** True for a stored value in the pre-issue-12 scrypt format (verified once, then migrated). */
export function isScryptHash(stored: string): boolean {
  return stored.startsWith('scrypt$');
}

// ---- legacy scrypt (read-only: verifies rows stored before issue 12) ----

const SCRYPT_DEFAULT = { N: 2048, r: 8, p: 1, keylen: 32 };

function scrypt(password: string, salt: Buffer, keylen: number, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scryptCb(password, salt, keylen, { ...options, maxmem: 64 * 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

/**
 * A token in the legacy `scrypt$N$r$p$salt$hash` form. Only tests and the benchmark's "before" fleet
 * write it now; the daemon writes HMAC.
 */
export async function hashTokenScrypt(token: string, params = SCRYPT_DEFAULT): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(token, salt, params.keylen, { N: params.N, r: params.r, p: params.p });
  return `scrypt$${params.N}$${params.r}$${params.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/** Verifies a token against a legacy scrypt hash (in libuv's thread pool, ~6 ms at N = 2^11). */
export async function verifyTokenScrypt(token: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [, n, r, p, saltB64, hashB64] = parts as [string, string, string, string, string, string];
  const expected = Buffer.from(hashB64, 'base64');
  if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_CHARS) return false;
  const key = await scrypt(token, Buffer.from(saltB64, 'base64'), expected.length, { N: Number(n), r: Number(r), p: Number(p) });
  return key.length === expected.length && timingSafeEqual(key, expected);
}
