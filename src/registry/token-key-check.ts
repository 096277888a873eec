import { createHmac } from 'node:crypto';
import { existsSync } from 'node:fs';
import type { Database } from '../db/database.js';
import { XcareError } from '../errors.js';
import type { TokenKey } from './device-token.js';

const META_KEY = 'device_token_key_id';

/** A public name for the device-token key: HMAC-SHA-256 of a fixed label under it (reveals nothing of the key). */
export function tokenKeyId(key: TokenKey): string {
  return createHmac('sha256', key).update('xcare-fleet device-token key id').digest('hex').slice(0, 32);
}

/**
 * Before a key is generated: a store whose devices were provisioned with a key (its id is recorded) and a data
 * dir without `device-token.key` is a second instance that was not given the key. Refused (TOKEN_KEY_MISMATCH)
 * before a new key file is written, so the data dir stays as it was.
 */
export function requireTokenKeyFile(db: Database, keyFile: string): void {
  if (existsSync(keyFile)) return;
  const stored = db.prepare(`SELECT value FROM store_meta WHERE key = ?`).get(META_KEY) as { value: string } | undefined;
  if (!stored) return;
  throw new XcareError(
    'TOKEN_KEY_MISMATCH',
    `${keyFile} does not exist, but this store's devices were provisioned with device-token key ${stored.value}: ` +
      'copy device-token.key from the data dir of an instance already running on this store (README "At scale")',
  );
}

/**
 * Issue 13: the device tokens' keyed hashes in the registry are only as good as the key they were made with
 * (`<dataDir>/device-token.key`). Instances on several hosts share the store but each has its own data dir;
 * one started with a freshly generated key would refuse every device's CONNECT. The first instance records
 * the key's id in `store_meta`; every start compares. A mismatch throws TOKEN_KEY_MISMATCH (start fails,
 * nothing else is written) naming the fix: copy the key file from an instance already on this store.
 */
export function checkTokenKey(db: Database, key: TokenKey, keyFile: string): void {
  const id = tokenKeyId(key);
  db.prepare(`INSERT INTO store_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING`).run(META_KEY, id);
  const stored = (db.prepare(`SELECT value FROM store_meta WHERE key = ?`).get(META_KEY) as { value: string }).value;
  if (stored !== id) {
    throw new XcareError(
      'TOKEN_KEY_MISMATCH',
      `${keyFile} is not the device-token key this store's devices were provisioned with (key id ${id}, the store's ${stored}): ` +
        'copy device-token.key from the data dir of an instance already running on this store (README "At scale"). ' +
        `To replace the key on purpose, rotate every device token afterwards and first run: DELETE FROM store_meta WHERE key = '${META_KEY}'`,
    );
  }
}
