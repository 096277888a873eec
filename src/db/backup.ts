import { existsSync } from 'node:fs';
import BetterSqlite3 from 'better-sqlite3';
import { XcareError } from '../errors.js';

/**
 * A consistent copy of the SQLite store taken while the daemon runs (README "Upgrade and backup"),
 * with SQLite's online backup API (better-sqlite3 `db.backup()`): pages are copied in steps from a
 * read-only connection, and SQLite restarts the copy if the daemon writes meanwhile, so the result is
 * always one committed state. Nothing is migrated or written in the source. Resolves the page count.
 * Throws XcareError `BACKUP_FAILED` naming the file for a missing source or an existing target.
 */
export async function backupDatabase(source: string, target: string): Promise<{ totalPages: number }> {
  if (!existsSync(source)) throw new XcareError('BACKUP_FAILED', `no database at ${source} (check dataDir)`);
  if (existsSync(target)) throw new XcareError('BACKUP_FAILED', `${target} exists; refusing to overwrite a backup`);
  const db = new BetterSqlite3(source, { readonly: true, fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    const result = await db.backup(target);
    return { totalPages: result.totalPages };
  } catch (err) {
    throw new XcareError('BACKUP_FAILED', `backup of ${source} to ${target} failed: ${(err as Error).message}`, 500, { cause: err });
  } finally {
    db.close();
  }
}
