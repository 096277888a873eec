import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { PatchError } from './patch-error.js';

/**
 * Ed25519 over the exact manifest bytes with node:crypto (PROTOCOL.md "PatchOffer"). Keys are PEM
 * (SPKI public, PKCS#8 private) so `openssl pkeyutl -rawin` signs and verifies the same bytes.
 */
export interface PinnedKey {
  keyId: string;
  key: KeyObject;
}

export interface SignatureEntry {
  /** Names the signer; optional for the offer's single `signature` (then every pinned key is tried). */
  keyId?: string;
  /** Base64 of the 64-byte Ed25519 signature. */
  signature: string;
}

/** First 16 hex of sha256 of the SPKI DER encoding of the public key. */
export function keyIdOf(publicKey: KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('hex').slice(0, 16);
}

function requireEd25519(key: KeyObject, what: string): KeyObject {
  if (key.asymmetricKeyType !== 'ed25519') throw new PatchError('KEY_INVALID', `${what}: not an Ed25519 key (${key.asymmetricKeyType})`, 'fatal');
  return key;
}

export function publicKeyFromPem(pem: string | Buffer, what = 'public key'): KeyObject {
  try {
    return requireEd25519(createPublicKey(pem), what);
  } catch (err) {
    if (err instanceof PatchError) throw err;
    throw new PatchError('KEY_INVALID', `${what}: not a PEM public key`, 'fatal', { cause: err });
  }
}

export function privateKeyFromPem(pem: string | Buffer, what = 'private key'): KeyObject {
  try {
    return requireEd25519(createPrivateKey(pem), what);
  } catch (err) {
    if (err instanceof PatchError) throw err;
    throw new PatchError('KEY_INVALID', `${what}: not a PEM private key`, 'fatal', { cause: err });
  }
}

export function loadPublicKey(path: string): PinnedKey {
  const key = publicKeyFromPem(readFileSync(path), path);
  return { keyId: keyIdOf(key), key };
}

export function loadPrivateKey(path: string): KeyObject {
  return privateKeyFromPem(readFileSync(path), path);
}

/** Pinned keys from PEM paths, one entry per distinct key (the same key listed twice counts once). */
export function loadPinnedKeys(paths: readonly string[]): PinnedKey[] {
  const byId = new Map<string, PinnedKey>();
  for (const p of paths) {
    const k = loadPublicKey(p);
    byId.set(k.keyId, k);
  }
  return [...byId.values()];
}

export function generateKeyPair(): { privatePem: string; publicPem: string; keyId: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    keyId: keyIdOf(publicKey),
  };
}

export function signBytes(bytes: Uint8Array, privateKey: KeyObject): Buffer {
  return sign(null, bytes, privateKey);
}

export function verifyBytes(bytes: Uint8Array, signature: Uint8Array, publicKey: KeyObject): boolean {
  if (signature.length !== 64) return false;
  try {
    return verify(null, bytes, publicKey, signature);
  } catch {
    return false;
  }
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

export function decodeBase64(value: unknown, what: string, maxBytes: number): Buffer {
  if (typeof value !== 'string' || value.length === 0 || value.length > Math.ceil(maxBytes / 3) * 4 + 4 || !BASE64.test(value)) {
    throw new PatchError('ENCODING_INVALID', `${what}: not base64`, 'fatal');
  }
  return Buffer.from(value, 'base64');
}

export interface SignatureVerdict {
  ok: boolean;
  /** Distinct pinned keys whose signature verified. */
  validKeyIds: string[];
  reason?: string;
}

/**
 * Counts DISTINCT pinned keys with a valid signature over `manifestBytes` (TUF threshold
 * signatures): two signatures by one key count once, signatures by unpinned keys count zero.
 * An entry naming a `keyId` is checked only against that pinned key; one without is tried against each.
 */
export function verifySignatures(
  manifestBytes: Uint8Array,
  signatures: readonly SignatureEntry[],
  pinnedKeys: readonly PinnedKey[],
  threshold: number,
): SignatureVerdict {
  if (!Number.isInteger(threshold) || threshold < 1) return { ok: false, validKeyIds: [], reason: `invalid threshold ${threshold}` };
  const valid = new Set<string>();
  for (const entry of signatures.slice(0, 32)) {
    let sig: Buffer;
    try {
      sig = decodeBase64(entry.signature, 'signature', 64);
    } catch {
      continue;
    }
    const candidates = entry.keyId === undefined ? pinnedKeys : pinnedKeys.filter((k) => k.keyId === entry.keyId);
    for (const k of candidates) {
      if (!valid.has(k.keyId) && verifyBytes(manifestBytes, sig, k.key)) {
        valid.add(k.keyId);
        break;
      }
    }
  }
  const validKeyIds = [...valid];
  if (validKeyIds.length >= threshold) return { ok: true, validKeyIds };
  return {
    ok: false,
    validKeyIds,
    reason:
      validKeyIds.length === 0
        ? 'no signature verifies with a pinned key'
        : `only ${validKeyIds.length} of the ${threshold} required pinned keys signed the manifest`,
  };
}
