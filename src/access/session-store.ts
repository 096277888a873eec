import type { Database } from '../db/database.js';
import type { Clock } from '../clock.js';
import { hashSecret, newSecret } from './secret-hash.js';
import type { Principal, Role } from './roles.js';

/** The database, the clock and the session lifetime. */
export interface SessionStoreDeps {
  db: Database;
  clock: Clock;
  /** How long a console session lives after sign-in (seconds). */
  ttlS: number;
}

interface SessionRow {
  id_hash: string;
  token_id: number | null;
  name: string;
  role: Role;
  csrf: string;
  credential_hash: string;
  created_at: number;
  expires_at: number;
}

/**
 * Console sessions (issue 14): signing in with a token once gives a session id in an HttpOnly, SameSite=Strict
 * cookie. The session is stored server-side (the id only as its SHA-256) with a fixed expiry and a per-session
 * CSRF token that every state-changing request made with the cookie must echo. Sign-out and revoking the token
 * delete the session. The one owner of `console_sessions`.
 */
export class SessionStore {
  constructor(private readonly deps: SessionStoreDeps) {}

  /**
   * A new session for `principal`, signed in with `token`; returns the cookie value (shown to the browser only)
   * and the CSRF token.
   */
  create(principal: Principal, token: string): { sessionId: string; csrf: string; expiresAt: number } {
    const now = this.deps.clock.now();
    const sessionId = newSecret('');
    const csrf = newSecret('');
    const expiresAt = now + this.deps.ttlS * 1000;
    this.deps.db.transaction(() => {
      this.deps.db.prepare('DELETE FROM console_sessions WHERE expires_at <= ?').run(now);
      this.deps.db
        .prepare('INSERT INTO console_sessions (id_hash, token_id, name, role, csrf, credential_hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
        .run(hashSecret(sessionId), principal.tokenId, principal.name, principal.role, csrf, hashSecret(token), now, expiresAt);
    })();
    return { sessionId, csrf, expiresAt };
  }

  /** The principal of a live session, or undefined (unknown, expired or signed out). */
  resolve(sessionId: string): Principal | undefined {
    if (sessionId.length === 0 || sessionId.length > 100) return undefined;
    const row = this.deps.db.prepare('SELECT * FROM console_sessions WHERE id_hash = ?').get(hashSecret(sessionId)) as SessionRow | undefined;
    if (!row || row.expires_at <= this.deps.clock.now()) return undefined;
    return { name: row.name, role: row.role, tokenId: row.token_id, via: 'session', csrf: row.csrf, sessionId, credentialHash: row.credential_hash };
  }


  delete(sessionId: string): void {
    this.deps.db.prepare('DELETE FROM console_sessions WHERE id_hash = ?').run(hashSecret(sessionId));
  }

  /** Ends every session signed in with a token (called when the token is revoked). */
  deleteForToken(tokenId: number): void {
    this.deps.db.prepare('DELETE FROM console_sessions WHERE token_id = ?').run(tokenId);
  }
}
