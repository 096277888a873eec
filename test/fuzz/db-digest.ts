import { createHash } from 'node:crypto';
import type { Database, SqliteDatabase } from '../../src/db/database.js';

/**
 * A sha256 over every row of every table, in a stable order: "nothing stored changed" is
 * `digest(before) === digest(after)`. Rows that hold one of `excludeIds` in any column (a device the
 * fuzzer legitimately connects, whose online state is meant to change) are left out.
 */
export function dbDigest(db: Database, excludeIds: readonly string[] = []): string {
  return createHash('sha256').update(JSON.stringify(tableDigests(db, excludeIds))).digest('hex');
}

/** The digest per table, to name what changed when dbDigest differs. */
export function tableDigests(store: Database, excludeIds: readonly string[] = []): Record<string, string> {
  // The fuzzers run on the embedded SQLite store (the catalogue and raw rows below are SQLite's).
  const db = store as SqliteDatabase;
  const out: Record<string, string> = {};
  // Written by the daemon on its own schedule, whatever any peer does: the store's liveness probe.
  const own = new Set(['store_probe']);
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[];
  const excluded = new Set<unknown>(excludeIds);
  for (const { name } of tables) {
    if (own.has(name)) continue;
    const columns = (db.prepare(`PRAGMA table_info("${name}")`).all() as { name: string }[]).map((c) => `"${c.name}"`);
    const rows = db.prepare(`SELECT * FROM "${name}" ORDER BY ${columns.join(', ')}`).raw().all() as unknown[][];
    const hash = createHash('sha256');
    for (const row of rows) {
      if (row.some((v) => excluded.has(v))) continue;
      hash.update(JSON.stringify(row, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : Buffer.isBuffer(v) ? v.toString('hex') : v)));
      hash.update('\n');
    }
    out[name] = hash.digest('hex');
  }
  return out;
}
