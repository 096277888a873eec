import type { Migration } from './index.js';

/**
 * Issue 14: API tokens with roles, console sessions and the audit trail (PROTOCOL.md "HTTP").
 * Tokens and session ids are stored only as SHA-256 of 256-bit random secrets (src/access/secret-hash.ts).
 */
export const access: Migration = {
  version: 11,
  name: 'access',
  up: `
CREATE TABLE api_tokens (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('viewer','operator','admin')),
  token_hash TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL,
  created_by TEXT NOT NULL,
  last_used_at INTEGER,
  revoked_at INTEGER,
  revoked_by TEXT
);
-- A name says who acted in the audit log, so two live tokens never share one.
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens(name) WHERE revoked_at IS NULL;

CREATE TABLE console_sessions (
  id_hash TEXT PRIMARY KEY,
  token_id INTEGER REFERENCES api_tokens(id),
  name TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('viewer','operator','admin')),
  csrf TEXT NOT NULL,
  -- SHA-256 of the token signed in with: an admin-token session ends when the configured admin token changes.
  credential_hash TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX console_sessions_token ON console_sessions(token_id);
CREATE INDEX console_sessions_expiry ON console_sessions(expires_at);

CREATE TABLE audit_log (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ts INTEGER NOT NULL,
  actor TEXT NOT NULL,
  role TEXT NOT NULL,
  via TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT,
  method TEXT NOT NULL,
  path TEXT NOT NULL,
  status INTEGER NOT NULL,
  remote TEXT,
  detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_target ON audit_log(target, id) WHERE target IS NOT NULL;
CREATE INDEX audit_log_actor ON audit_log(actor, id);
`,
};
