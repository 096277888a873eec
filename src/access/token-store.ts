import type { Database } from '../db/database.js';
import type { PgPool } from '../db/pg/pg-database.js';
import { pgRunner, sqliteRunner, type SqlRunner } from '../db/pg/sql-runner.js';
import type { Clock } from '../clock.js';
import { ConflictError, NotFoundError, ValidationError, isUniqueViolation } from '../errors.js';
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
  id: number | string;
  name: string;
  role: Role;
  token_hash: string;
  created_at: number | string;
  created_by: string;
  last_used_at: number | string | null;
  revoked_at: number | string | null;
  revoked_by: string | null;
}

/** Token names: what the audit log shows as "who". `admin` is the configured admin token's. */
export const TOKEN_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
/** Token secrets start with this, so a leaked one is recognisable (secret scanners, logs). */
export const TOKEN_PREFIX = 'xct_';
/** last_used_at is written at most this often per token: a read-heavy console must not turn into writes. */
const LAST_USED_WRITE_MS = 60_000;

/**
 * API tokens with roles (issue 14, PROTOCOL.md "HTTP"): the one owner of `api_tokens`, behind an async
 * interface with a SQLite and a PostgreSQL implementation (engine chosen once, src/db/store-engine.ts).
 * The secret is shown once at creation and stored as its SHA-256 (secret-hash.ts), so authenticating is
 * one indexed lookup. No in-memory view: every request reads the store, so a revoke made on any daemon
 * holds on all of them at once.
 */
export interface TokenStore {
  /**
   * Creates a token; returns its secret (shown once) and its view. ValidationError (400) for a bad name
   * or role, ConflictError (409) when a live token has that name (the unique index decides, so two racing
   * creates cannot both win). Nothing is stored on an error.
   */
  create(input: { name: unknown; role: unknown }, createdBy: string): Promise<{ token: string; apiToken: ApiTokenView }>;
  get(id: number): Promise<ApiTokenView | undefined>;
  /** Tokens by id; revoked ones only when asked. */
  list(includeRevoked?: boolean): Promise<ApiTokenView[]>;
  /**
   * Revokes a live token by id or name in one statement; then `onRevoked` (e.g. ending its console
   * sessions) runs. A session of a revoked token never resolves anyway (SessionStore.resolve checks the
   * token), so a failure between the two cannot leave a usable session. Unknown or already revoked: 404.
   */
  revoke(idOrName: string, revokedBy: string, onRevoked?: (tokenId: number) => Promise<void>): Promise<ApiTokenView>;
  /** The principal a bearer secret stands for, or undefined (unknown or revoked). */
  authenticate(secret: string, via?: Principal['via']): Promise<Principal | undefined>;
}

const COLUMNS = 'id, name, role, token_hash, created_at, created_by, last_used_at, revoked_at, revoked_by';
const INSERT = `INSERT INTO api_tokens (name, role, token_hash, created_at, created_by) VALUES ($1, $2, $3, $4, $5) RETURNING ${COLUMNS}`;
const BY_ID = `SELECT ${COLUMNS} FROM api_tokens WHERE id = $1`;
const LIVE = `SELECT ${COLUMNS} FROM api_tokens WHERE revoked_at IS NULL ORDER BY id`;
const ALL = `SELECT ${COLUMNS} FROM api_tokens ORDER BY id`;
const REVOKE_ID = `UPDATE api_tokens SET revoked_at = $1, revoked_by = $2 WHERE id = $3 AND revoked_at IS NULL RETURNING ${COLUMNS}`;
const REVOKE_NAME = `UPDATE api_tokens SET revoked_at = $1, revoked_by = $2 WHERE name = $3 AND revoked_at IS NULL RETURNING ${COLUMNS}`;
const BY_HASH = `SELECT ${COLUMNS} FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL`;
const TOUCH = 'UPDATE api_tokens SET last_used_at = $1 WHERE id = $2';

function toView(r: TokenRow): ApiTokenView {
  const iso = (ms: number | string | null) => (ms === null ? null : new Date(Number(ms)).toISOString());
  return { id: Number(r.id), name: r.name, role: r.role, createdAt: iso(r.created_at)!, createdBy: r.created_by, lastUsedAt: iso(r.last_used_at), revokedAt: iso(r.revoked_at), revokedBy: r.revoked_by };
}

/** The statements, written once over either engine's runner. */
class SqlTokenStore implements TokenStore {
  private readonly lastUsedWritten = new Map<number, number>();
  constructor(private readonly deps: { sql: SqlRunner; clock: Clock }) {}

  async create(input: { name: unknown; role: unknown }, createdBy: string): Promise<{ token: string; apiToken: ApiTokenView }> {
    if (typeof input.name !== 'string' || !TOKEN_NAME_PATTERN.test(input.name)) {
      throw new ValidationError('name: expected 1-64 characters of letters, digits, ".", "_", "@", "-"');
    }
    if (input.name === 'admin') throw new ValidationError('name: "admin" is the configured admin token\'s name');
    if (!isRole(input.role)) throw new ValidationError('role: expected viewer, operator or admin');
    const token = newSecret(TOKEN_PREFIX);
    try {
      const [row] = await this.deps.sql.rows<TokenRow>(INSERT, [input.name, input.role, hashSecret(token), this.deps.clock.now(), createdBy]);
      return { token, apiToken: toView(row!) };
    } catch (err) {
      // api_tokens_live_name: one live token per name (a 256-bit secret's hash never collides in practice).
      if (isUniqueViolation(err)) throw new ConflictError(`token ${input.name} already exists`, undefined, err);
      throw err;
    }
  }

  async get(id: number): Promise<ApiTokenView | undefined> {
    const [row] = await this.deps.sql.rows<TokenRow>(BY_ID, [id]);
    return row ? toView(row) : undefined;
  }

  async list(includeRevoked = false): Promise<ApiTokenView[]> {
    return (await this.deps.sql.rows<TokenRow>(includeRevoked ? ALL : LIVE)).map(toView);
  }

  async revoke(idOrName: string, revokedBy: string, onRevoked?: (tokenId: number) => Promise<void>): Promise<ApiTokenView> {
    const byId = /^[1-9]\d{0,15}$/.test(idOrName);
    const [row] = await this.deps.sql.rows<TokenRow>(byId ? REVOKE_ID : REVOKE_NAME, [this.deps.clock.now(), revokedBy, byId ? Number(idOrName) : idOrName]);
    if (!row) throw new NotFoundError(`token ${idOrName} not found`);
    const view = toView(row);
    await onRevoked?.(view.id);
    return view;
  }

  async authenticate(secret: string, via: Principal['via'] = 'bearer'): Promise<Principal | undefined> {
    if (!secret.startsWith(TOKEN_PREFIX) || secret.length > 200) return undefined;
    const [row] = await this.deps.sql.rows<TokenRow>(BY_HASH, [hashSecret(secret)]);
    if (!row) return undefined;
    const id = Number(row.id);
    const now = this.deps.clock.now();
    if (now - (this.lastUsedWritten.get(id) ?? -Infinity) >= LAST_USED_WRITE_MS) {
      this.lastUsedWritten.set(id, now);
      await this.deps.sql.run(TOUCH, [now, id]);
    }
    return { name: row.name, role: row.role, tokenId: id, via };
  }
}

/** API tokens on the embedded SQLite store. */
export class SqliteTokenStore extends SqlTokenStore {
  constructor(deps: { db: Database; clock: Clock }) {
    super({ sql: sqliteRunner(deps.db), clock: deps.clock });
  }
}

/** API tokens on PostgreSQL (or a compatible distributed SQL database). */
export class PgTokenStore extends SqlTokenStore {
  constructor(deps: { pool: PgPool; clock: Clock }) {
    super({ sql: pgRunner(deps.pool), clock: deps.clock });
  }
}
