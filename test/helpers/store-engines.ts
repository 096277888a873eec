import { join } from 'node:path';
import pg from 'pg';
import { openDatabase, type Database } from '../../src/db/database.js';
import { openPg, type PgPool } from '../../src/db/pg/pg-database.js';
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

export function engines<T>(make: { sqlite(db: Database): T; postgres(pool: PgPool): T }): EngineHandle<T>[] {
  const list: EngineHandle<T>[] = [
    {
      name: 'sqlite',
      async open() {
        const dir = tempDir('xcare-store-');
        const db = openDatabase(join(dir.path, 'xcare.db'));
        return {
          store: make.sqlite(db),
          async close() {
            db.close();
            dir.cleanup();
          },
        };
      },
    },
  ];
  if (PG_URL) {
    list.push({
      name: 'postgres',
      async open() {
        const schema = `t_${process.pid}_${Date.now()}_${schemaSeq++}`;
        const admin = new pg.Client({ connectionString: PG_URL });
        await admin.connect();
        await admin.query(`CREATE SCHEMA ${schema}`);
        const url = new URL(PG_URL);
        url.searchParams.set('options', `-c search_path=${schema}`);
        const pool = await openPg(url.toString());
        return {
          store: make.postgres(pool),
          async close() {
            await pool.end().catch(() => undefined);
            await admin.query(`DROP SCHEMA ${schema} CASCADE`);
            await admin.end();
          },
        };
      },
    });
  } else {
    process.stderr.write('\n*** store suites run on SQLite only: set XCARE_TEST_DATABASE_URL=postgres://... to run them on PostgreSQL too ***\n\n');
  }
  return list;
}
