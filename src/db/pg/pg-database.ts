import pg from 'pg';
import { pgMigrations, type PgMigration } from './pg-migrations.js';
import { refuseNewerSchema } from '../schema-version.js';

export type PgPool = pg.Pool;

/**
 * A pool on `url` with every pending migration of `list` applied, each in its own transaction. Two
 * daemons starting together do not both apply one: the version row is inserted first, inside the
 * migration's transaction, and the loser's INSERT fails on the primary key and rolls back.
 */
/**
 * Statement and lock timeouts of every store connection, as PgSyncDatabase has them (5 s, half of it for a
 * lock): a statement stuck behind another session's lock fails (55P03/57014, `locked`, the API's 503) instead
 * of holding a pool connection for as long as the lock lives, which with a pool of 4 stalled every async
 * owner (customers, API tokens, sessions, audit, the lease) behind one locked table (issue 13).
 */
export const STORE_STATEMENT_TIMEOUT_MS = 5000;

/** A pool on `url` whose idle clients may lose their server without crashing the daemon (schema applied elsewhere). */
export function pgPool(url: string, max = 4): PgPool {
  const pool = new pg.Pool({ connectionString: url, max, statement_timeout: STORE_STATEMENT_TIMEOUT_MS, lock_timeout: STORE_STATEMENT_TIMEOUT_MS / 2 });
  pool.on('error', () => undefined);
  return pool;
}

export async function openPg(url: string, list: readonly PgMigration[] = pgMigrations, options: { max?: number } = {}): Promise<PgPool> {
  // An idle client losing its server must not crash the daemon; the next query reconnects.
  const pool = pgPool(url, options.max);
  try {
    await migratePg(pool, list);
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw err;
  }
  return pool;
}

/** SQLSTATEs of a CREATE that lost a race with the same CREATE of another session: unique_violation, duplicate_table. */
const CREATE_RACE_CODES = new Set(['23505', '42P07']);

/**
 * Applies every migration of `list` not yet in `schema_migrations`, in version order, each in its own
 * transaction with its version row (so several daemons starting on one empty database apply each once).
 */
export async function migratePg(pool: PgPool, list: readonly PgMigration[]): Promise<void> {
  try {
    await pool.query('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)');
  } catch (err) {
    // IF NOT EXISTS is not atomic in PostgreSQL: two sessions creating it at once, one fails on the catalogue's
    // unique index once the other commits. The table is there then, which is all this needs.
    if (!CREATE_RACE_CODES.has(String((err as { code?: unknown }).code))) throw err;
  }
  const applied = new Set((await pool.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version));
  refuseNewerSchema(applied, list);
  for (const m of [...list].sort((a, b) => a.version - b.version)) {
    if (applied.has(m.version)) continue;
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      // A migration may rewrite a large table or wait for an old daemon's lock: no runtime timeouts here.
      await client.query('SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0');
      await client.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [m.version, m.name, new Date().toISOString()]);
      await client.query(m.up);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      // Another instance applied it meanwhile: fine. Anything else stops the start. Asked on this client: the
      // pool may hold just this one (PgSyncDatabase migrates through a pool of one), and waiting for a second
      // failed the start with a connect timeout that hid `err`.
      const again = await client.query('SELECT 1 FROM schema_migrations WHERE version = $1', [m.version]).catch(() => ({ rowCount: 0 }));
      if (again.rowCount === 0) throw err;
    } finally {
      client.release();
    }
  }
}
