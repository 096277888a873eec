import type { Database } from '../db/database.js';
import type { PgPool } from '../db/pg/pg-database.js';
import { pgRunner, sqliteRunner, type SqlRunner } from '../db/pg/sql-runner.js';
import type { Clock } from '../clock.js';
import { hashSecret, newSecret } from './secret-hash.js';
import type { Principal, Role } from './roles.js';

interface SessionRow {
  id_hash: string;
  token_id: number | string | null;
  name: string;
  role: Role;
  csrf: string;
  credential_hash: string;
  created_at: number | string;
  expires_at: number | string;
}

/**
 * Console sessions (issue 14): signing in with a token once gives a session id in an HttpOnly, SameSite=Strict
 * cookie. The session is stored server-side (the id only as its SHA-256) with a fixed expiry and a per-session
 * CSRF token that every state-changing request made with the cookie must echo. Sign-out and revoking the token
 * delete the session. The one owner of `console_sessions`, behind an async interface with a SQLite and a
 * PostgreSQL implementation (engine chosen once, src/db/store-engine.ts); no in-memory view, so a sign-out
 * on one daemon holds on every daemon.
 */
export interface SessionStore {
  /**
   * A new session for `principal`, signed in with `token`; returns the cookie value (shown to the browser only),
   * the CSRF token and the expiry (ms since the epoch). Expired sessions are swept on the way.
   */
  create(principal: Principal, token: string): Promise<{ sessionId: string; csrf: string; expiresAt: number }>;
  /**
   * The principal of a live session, or undefined: unknown, expired, signed out, or signed in with an API
   * token revoked since (checked here too, so a revoke holds even if deleting its sessions failed).
   */
  resolve(sessionId: string): Promise<Principal | undefined>;
  /** Signs a session out. */
  delete(sessionId: string): Promise<void>;
  /** Ends every session signed in with a token (called when the token is revoked). */
  deleteForToken(tokenId: number): Promise<void>;
}

const SWEEP = 'DELETE FROM console_sessions WHERE expires_at <= $1';
const INSERT = 'INSERT INTO console_sessions (id_hash, token_id, name, role, csrf, credential_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)';
// A read of api_tokens, not a write: the token store owns that table; this only refuses sessions of revoked tokens.
const RESOLVE = `SELECT s.id_hash, s.token_id, s.name, s.role, s.csrf, s.credential_hash, s.created_at, s.expires_at
  FROM console_sessions s LEFT JOIN api_tokens t ON t.id = s.token_id
 WHERE s.id_hash = $1 AND s.expires_at > $2 AND (s.token_id IS NULL OR t.revoked_at IS NULL)`;
const DELETE = 'DELETE FROM console_sessions WHERE id_hash = $1';
const DELETE_FOR_TOKEN = 'DELETE FROM console_sessions WHERE token_id = $1';

/** The statements, written once over either engine's runner. */
class SqlSessionStore implements SessionStore {
  constructor(private readonly deps: { sql: SqlRunner; clock: Clock; ttlS: number }) {}

  async create(principal: Principal, token: string): Promise<{ sessionId: string; csrf: string; expiresAt: number }> {
    const now = this.deps.clock.now();
    const sessionId = newSecret('');
    const csrf = newSecret('');
    const expiresAt = now + this.deps.ttlS * 1000;
    // Housekeeping first; not atomic with the insert and need not be (an expired row resolves to nothing).
    await this.deps.sql.run(SWEEP, [now]);
    await this.deps.sql.run(INSERT, [hashSecret(sessionId), principal.tokenId, principal.name, principal.role, csrf, hashSecret(token), now, expiresAt]);
    return { sessionId, csrf, expiresAt };
  }

  async resolve(sessionId: string): Promise<Principal | undefined> {
    if (sessionId.length === 0 || sessionId.length > 100) return undefined;
    const [row] = await this.deps.sql.rows<SessionRow>(RESOLVE, [hashSecret(sessionId), this.deps.clock.now()]);
    if (!row) return undefined;
    const tokenId = row.token_id === null ? null : Number(row.token_id);
    return { name: row.name, role: row.role, tokenId, via: 'session', csrf: row.csrf, sessionId, credentialHash: row.credential_hash };
  }

  async delete(sessionId: string): Promise<void> {
    await this.deps.sql.run(DELETE, [hashSecret(sessionId)]);
  }

  async deleteForToken(tokenId: number): Promise<void> {
    await this.deps.sql.run(DELETE_FOR_TOKEN, [tokenId]);
  }
}

/** Console sessions on the embedded SQLite store; `ttlS` is the session lifetime (seconds). */
export class SqliteSessionStore extends SqlSessionStore {
  constructor(deps: { db: Database; clock: Clock; ttlS: number }) {
    super({ sql: sqliteRunner(deps.db), clock: deps.clock, ttlS: deps.ttlS });
  }
}

/** Console sessions on PostgreSQL (or a compatible distributed SQL database). */
export class PgSessionStore extends SqlSessionStore {
  constructor(deps: { pool: PgPool; clock: Clock; ttlS: number }) {
    super({ sql: pgRunner(deps.pool), clock: deps.clock, ttlS: deps.ttlS });
  }
}
