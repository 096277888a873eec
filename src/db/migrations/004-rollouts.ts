import type { Migration } from './index.js';

/**
 * Rollouts (issue 5). Every transition is committed here before the scheduler acts on it (an offer row is
 * `offered` before the MQTT publish), so a restart, even after kill -9, resumes without offering a device
 * the same patch twice and without skipping one.
 */
export const rollouts: Migration = {
  version: 4,
  name: 'rollouts',
  up: `
CREATE TABLE rollouts (
  id TEXT PRIMARY KEY,               -- r-YYYYMMDD-N (UTC date of creation, N counts up per day)
  patch_id TEXT NOT NULL,
  spec TEXT NOT NULL,                -- normalized RolloutSpec JSON
  state TEXT NOT NULL CHECK (state IN ('scheduled','running','paused','completed','aborted')),
  current_wave INTEGER NOT NULL DEFAULT 0,
  wave_started_at INTEGER,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  started_at INTEGER,
  ended_at INTEGER,
  reason TEXT
);
CREATE INDEX rollouts_state ON rollouts(state);

CREATE TABLE rollout_devices (
  rollout_id TEXT NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
  device_id TEXT NOT NULL,
  wave INTEGER,                      -- NULL for devices excluded at planning
  state TEXT NOT NULL CHECK (state IN ('pending','offered','downloading','installing','installed','done','failed','excluded')),
  offered_at INTEGER,
  installed_at INTEGER,
  done_at INTEGER,
  progress_at INTEGER,               -- the offer or the latest status: the progress timeout runs from here
  joined_at INTEGER,                 -- set for devices registered after the rollout was created
  detail TEXT,
  PRIMARY KEY (rollout_id, device_id)
);
CREATE INDEX rollout_devices_device ON rollout_devices(device_id);
CREATE INDEX rollout_devices_wave ON rollout_devices(rollout_id, wave, state);

CREATE TABLE rollout_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  rollout_id TEXT NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
  ts INTEGER NOT NULL,
  kind TEXT NOT NULL,
  device_id TEXT,
  data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX rollout_events_rollout ON rollout_events(rollout_id, id);
`,
};
