import { describe, it, expect } from 'vitest';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { openDatabase } from '../../src/db/database.js';
import { PgSyncDatabase } from '../../src/db/pg/pg-sync.js';
import { migrations } from '../../src/db/migrations/index.js';
import { tempDir } from '../helpers/temp-dir.js';
import { PG_URL, pgSchema } from '../helpers/store-engines.js';

const known = Math.max(...migrations.map((m) => m.version));
const refused = new RegExp(`the store is at schema version 99, newer than this xcared knows \\(${known}\\)`);

/** A store a newer xcared migrated is refused at start on both engines, and left as it was. */
describe('a store at a newer schema version', () => {
  it('SQLite: refused, nothing changed', () => {
    const dir = tempDir('xcare-newer-');
    try {
      const file = join(dir.path, 'xcare.db');
      openDatabase(file).close();
      const raw = new BetterSqlite3(file);
      raw.prepare(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'from the future', 'x')`).run();
      raw.close();
      expect(() => openDatabase(file)).toThrow(refused);
      const again = new BetterSqlite3(file, { readonly: true });
      expect((again.prepare('SELECT COUNT(*) AS n FROM schema_migrations').get() as { n: number }).n).toBe(migrations.length + 1);
      again.close();
    } finally {
      dir.cleanup();
    }
  });

  it.skipIf(!PG_URL)('PostgreSQL: refused at open', async () => {
    const { url, drop } = await pgSchema('newer');
    try {
      new PgSyncDatabase(url).close();
      const db = new PgSyncDatabase(url);
      db.prepare(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'from the future', 'x')`).run();
      db.close();
      expect(() => new PgSyncDatabase(url)).toThrow(refused);
    } finally {
      await drop();
    }
  });
});
