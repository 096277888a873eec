import type { Migration } from './index.js';

/**
 * Rollouts that keep their promises (issue 9):
 * - `patch_offers` holds ONE row per (device, patch) whoever offered it (manual offer or rollout, fault 6):
 *   duplicates from before are folded into the earliest, then a unique index keeps it so.
 * - `device_patches.cancel_requested_at`: a PatchCancel the daemon owes the device (re-sent on every
 *   reconnect until the job ends, PROTOCOL.md "Delivery of daemon -> device commands").
 * - `rollouts.state` gains `failed`: a rollout that fails at run time is failed on its own (fault 8).
 * - `rollout_devices` gains `attempts` (offers sent, for per-device retries), `retry_at` (not before) and
 *   `cancel_requested_at` (abort --force).
 *
 * SQLite cannot change a CHECK in place, and with foreign keys on, dropping the parent would cascade into the
 * children: so all three rollout tables are copied to new ones, the old ones dropped children first, and the
 * new ones renamed (a rename of the parent updates the children's REFERENCES).
 */
export const rolloutPromises: Migration = {
  version: 6,
  name: 'rollout-promises',
  up: `
DELETE FROM patch_offers WHERE rowid NOT IN (SELECT MIN(rowid) FROM patch_offers GROUP BY device_id, patch_id);
DROP INDEX IF EXISTS patch_offers_device;
CREATE UNIQUE INDEX patch_offers_device_patch ON patch_offers(device_id, patch_id);

ALTER TABLE device_patches ADD COLUMN cancel_requested_at INTEGER;

CREATE TABLE rollouts_v6 (
  id TEXT PRIMARY KEY,
  patch_id TEXT NOT NULL,
  spec TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('scheduled','running','paused','completed','aborted','failed')),
  current_wave INTEGER NOT NULL DEFAULT 0,
  wave_started_at INTEGER,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  started_at INTEGER,
  ended_at INTEGER,
  reason TEXT
);
INSERT INTO rollouts_v6 SELECT id, patch_id, spec, state, current_wave, wave_started_at, created_at, updated_at, started_at, ended_at, reason FROM rollouts;

CREATE TABLE rollout_devices_v6 (
  rollout_id TEXT NOT NULL REFERENCES rollouts_v6(id) ON DELETE CASCADE,
  device_id TEXT NOT NULL,
  wave INTEGER,
  state TEXT NOT NULL CHECK (state IN ('pending','offered','downloading','installing','installed','done','failed','excluded')),
  offered_at INTEGER,
  installed_at INTEGER,
  done_at INTEGER,
  progress_at INTEGER,
  joined_at INTEGER,
  detail TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,   -- offers sent to this device in this rollout (1 + retries used)
  retry_at INTEGER,                      -- pending for a retry: not offered again before this
  cancel_requested_at INTEGER,           -- abort --force asked this device to cancel
  PRIMARY KEY (rollout_id, device_id)
);
INSERT INTO rollout_devices_v6 (rollout_id, device_id, wave, state, offered_at, installed_at, done_at, progress_at, joined_at, detail, attempts)
  SELECT rollout_id, device_id, wave, state, offered_at, installed_at, done_at, progress_at, joined_at, detail, CASE WHEN offered_at IS NULL THEN 0 ELSE 1 END
  FROM rollout_devices;

CREATE TABLE rollout_events_v6 (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  rollout_id TEXT NOT NULL REFERENCES rollouts_v6(id) ON DELETE CASCADE,
  ts INTEGER NOT NULL,
  kind TEXT NOT NULL,
  device_id TEXT,
  data TEXT NOT NULL DEFAULT '{}'
);
INSERT INTO rollout_events_v6 SELECT id, rollout_id, ts, kind, device_id, data FROM rollout_events;

DROP TABLE rollout_devices;
DROP TABLE rollout_events;
DROP TABLE rollouts;
ALTER TABLE rollouts_v6 RENAME TO rollouts;
ALTER TABLE rollout_devices_v6 RENAME TO rollout_devices;
ALTER TABLE rollout_events_v6 RENAME TO rollout_events;
CREATE INDEX rollouts_state ON rollouts(state);
CREATE INDEX rollout_devices_device ON rollout_devices(device_id);
CREATE INDEX rollout_devices_wave ON rollout_devices(rollout_id, wave, state);
CREATE INDEX rollout_events_rollout ON rollout_events(rollout_id, id);
`,
};
