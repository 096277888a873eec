import type { Database } from '../db/database.js';
import type { Clock } from '../clock.js';
import { ConflictError, NotFoundError, ValidationError } from '../errors.js';
import { hashSecret, newSecret } from './secret-hash.js';
import { isRole, type Principal, type Role } from './roles.js';

/** An API token as listed (never its secret). Times are ISO strings. */
export interface ApiTokenView {
  id: number;
  name: string;
  role: Role;
  createdAt: string;
  createdBy: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
  revokedBy: string | null;
}

interface TokenRow {
  id: number;
  name: string;
  role: Role;
  token_hash: string;
  created_at: number;
  created_by: string;
  last_used_at: number | null;
  revoked_at: number | null;
  revoked_by: string | null;
}

/** The database and the clock (creation and last-use times). */
export interface TokenStoreDeps {
  db: Database;
  clock: Clock;
}

/** Token names: what the audit log shows as "who". `admin` is the configured admin token's. */
export const TOKEN_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
/** Token secrets start with this, so a leaked one is recognisable (secret scanners, logs). */
export const TOKEN_PREFIX = 'xct_';
/** last_used_at is written at most this often per token: a read-heavy console must not turn into writes. */
const LAST_USED_WRITE_MS = 60_000;

function toView(r: TokenRow): ApiTokenView {
  const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
  return { id: r.id, name: r.name, role: r.role, createdAt: iso(r.created_at)!, createdBy: r.created_by, lastUsedAt: iso(r.last_used_at), revokedAt: iso(r.revoked_at), revokedBy: r.revoked_by };
}

/**
 * API tokens with roles (issue 14, PROTOCOL.md "HTTP"): the one owner of `api_tokens`. The secret is shown
 * once at creation and stored as its SHA-256 (secret-hash.ts), so authenticating is one indexed lookup.
 */
export class TokenStore {
  private readonly lastUsedWritten = new Map<number, number>();
  constructor(private readonly deps: TokenStoreDeps) {}

  /** Creates a token; returns its secret (shown once) and its view. A live token of that name is a 409. */
  create(input: { name: unknown; role: unknown }, createdBy: string): { token: string; apiToken: ApiTokenView } {
    if (typeof input.name !== 'string' || !TOKEN_NAME_PATTERN.test(input.name)) {
      throw new ValidationError('name: expected 1-64 characters of letters, digits, ".", "_", "@", "-"');
    }
    if (input.name === 'admin') throw new ValidationError('name: "admin" is the configured admin token\'s name');
    if (!isRole(input.role)) throw new ValidationError('role: expected viewer, operator or admin');
    const existing = this.deps.db.prepare('SELECT id FROM api_tokens WHERE name = ? AND revoked_at IS NULL').get(input.name);
    if (existing) throw new ConflictError(`token ${input.name} already exists`);
    const token = newSecret(TOKEN_PREFIX);
    const now = this.deps.clock.now();
    const result = this.deps.db
      .prepare('INSERT INTO api_tokens (name, role, token_hash, created_at, created_by) VALUES (?, ?, ?, ?, ?)')
      .run(input.name, input.role, hashSecret(token), now, createdBy);
    return { token, apiToken: this.get(Number(result.lastInsertRowid))! };
  }

  get(id: number): ApiTokenView | undefined {
    const row = this.deps.db.prepare('SELECT * FROM api_tokens WHERE id = ?').get(id) as TokenRow | undefined;
    return row ? toView(row) : undefined;
  }

  /** Tokens by id; revoked ones only when asked. */
  list(includeRevoked = false): ApiTokenView[] {
    const rows = this.deps.db
      .prepare(`SELECT * FROM api_tokens ${includeRevoked ? '' : 'WHERE revoked_at IS NULL'} ORDER BY id`)
      .all() as TokenRow[];
    return rows.map(toView);
  }

  /**
   * Revokes a live token by id or name; `onRevoked` (run in the same transaction) ends its console
   * sessions. A token already revoked or unknown is a 404.
   */
  revoke(idOrName: string, revokedBy: string, onRevoked?: (tokenId: number) => void): ApiTokenView {
    const row = (/^[1-9]\d{0,15}$/.test(idOrName)
      ? this.deps.db.prepare('SELECT * FROM api_tokens WHERE id = ? AND revoked_at IS NULL').get(Number(idOrName))
      : this.deps.db.prepare('SELECT * FROM api_tokens WHERE name = ? AND revoked_at IS NULL').get(idOrName)) as TokenRow | undefined;
    if (!row) throw new NotFoundError(`token ${idOrName} not found`);
    this.deps.db.transaction(() => {
      this.deps.db.prepare('UPDATE api_tokens SET revoked_at = ?, revoked_by = ? WHERE id = ?').run(this.deps.clock.now(), revokedBy, row.id);
      onRevoked?.(row.id);
    })();
    return this.get(row.id)!;
  }

  /** The principal a bearer secret stands for, or undefined (unknown or revoked). */
  authenticate(secret: string, via: Principal['via'] = 'bearer'): Principal | undefined {
    if (!secret.startsWith(TOKEN_PREFIX) || secret.length > 200) return undefined;
    const row = this.deps.db.prepare('SELECT * FROM api_tokens WHERE token_hash = ? AND revoked_at IS NULL').get(hashSecret(secret)) as
      | TokenRow
      | undefined;
    if (!row) return undefined;
    const now = this.deps.clock.now();
    if (now - (this.lastUsedWritten.get(row.id) ?? -Infinity) >= LAST_USED_WRITE_MS) {
      this.lastUsedWritten.set(row.id, now);
      this.deps.db.prepare('UPDATE api_tokens SET last_used_at = ? WHERE id = ?').run(now, row.id);
    }
    return { name: row.name, role: row.role, tokenId: row.id, via };
  }
}
