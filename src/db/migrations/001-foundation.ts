import type { Migration } from './index.js';

export const foundation: Migration = {
  version: 1,
  name: 'foundation',
  up: `
CREATE TABLE devices (
  id TEXT PRIMARY KEY,
  type TEXT NOT NULL CHECK (type IN ('gateway','sensor')),
  parent TEXT,
  customer TEXT NOT NULL,
  installer TEXT NOT NULL,
  tier TEXT NOT NULL CHECK (tier IN ('none','xcare','xcare_pro')),
  subscription_start TEXT,
  subscription_end TEXT,
  tags TEXT NOT NULL DEFAULT '[]',
  token_hash TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
);
CREATE INDEX devices_customer ON devices(customer);
CREATE INDEX devices_parent ON devices(parent);

-- The latest heartbeat per device, not every heartbeat: a large fleet would write billions of rows a day.
CREATE TABLE device_state (
  device_id TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
  last_seen INTEGER,
  online INTEGER NOT NULL DEFAULT 0,
  connected INTEGER NOT NULL DEFAULT 0,
  will_at INTEGER,
  seq INTEGER,
  boot_id TEXT,
  interval_s REAL,
  agent_version TEXT,
  software_version TEXT,
  integrity TEXT,
  heartbeat TEXT,
  heartbeats INTEGER NOT NULL DEFAULT 0,
  state_changed_at INTEGER
);

-- Event log of state changes (online/offline, revocations, provisioning...).
CREATE TABLE events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ts INTEGER NOT NULL,
  device_id TEXT,
  kind TEXT NOT NULL,
  data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_device ON events(device_id, ts);
`,
};
