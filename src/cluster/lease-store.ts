import type { Database } from '../db/database.js';
import type { PgPool } from '../db/pg/pg-database.js';
// The statements are written once with PostgreSQL's `$N`; better-sqlite3 binds them as named `@pN`.
import { forSqlite, named } from '../db/pg/sql-runner.js';

/** A lease as stored: who holds it, in which term (the fencing token), until when (ms since the epoch). */
export interface Lease {
  holder: string;
  token: number;
  expiresAt: number;
}

/**
 * The async store seam for the leader lease (STYLE.md: one owner per table, an async interface with a
 * SQLite and a PostgreSQL implementation, the engine chosen once in app.ts). Both run the same
 * portable statement (INSERT .. ON CONFLICT .. DO UPDATE .. WHERE .. RETURNING), atomic on its own.
 */
export interface LeaseStore {
  /**
   * Take or renew `name` for `holder` until `now + ttlMs`, in one atomic statement: granted when the
   * lease is free, expired (`expiresAt <= now`), or already held by `holder` and unexpired (renewal,
   * same token). A change of holder, or a holder returning after its lease ran out, raises the token.
   * Returns the lease after the call: `holder === holder` means granted.
   */
  acquire(name: string, holder: string, now: number, ttlMs: number): Promise<Lease>;
  /** Give up the lease if `holder` still holds it in term `token` (a graceful stop hands over at once). */
  release(name: string, holder: string, token: number): Promise<void>;
  read(name: string): Promise<Lease | undefined>;
  close(): Promise<void>;
}

const ACQUIRE = `
INSERT INTO cluster_lease (name, holder, token, expires_at, renewed_at) VALUES ($1, $2, 1, $3, $4)
ON CONFLICT (name) DO UPDATE SET
  token = CASE WHEN cluster_lease.holder = excluded.holder AND cluster_lease.expires_at > $4 THEN cluster_lease.token ELSE cluster_lease.token + 1 END,
  holder = excluded.holder,
  expires_at = excluded.expires_at,
  renewed_at = excluded.renewed_at
WHERE cluster_lease.holder = excluded.holder OR cluster_lease.expires_at <= $4
RETURNING holder, token, expires_at`;
// A released lease expires "at the epoch": free for anyone, and its token still counts up on the next take.
const RELEASE = `UPDATE cluster_lease SET expires_at = 0 WHERE name = $1 AND holder = $2 AND token = $3`;
const READ = `SELECT holder, token, expires_at FROM cluster_lease WHERE name = $1`;

interface LeaseRow {
  holder: string;
  token: number | string;
  expires_at: number | string;
}

function toLease(row: LeaseRow): Lease {
  // pg returns BIGINT as a string; both engines' values fit a double (ms timestamps, term counters).
  return { holder: row.holder, token: Number(row.token), expiresAt: Number(row.expires_at) };
}

/** The lease on the embedded SQLite store (several daemons on one host sharing its data dir, and tests). */
export class SqliteLeaseStore implements LeaseStore {
  private readonly acquireStmt;
  private readonly releaseStmt;
  private readonly readStmt;

  constructor(private readonly db: Database) {
    this.acquireStmt = db.prepare(forSqlite(ACQUIRE));
    this.releaseStmt = db.prepare(forSqlite(RELEASE));
    this.readStmt = db.prepare(forSqlite(READ));
  }

  async acquire(name: string, holder: string, now: number, ttlMs: number): Promise<Lease> {
    const row = this.acquireStmt.get(named([name, holder, now + ttlMs, now])) as LeaseRow | undefined;
    if (row) return toLease(row);
    return (await this.read(name))!;
  }

  async release(name: string, holder: string, token: number): Promise<void> {
    this.releaseStmt.run(named([name, holder, token]));
  }

  async read(name: string): Promise<Lease | undefined> {
    const row = this.readStmt.get(named([name])) as LeaseRow | undefined;
    return row && toLease(row);
  }

  async close(): Promise<void> {
    // The database belongs to the app; nothing of its own to close.
  }
}

/** The lease on PostgreSQL (or a compatible distributed SQL database). */
export class PgLeaseStore implements LeaseStore {
  /** `own: false`: the pool is the app's (shared with other owners) and outlives this store. */
  constructor(
    private readonly pool: PgPool,
    private readonly options: { own?: boolean } = {},
  ) {}

  async acquire(name: string, holder: string, now: number, ttlMs: number): Promise<Lease> {
    const res = await this.pool.query<LeaseRow>(ACQUIRE, [name, holder, now + ttlMs, now]);
    if (res.rows[0]) return toLease(res.rows[0]);
    return (await this.read(name))!;
  }

  async release(name: string, holder: string, token: number): Promise<void> {
    await this.pool.query(RELEASE, [name, holder, token]);
  }

  async read(name: string): Promise<Lease | undefined> {
    const res = await this.pool.query<LeaseRow>(READ, [name]);
    return res.rows[0] && toLease(res.rows[0]);
  }

  async close(): Promise<void> {
    if (this.options.own !== false) await this.pool.end();
  }
}
