import { PatchError } from './patch-error.js';
import type { PatchOffer } from '../src/protocol/types.js';
import { decodeBase64, type SignatureEntry } from './signing.js';
import { MAX_MANIFEST_BYTES, PATCH_ID_PATTERN } from './manifest.js';

/** A PatchOffer after its envelope was checked; the manifest is still unverified bytes. */
export interface ParsedOffer {
  rolloutId?: string;
  manifestBytes: Buffer;
  /** The offer's `signature` (no keyId) followed by `signatures[]`. */
  signatures: SignatureEntry[];
  url: string;
  raw: PatchOffer;
}

const MAX_OFFER_BYTES = 64 * 1024;
const MAX_SIGNATURES = 16;

function bad(reason: string): PatchError {
  return new PatchError('OFFER_INVALID', `offer: ${reason}`, 'fatal');
}

/** Envelope check of an untrusted `cmd/patch` payload (PROTOCOL.md "PatchOffer"). */
export function parseOffer(payload: Buffer | string): ParsedOffer {
  const text = typeof payload === 'string' ? payload : payload.toString('utf8');
  if (text.length > MAX_OFFER_BYTES) throw bad('too large');
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw bad('not JSON');
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad('expected an object');
  const o = raw as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!['rolloutId', 'manifest', 'signature', 'signatures', 'url'].includes(k)) throw bad(`${k}: unknown field`);
  if (o.rolloutId !== undefined && (typeof o.rolloutId !== 'string' || !PATCH_ID_PATTERN.test(o.rolloutId))) throw bad('rolloutId: invalid');
  if (typeof o.url !== 'string' || o.url.length > 512) throw bad('url: expected a string');
  const manifestBytes = decodeBase64(o.manifest, 'manifest', MAX_MANIFEST_BYTES);
  if (typeof o.signature !== 'string') throw bad('signature: expected a string');
  const signatures: SignatureEntry[] = [{ signature: o.signature }];
  if (o.signatures !== undefined) {
    if (!Array.isArray(o.signatures) || o.signatures.length > MAX_SIGNATURES) throw bad('signatures: expected an array');
    for (const [i, s] of o.signatures.entries()) {
      const e = s as Record<string, unknown>;
      if (typeof e !== 'object' || e === null || typeof e.keyId !== 'string' || typeof e.signature !== 'string') {
        throw bad(`signatures.${i}: expected {keyId, signature}`);
      }
      signatures.push({ keyId: e.keyId, signature: e.signature });
    }
  }
  const offer: PatchOffer = { manifest: o.manifest as string, signature: o.signature, url: o.url };
  if (o.rolloutId !== undefined) offer.rolloutId = o.rolloutId as string;
  if (o.signatures !== undefined) offer.signatures = signatures.slice(1) as { keyId: string; signature: string }[];
  const parsed: ParsedOffer = { manifestBytes, signatures, url: o.url, raw: offer };
  if (offer.rolloutId !== undefined) parsed.rolloutId = offer.rolloutId;
  return parsed;
}

/**
 * A PatchCancel (PROTOCOL.md "PatchCancel": `{action: "cancel", rolloutId?, patchId}` on `cmd/patch`), or
 * undefined when the payload is not a cancel (then it is an offer, or garbage the offer parser reports).
 */
export function parseCancel(payload: Buffer | string): { patchId: string; rolloutId?: string } | undefined {
  const text = typeof payload === 'string' ? payload : payload.toString('utf8');
  if (text.length > 4096 || !text.includes('"action"')) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  const o = raw as Record<string, unknown>;
  if (typeof o !== 'object' || o === null || o.action !== 'cancel') return undefined;
  if (typeof o.patchId !== 'string' || !PATCH_ID_PATTERN.test(o.patchId)) return undefined;
  if (o.rolloutId !== undefined && (typeof o.rolloutId !== 'string' || !PATCH_ID_PATTERN.test(o.rolloutId))) return undefined;
  return { patchId: o.patchId, ...(typeof o.rolloutId === 'string' ? { rolloutId: o.rolloutId } : {}) };
}
