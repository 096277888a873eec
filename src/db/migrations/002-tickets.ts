import type { Migration } from './index.js';

/**
 * Tickets, their event history, the helpdesk outbox and the expected software digests
 * (RULES.md "Automatic tickets", "Eligibility"; issue 3 "Helpdesk delivery").
 */
export const tickets: Migration = {
  version: 2,
  name: 'tickets',
  up: `
CREATE TABLE tickets (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  -- Dedupe family: the kind, except gateway_partial and gateway_loss of one gateway share 'gateway' (RULES.md "One ticket per problem").
  family TEXT NOT NULL,
  subject TEXT NOT NULL,
  customer TEXT,
  device_id TEXT,
  origin TEXT NOT NULL CHECK (origin IN ('auto','person')),
  classification TEXT NOT NULL CHECK (classification IN ('problem','consultative')),
  severity TEXT NOT NULL CHECK (severity IN ('urgent','high','medium','low')),
  status TEXT NOT NULL CHECK (status IN ('open','acknowledged','resolved')),
  summary TEXT NOT NULL,
  details TEXT NOT NULL DEFAULT '{}',
  covers TEXT NOT NULL DEFAULT '[]',
  -- Condition keys (kind|subject) that hold now; empty = cleared, auto-resolve pending.
  conditions TEXT NOT NULL DEFAULT '[]',
  parent_id INTEGER REFERENCES tickets(id),
  eligible INTEGER NOT NULL,
  ineligible_reasons TEXT NOT NULL DEFAULT '[]',
  tier TEXT NOT NULL CHECK (tier IN ('none','xcare','xcare_pro')),
  band TEXT NOT NULL CHECK (band IN ('paid','discretionary')),
  opened_kind TEXT NOT NULL,
  opened_severity TEXT NOT NULL,
  opened_at INTEGER NOT NULL,
  waiting_since INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  acked_at INTEGER,
  resolved_at INTEGER,
  resolve_reason TEXT,
  resolved_by TEXT,
  cleared_at INTEGER,
  clear_reason TEXT,
  reopen_count INTEGER NOT NULL DEFAULT 0,
  -- UTC day the ticket was opened, for the fair-use cap (RULES.md "Fair use").
  day_key TEXT NOT NULL
);
CREATE INDEX tickets_family_subject ON tickets(family, subject, id);
CREATE INDEX tickets_subject_day ON tickets(subject, day_key);
CREATE INDEX tickets_unresolved ON tickets(status, severity) WHERE status != 'resolved';
CREATE INDEX tickets_parent ON tickets(parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE ticket_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ticket_id INTEGER NOT NULL REFERENCES tickets(id),
  ts INTEGER NOT NULL,
  type TEXT NOT NULL CHECK (type IN ('opened','updated','escalated','resolved','reopened','acknowledged','folded','child_attached')),
  data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX ticket_events_ticket ON ticket_events(ticket_id, id);

-- Durable helpdesk outbox: written in the same transaction as the ticket change it reports.
CREATE TABLE outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ticket_id INTEGER NOT NULL,
  event_type TEXT NOT NULL,
  payload TEXT NOT NULL,
  idempotency_key TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  delivered_at INTEGER,
  dead_at INTEGER,
  last_error TEXT
);
CREATE INDEX outbox_undelivered ON outbox(ticket_id, id) WHERE delivered_at IS NULL;
CREATE INDEX outbox_due ON outbox(next_attempt_at) WHERE delivered_at IS NULL AND dead_at IS NULL;
CREATE INDEX outbox_dead ON outbox(dead_at) WHERE dead_at IS NOT NULL;

CREATE TABLE software_integrity (
  version TEXT PRIMARY KEY,
  digest TEXT NOT NULL,
  source TEXT NOT NULL,
  registered_at INTEGER NOT NULL
);
`,
};
