import { describe, it, expect } from 'vitest';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

/**
 * STYLE.md "one owner per table", issue 13 item 2: a table with a PostgreSQL owner is reached only through
 * that owner (its async interface), so the engine switch stays one place. SQL naming one of these tables
 * anywhere else in src/ (outside the two migration sets) fails here.
 */
const ROOT = join(import.meta.dirname, '..', '..');
const OWNERS: Record<string, string[]> = {
  customers: ['src/customers/customer-store.ts'],
  api_tokens: ['src/access/token-store.ts', 'src/access/session-store.ts' /* reads it: a revoked token's session never resolves */],
  console_sessions: ['src/access/session-store.ts'],
  audit_log: ['src/audit/audit-log.ts'],
  cluster_lease: ['src/cluster/lease-store.ts'],
};
const MIGRATIONS = ['src/db/migrations/', 'src/db/pg/pg-migrations.ts'];

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith('.ts') ? [path] : [];
  });
}

describe('tables with a PostgreSQL owner are written and read only by it', () => {
  const files = sources(join(ROOT, 'src')).map((f) => ({ rel: relative(ROOT, f), text: readFileSync(f, 'utf8') }));
  it.each(Object.entries(OWNERS))('%s: SQL only in its owner', (table, owners) => {
    const sql = new RegExp(`\\b(FROM|INTO|UPDATE|JOIN|TABLE)\\s+${table}\\b`, 'i');
    const users = files.filter((f) => sql.test(f.text) && !MIGRATIONS.some((m) => f.rel.startsWith(m))).map((f) => f.rel);
    expect(users.sort()).toEqual([...owners].sort());
  });
});
