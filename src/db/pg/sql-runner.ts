import type { Database } from '../database.js';
import type { PgPool } from './pg-database.js';

/**
 * One statement runner over either engine, so a store owner writes its SQL once (STYLE.md: the owner is
 * the seam where the PostgreSQL implementation sits beside the SQLite one). Statements are portable SQL
 * with PostgreSQL's `$1..$N` placeholders; the SQLite runner binds them as named `@p1..@pN`
 * (better-sqlite3), so one parameter may appear several times. Parameters are strings, numbers or null
 * (better-sqlite3 binds no booleans: pass 0/1). BIGINT columns come back from PostgreSQL as strings:
 * owners convert with Number().
 *
 * No transactions across awaits: better-sqlite3 runs one connection for the whole daemon, and an open
 * transaction spanning an await would take in whatever else ran meanwhile. An owner that needs several
 * changes to be atomic writes them as one statement (INSERT .. ON CONFLICT .. RETURNING, UPDATE ..
 * RETURNING), which both engines run atomically.
 */
export interface SqlRunner {
  readonly engine: 'sqlite' | 'postgres';
  /** The rows a query (or a statement with RETURNING) yields. */
  rows<T>(sql: string, params?: readonly unknown[]): Promise<T[]>;
  /** Runs a statement without RETURNING; resolves to the number of rows it changed. */
  run(sql: string, params?: readonly unknown[]): Promise<number>;
}

/** `$N` -> `@pN` for better-sqlite3's named parameters. */
export function forSqlite(sql: string): string {
  return sql.replace(/\$(\d+)/g, '@p$1');
}

/** `[a, b]` -> `{ p1: a, p2: b }`: the values of a statement passed through forSqlite. */
export function named(values: readonly unknown[]): Record<string, unknown> {
  return Object.fromEntries(values.map((v, i) => [`p${i + 1}`, v]));
}

/** The runner on the embedded SQLite store; statements are prepared once per SQL text. */
export function sqliteRunner(db: Database): SqlRunner {
  const prepared = new Map<string, ReturnType<Database['prepare']>>();
  const statement = (sql: string) => {
    let s = prepared.get(sql);
    if (!s) {
      s = db.prepare(forSqlite(sql));
      prepared.set(sql, s);
    }
    return s;
  };
  return {
    engine: 'sqlite',
    async rows<T>(sql: string, params: readonly unknown[] = []): Promise<T[]> {
      const s = statement(sql);
      if (s.reader) return s.all(named(params)) as T[];
      s.run(named(params));
      return [];
    },
    async run(sql: string, params: readonly unknown[] = []): Promise<number> {
      return statement(sql).run(named(params)).changes;
    },
  };
}

/** The runner on PostgreSQL (or a compatible distributed SQL database): each statement on a pooled client. */
export function pgRunner(pool: PgPool): SqlRunner {
  return {
    engine: 'postgres',
    async rows<T>(sql: string, params: readonly unknown[] = []): Promise<T[]> {
      return (await pool.query(sql, params as unknown[])).rows as T[];
    },
    async run(sql: string, params: readonly unknown[] = []): Promise<number> {
      return (await pool.query(sql, params as unknown[])).rowCount ?? 0;
    },
  };
}
