import type { Migration } from './index.js';

/** Signed patches (issue 4): the published patches, each device's patch state, and the offers made. */
export const patches: Migration = {
  version: 3,
  name: 'patches',
  up: `
-- manifest: the exact signed bytes (never re-serialized); signatures: JSON [{keyId, signature}].
CREATE TABLE patches (
  id TEXT PRIMARY KEY,
  version TEXT NOT NULL,
  manifest BLOB NOT NULL,
  signatures TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  size INTEGER NOT NULL,
  integrity TEXT,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);

-- The latest reported state of a patch on a device. counted: terminal states already counted in
-- fleet_patch_results_total, so repeats (heartbeat 'patch' field) never count twice.
CREATE TABLE device_patches (
  device_id TEXT NOT NULL,
  patch_id TEXT NOT NULL,
  rollout_id TEXT,
  state TEXT NOT NULL,
  detail TEXT NOT NULL DEFAULT '',
  counted TEXT NOT NULL DEFAULT '',
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (device_id, patch_id)
);
CREATE INDEX device_patches_patch ON device_patches(patch_id, state);

CREATE TABLE patch_offers (
  device_id TEXT NOT NULL,
  patch_id TEXT NOT NULL,
  rollout_id TEXT,
  offered_at INTEGER NOT NULL
);
CREATE INDEX patch_offers_device ON patch_offers(device_id, patch_id);
`,
};
