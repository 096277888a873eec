import type { Migration } from './index.js';

/**
 * Issue 13: what instances on several hosts must share through the store rather than a data dir.
 * - `store_meta`: small facts about the store itself; `device_token_key_id` identifies the device-token key
 *   the registry's hashes were made with, so an instance started with another key refuses to start
 *   instead of refusing every device (src/registry/token-key-check.ts).
 * - `artifact_chunks`: patch artifacts in 1 MiB chunks, written at publish on PostgreSQL so an instance
 *   without the file in its data dir fetches it from the store (src/patches/artifact-blobs.ts). Unused
 *   on SQLite, where the data dir is the store.
 */
export const sharedStore: Migration = {
  version: 12,
  name: 'shared-store',
  up: `
CREATE TABLE store_meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE artifact_chunks (
  sha256 TEXT NOT NULL,
  seq INTEGER NOT NULL,
  data BLOB NOT NULL,
  PRIMARY KEY (sha256, seq)
);
`,
};
