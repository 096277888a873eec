import { isDeviceId } from '../src/protocol/names.js';

/** What the CONNECT packet says about who is connecting (captured in aedes' preConnect hook). */
export interface ConnectIdentity {
  clientId: string;
  username: string | undefined;
  password: Buffer | undefined;
  protocolVersion: number;
}

export type ConnectRefusal = 'protocol_version' | 'bad_device_id' | 'client_id_mismatch' | 'missing_credentials' | 'malformed_token';

/**
 * Longest password looked at. Device tokens are 192 random bits in base64url (32 characters); a longer
 * one cannot match, and refusing it here spares the token check (scrypt for rows not yet migrated) an
 * unauthenticated peer would make us run
 * (issue 11: what an unauthenticated peer can make the daemon spend).
 */
export const MAX_TOKEN_BYTES = 256;

export type IdentityDecision = { ok: true; deviceId: string; token: string } | { ok: false; reason: ConnectRefusal };

/**
 * The checks of PROTOCOL.md "CONNECT" that need no store: MQTT 3.1.1 (or 3.1, which aedes
 * accepts and is the same packet format), clientId == username == a valid device id, a password.
 * The token itself is checked by the registry afterwards. Every refusal becomes CONNACK 5
 * ("not authorized") on the wire; the reason is only logged.
 */
export function checkConnectIdentity(connect: ConnectIdentity): IdentityDecision {
  // aedes 1.2 already answers CONNACK 1 to protocol levels other than 3/4 before authenticate
  // runs (handlers/connect.js init); this keeps MQTT 5 refused should that ever change.
  if (connect.protocolVersion !== 3 && connect.protocolVersion !== 4) return { ok: false, reason: 'protocol_version' };
  if (!isDeviceId(connect.username)) return { ok: false, reason: 'bad_device_id' };
  if (connect.clientId !== connect.username) return { ok: false, reason: 'client_id_mismatch' };
  if (!connect.password || connect.password.length === 0) return { ok: false, reason: 'missing_credentials' };
  if (connect.password.length > MAX_TOKEN_BYTES) return { ok: false, reason: 'malformed_token' };
  // A token is text; bytes that are not UTF-8 would be decoded lossily and compared as something else.
  let token: string;
  try {
    token = new TextDecoder('utf-8', { fatal: true }).decode(connect.password);
  } catch {
    return { ok: false, reason: 'malformed_token' };
  }
  return { ok: true, deviceId: connect.username, token };
}
