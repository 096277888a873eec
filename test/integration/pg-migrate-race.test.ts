import { describe, it, expect, afterAll } from 'vitest';
import pg from 'pg';
import { migratePg } from '../../src/db/pg/pg-database.js';
import { pgMigrations } from '../../src/db/pg/pg-migrations.js';
import { PG_URL, pgSchema } from '../helpers/store-engines.js';

if (!PG_URL) {
  if (process.env.CI === 'true') throw new Error('CI=true: XCARE_TEST_DATABASE_URL must be set (.ci/run starts PostgreSQL)');
  process.stderr.write('\n*** SKIPPED: the PostgreSQL migration race test needs PostgreSQL (set XCARE_TEST_DATABASE_URL) ***\n\n');
}

/**
 * Issue 13 ("several instances starting together apply each migration once"): each daemon's first
 * PostgreSQL connection migrates through a pool of one connection (PgSyncDatabase's worker). The loser of a
 * race on a migration's version row must see that the other applied it and carry on; it used to ask the
 * pool for a second connection while still holding the only one, so its start failed after the connect
 * timeout ("timeout exceeded when trying to connect") or, without one, hung. A migration that fails for
 * another reason must fail with its own error, not that timeout.
 */
describe.skipIf(!PG_URL)('PostgreSQL migrations through a one-connection pool', () => {
  const drops: (() => Promise<void>)[] = [];
  const freshSchema = async (tag: string): Promise<string> => {
    const made = await pgSchema(`mig_${tag}`);
    drops.push(made.drop);
    return made.url;
  };
  const onePool = (url: string) => {
    const pool = new pg.Pool({ connectionString: url, max: 1, connectionTimeoutMillis: 3000 });
    pool.on('error', () => undefined);
    return pool;
  };
  afterAll(async () => {
    for (const drop of drops) await drop();
  });

  it('two instances migrating one empty schema at once both start, each migration applied once', async () => {
    const url = await freshSchema('race');
    const pools = [onePool(url), onePool(url), onePool(url)];
    try {
      const results = await Promise.allSettled(pools.map((p) => migratePg(p, pgMigrations)));
      expect(results.map((r) => (r.status === 'rejected' ? String((r.reason as Error).message) : 'ok'))).toEqual(['ok', 'ok', 'ok']);
      const rows = (await pools[0]!.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version')).rows.map((r) => r.version);
      expect(rows).toEqual(pgMigrations.map((m) => m.version).sort((a, b) => a - b));
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  }, 60_000);

  it('a migration that fails on its own fails with its own error, not a pool timeout', async () => {
    const url = await freshSchema('broken');
    const pool = onePool(url);
    try {
      await expect(migratePg(pool, [{ version: 1, name: 'broken', up: 'CREATE TABLE t (a INTEGER); SELECT no_such_column FROM t' }])).rejects.toThrow(/no_such_column/);
    } finally {
      await pool.end();
    }
  }, 30_000);
});
