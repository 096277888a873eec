import { PatchError } from './patch-error.js';
import { DEVICE_TYPES, type DeviceType } from '../src/protocol/names.js';
import { isValidRange as validRange, parseVersion } from './version-match.js';

const validVersion = (v: string): boolean => parseVersion(v) !== null;
import { parseRfc3339 } from '../src/protocol/rfc3339.js';

/**
 * The signed patch manifest of PROTOCOL.md "PatchOffer". It travels as bytes and is signed as
 * bytes: verifiers check signatures over the bytes they received and only then parse them; nothing
 * is ever re-serialized before verification (TUF: canonical form is whatever was signed).
 */
export interface Manifest {
  id: string;
  version: string;
  appliesTo: { types: DeviceType[]; software: string };
  artifact: { name: string; sha256: string; size: number };
  createdAt: string;
  expiresAt: string;
  /** First 16 hex of sha256(SPKI DER) of the key that made the primary signature. */
  keyId: string;
  /** Optional `sha256:<hex>` of the installed software tree; publishing registers it for `version`. */
  integrity?: string;
}

export const PATCH_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
export const SHA256_HEX = /^[0-9a-f]{64}$/;
export const KEY_ID_PATTERN = /^[0-9a-f]{16}$/;
export const INTEGRITY_PATTERN = /^sha256:[0-9a-f]{64}$/;
const ARTIFACT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$/;
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$/;
/** Manifests are small; anything bigger is hostile. */
export const MAX_MANIFEST_BYTES = 8 * 1024;

function bad(reason: string): PatchError {
  return new PatchError('MANIFEST_INVALID', `manifest: ${reason}`, 'fatal');
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function onlyKeys(obj: Record<string, unknown>, allowed: readonly string[], path: string): void {
  for (const k of Object.keys(obj)) if (!allowed.includes(k)) throw bad(`${path}${k}: unknown field`);
}

function str(obj: Record<string, unknown>, key: string, path: string, pattern?: RegExp): string {
  const v = obj[key];
  if (typeof v !== 'string') throw bad(`${path}${key}: expected a string`);
  if (pattern && !pattern.test(v)) throw bad(`${path}${key}: invalid value '${v.slice(0, 80)}'`);
  return v;
}

/** A UTC RFC 3339 time that exists: `2027-02-30T10:00:00Z` is refused, not rolled over to March (issue 11). */
function time(obj: Record<string, unknown>, key: string): string {
  const v = str(obj, key, '', ISO_UTC);
  if (parseRfc3339(v) === undefined) throw bad(`${key}: '${v}' is not a valid time`);
  return v;
}

/**
 * Strict, hand-written validator (the agent cannot use zod). Unknown fields, wrong types, a
 * non-semver version or range, a malformed digest: all fatal `PatchError`s naming the field.
 */
export function parseManifest(bytes: Uint8Array): Manifest {
  if (bytes.length > MAX_MANIFEST_BYTES) throw bad(`larger than ${MAX_MANIFEST_BYTES} bytes`);
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw bad('not valid UTF-8 JSON');
  }
  if (!isObject(raw)) throw bad('expected a JSON object');
  onlyKeys(raw, ['id', 'version', 'appliesTo', 'artifact', 'createdAt', 'expiresAt', 'keyId', 'integrity'], '');
  const id = str(raw, 'id', '', PATCH_ID_PATTERN);
  const version = str(raw, 'version', '');
  if (!validVersion(version) || version.startsWith('v')) throw bad(`version: '${version.slice(0, 40)}' is not a semver version`);

  const applies = raw.appliesTo;
  if (!isObject(applies)) throw bad('appliesTo: expected an object');
  onlyKeys(applies, ['types', 'software'], 'appliesTo.');
  const types = applies.types;
  if (!Array.isArray(types) || types.length === 0) throw bad('appliesTo.types: expected a non-empty array');
  for (const t of types) {
    if (!DEVICE_TYPES.includes(t as DeviceType)) throw bad(`appliesTo.types: unknown device type '${String(t).slice(0, 20)}'`);
  }
  if (new Set(types).size !== types.length) throw bad('appliesTo.types: duplicate type');
  const software = str(applies, 'software', 'appliesTo.');
  if (software.trim() === '' || !validRange(software)) throw bad(`appliesTo.software: '${software.slice(0, 80)}' is not a semver range`);

  const art = raw.artifact;
  if (!isObject(art)) throw bad('artifact: expected an object');
  onlyKeys(art, ['name', 'sha256', 'size'], 'artifact.');
  const name = str(art, 'name', 'artifact.', ARTIFACT_NAME);
  const sha256 = str(art, 'sha256', 'artifact.', SHA256_HEX);
  const size = art.size;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw bad('artifact.size: expected a non-negative integer');

  const createdAt = time(raw, 'createdAt');
  const expiresAt = time(raw, 'expiresAt');
  if (parseRfc3339(expiresAt)! <= parseRfc3339(createdAt)!) throw bad('expiresAt: must be after createdAt');
  const keyId = str(raw, 'keyId', '', KEY_ID_PATTERN);
  const manifest: Manifest = {
    id,
    version,
    appliesTo: { types: types as DeviceType[], software },
    artifact: { name, sha256, size },
    createdAt,
    expiresAt,
    keyId,
  };
  if (raw.integrity !== undefined) manifest.integrity = str(raw, 'integrity', '', INTEGRITY_PATTERN);
  return manifest;
}

/**
 * The bytes a signer signs: JSON in a fixed field order, two-space indent, trailing newline.
 * Only signers call this; verifiers keep the bytes they were given.
 */
export function manifestBytes(m: Manifest): Buffer {
  const ordered: Record<string, unknown> = {
    id: m.id,
    version: m.version,
    appliesTo: { types: m.appliesTo.types, software: m.appliesTo.software },
    artifact: { name: m.artifact.name, sha256: m.artifact.sha256, size: m.artifact.size },
    createdAt: m.createdAt,
    expiresAt: m.expiresAt,
    keyId: m.keyId,
  };
  if (m.integrity !== undefined) ordered.integrity = m.integrity;
  const bytes = Buffer.from(`${JSON.stringify(ordered, null, 2)}\n`, 'utf8');
  parseManifest(bytes); // a signer must never sign something agents would refuse
  return bytes;
}

/** The artifact URL PROTOCOL.md prescribes; the agent refuses any other. */
export function artifactPath(patchId: string): string {
  return `/patches/${encodeURIComponent(patchId)}/artifact`;
}
