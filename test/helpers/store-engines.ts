import { createHash } from 'node:crypto';
import BetterSqlite3 from 'better-sqlite3';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { openDatabase, type Database } from '../../src/db/database.js';
import { openPg, type PgPool } from '../../src/db/pg/pg-database.js';
import { PgSyncDatabase } from '../../src/db/pg/pg-sync.js';
import { tempDir } from './temp-dir.js';

/**
 * The engines a store-level suite runs against: SQLite always (a real file in a temp dir), and
 * PostgreSQL when `XCARE_TEST_DATABASE_URL` is set (`.ci/run` sets it; locally e.g.
 * postgres://xcare:xcare@127.0.0.1:5432/issue13_test). Each PostgreSQL run gets a schema of its own,
 * dropped afterwards, so suites running in parallel never see each other's rows.
 */
export interface EngineHandle<T> {
  name: 'sqlite' | 'postgres';
  open(): Promise<{ store: T; close(): Promise<void> }>;
}

export const PG_URL = process.env.XCARE_TEST_DATABASE_URL;

let schemaSeq = 0;

/**
 * A schema of its own on the test PostgreSQL (`XCARE_TEST_DATABASE_URL`): `url` connects with its search_path,
 * `drop()` removes it with everything in it. Suites running in parallel never see each other's rows.
 */
export async function pgSchema(prefix = 't'): Promise<{ schema: string; url: string; drop(): Promise<void> }> {
  if (!PG_URL) throw new Error('pgSchema needs XCARE_TEST_DATABASE_URL');
  const schema = `${prefix}_${process.pid}_${Date.now()}_${schemaSeq++}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  const url = new URL(PG_URL);
  url.searchParams.set('options', `-c search_path=${schema}`);
  return {
    schema,
    url: url.toString(),
    async drop() {
      await admin.query(`DROP SCHEMA ${schema} CASCADE`).catch(() => undefined);
      await admin.end();
    },
  };
}

/** The SQLite half of every engine list: a real file in a temp dir. */
function sqliteHandle<T>(make: (db: Database) => T): EngineHandle<T> {
  return {
    name: 'sqlite',
    async open() {
      const dir = tempDir('xcare-store-');
      const db = openDatabase(join(dir.path, 'xcare.db'));
      return {
        store: make(db),
        async close() {
          db.close();
          dir.cleanup();
        },
      };
    },
  };
}

export function engines<T>(make: { sqlite(db: Database): T; postgres(pool: PgPool): T }): EngineHandle<T>[] {
  const list: EngineHandle<T>[] = [sqliteHandle(make.sqlite)];
  if (PG_URL) {
    list.push({
      name: 'postgres',
      async open() {
        const { url, drop } = await pgSchema('t');
        const pool = await openPg(url);
        return {
          store: make.postgres(pool),
          async close() {
            await pool.end().catch(() => undefined);
            await drop();
          },
        };
      },
    });
  } else {
    process.stderr.write('\n*** store suites run on SQLite only: set XCARE_TEST_DATABASE_URL=postgres://... to run them on PostgreSQL too ***\n\n');
  }
  return list;
}

/**
 * The synchronous store (`Database`) on each engine, as the daemon's state owners use it: better-sqlite3 on a
 * file, and PgSyncDatabase on a schema of its own when `XCARE_TEST_DATABASE_URL` is set. `url` is the
 * PostgreSQL URL of that schema (for a second connection), or undefined on SQLite.
 */
export function syncEngines(): EngineHandle<{ db: Database; url?: string }>[] {
  const list: EngineHandle<{ db: Database; url?: string }>[] = [sqliteHandle((db) => ({ db }))];
  if (PG_URL) {
    list.push({
      name: 'postgres',
      async open() {
        const { url, drop } = await pgSchema('s');
        const db = new PgSyncDatabase(url);
        return {
          store: { db, url },
          async close() {
            db.close();
            await drop();
          },
        };
      },
    });
  } else {
    process.stderr.write('\n*** SKIPPED: the synchronous store suite runs on SQLite only: set XCARE_TEST_DATABASE_URL=postgres://... to run it on PostgreSQL too ***\n\n');
  }
  return list;
}

/**
 * The store the spawned daemons of the end-to-end tests run on: SQLite under their data dir (default), or
 * PostgreSQL with `XCARE_TEST_STORE=postgres` (needs `XCARE_TEST_DATABASE_URL`; `.ci/run` runs the
 * end-to-end suite once more this way). Each data dir gets a schema of its own, so daemons that share a
 * data dir (a cluster) share a store, and tests running in parallel never see each other's rows.
 * Returns the environment to spawn the daemon with (`XCARE_DATABASE_URL`).
 */
export async function daemonStoreEnv(dataDir: string): Promise<Record<string, string>> {
  if (process.env.XCARE_TEST_STORE !== 'postgres') return {};
  if (!PG_URL) throw new Error('XCARE_TEST_STORE=postgres needs XCARE_TEST_DATABASE_URL');
  const schema = `e2e_${createHash('sha256').update(resolve(dataDir)).digest('hex').slice(0, 20)}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
  } catch (err) {
    // Two daemons of one cluster starting at once: the other CREATE won.
    if (!['23505', '42P06'].includes(String((err as { code?: string }).code))) throw err;
  } finally {
    await admin.end();
  }
  const url = new URL(PG_URL);
  url.searchParams.set('options', `-c search_path=${schema}`);
  return { XCARE_DATABASE_URL: url.toString() };
}

/** Whether the end-to-end daemons run on PostgreSQL (`XCARE_TEST_STORE=postgres`): tests that read SQLite files skip. */
export const E2E_ON_POSTGRES = process.env.XCARE_TEST_STORE === 'postgres';

/**
 * Runs `sql` (no parameters) against the store of the daemon whose data dir is `dataDir`, whichever engine
 * it runs on: its SQLite file (read-only), or its PostgreSQL schema (`daemonStoreEnv`). For tests that
 * check what was committed, beyond what the API shows.
 */
export async function queryDaemonStore<T>(dataDir: string, sql: string): Promise<T[]> {
  const env = await daemonStoreEnv(dataDir);
  if (env.XCARE_DATABASE_URL) {
    const client = new pg.Client({ connectionString: env.XCARE_DATABASE_URL, types: { getTypeParser: numericTypes } });
    await client.connect();
    try {
      return (await client.query(sql)).rows as T[];
    } finally {
      await client.end();
    }
  }
  const db = new BetterSqlite3(join(dataDir, 'xcare.db'), { readonly: true });
  try {
    return db.prepare(sql).all() as T[];
  } finally {
    db.close();
  }
}

/** BIGINT and NUMERIC as numbers, as better-sqlite3 gives them (counts in the tests' queries). */
function numericTypes(oid: number, format?: string): (v: string) => unknown {
  if (oid === 20 || oid === 1700) return (v: string) => Number(v);
  return pg.types.getTypeParser(oid, format as 'text') as (v: string) => unknown;
}

/**
 * Another session holding the write lock on the daemon's store until `release()`: SQLite's BEGIN IMMEDIATE
 * (every writer waits), or on PostgreSQL `LOCK TABLE .. IN EXCLUSIVE MODE` on `tables` (writers wait,
 * readers pass, as with SQLite's WAL).
 */
export async function storeWriteLock(dataDir: string, tables: readonly string[]): Promise<{ release(): Promise<void> }> {
  const env = await daemonStoreEnv(dataDir);
  if (env.XCARE_DATABASE_URL) {
    const client = new pg.Client({ connectionString: env.XCARE_DATABASE_URL });
    await client.connect();
    await client.query('BEGIN');
    await client.query(`LOCK TABLE ${tables.join(', ')} IN EXCLUSIVE MODE`);
    let done = false;
    return {
      async release() {
        if (done) return;
        done = true;
        await client.query('COMMIT');
        await client.end();
      },
    };
  }
  const db = new BetterSqlite3(join(dataDir, 'xcare.db'));
  db.exec('BEGIN IMMEDIATE');
  return {
    async release() {
      if (!db.open) return;
      db.exec('COMMIT');
      db.close();
    },
  };
}
