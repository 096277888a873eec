import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import type { Database } from '../../src/db/database.js';
import pg from 'pg';
import { openPg, type PgPool } from '../../src/db/pg/pg-database.js';
import { pgMigrations } from '../../src/db/pg/pg-migrations.js';
import { engines, PG_URL, type EngineHandle } from '../helpers/store-engines.js';

/**
 * Issue 13, item 2: one set of migrations per engine, the same schema at the same version. Compared from
 * each engine's own catalogue: tables, columns (name, nullability, type family), unique constraints and
 * indexes (name, columns, unique, partial), foreign keys (column, target, ON DELETE), and the version.
 * A migration added to one engine and not the other fails here. CHECK constraints have no catalogue in
 * SQLite: the second suite proves them by behaviour (the same bad rows refused by both engines).
 */
type Engine = { kind: 'sqlite'; db: Database } | { kind: 'postgres'; pool: PgPool };

interface Schema {
  version: number;
  tables: Record<string, { columns: Record<string, string>; unique: string[]; indexes: string[]; foreignKeys: string[] }>;
}

function family(declared: string): string {
  const t = declared.toLowerCase();
  if (/int/.test(t)) return 'integer';
  if (t === 'real' || t === 'double precision') return 'real';
  if (t === 'blob' || t === 'bytea') return 'blob';
  if (t === 'text') return 'text';
  return `other:${t}`;
}

function sqliteSchema(db: Database): Schema {
  const tables: Schema['tables'] = {};
  const names = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[]).map((r) => r.name);
  for (const table of names) {
    const cols = db.prepare(`SELECT name, type, "notnull" AS nn, pk FROM pragma_table_info(?)`).all(table) as { name: string; type: string; nn: number; pk: number }[];
    const columns = Object.fromEntries(cols.map((c) => [c.name, `${family(c.type)} ${c.nn || c.pk ? 'not null' : 'null'}`]));
    const indexList = db.prepare('SELECT name, "unique" AS u, origin, partial FROM pragma_index_list(?)').all(table) as { name: string; u: number; origin: string; partial: number }[];
    const colsOf = (index: string) => (db.prepare('SELECT name FROM pragma_index_info(?) ORDER BY seqno').all(index) as { name: string }[]).map((r) => r.name).join(',');
    const unique = indexList.filter((i) => i.origin === 'u').map((i) => colsOf(i.name)).sort();
    const indexes = indexList.filter((i) => i.origin === 'c').map((i) => `${i.name}(${colsOf(i.name)})${i.u ? ' unique' : ''}${i.partial ? ' partial' : ''}`).sort();
    const fks = db.prepare('SELECT "from" AS col, "table" AS ref, "to" AS refcol, on_delete FROM pragma_foreign_key_list(?)').all(table) as { col: string; ref: string; refcol: string; on_delete: string }[];
    const foreignKeys = fks.map((f) => `${f.col} -> ${f.ref}(${f.refcol}) on delete ${f.on_delete.toLowerCase()}`).sort();
    tables[table] = { columns, unique, indexes, foreignKeys };
  }
  const version = (db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number }).v;
  return { version, tables };
}

const PG_DELETE: Record<string, string> = { a: 'no action', c: 'cascade', r: 'restrict', n: 'set null', d: 'set default' };

async function pgSchema(pool: PgPool): Promise<Schema> {
  const tables: Schema['tables'] = {};
  const cols = await pool.query<{ table_name: string; column_name: string; data_type: string; is_nullable: string }>(
    `SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position`,
  );
  for (const c of cols.rows) {
    const t = (tables[c.table_name] ??= { columns: {}, unique: [], indexes: [], foreignKeys: [] });
    t.columns[c.column_name] = `${family(c.data_type)} ${c.is_nullable === 'YES' ? 'null' : 'not null'}`;
  }
  const constraints = await pool.query<{ tbl: string; contype: string; cols: string; ref: string | null; refcols: string | null; deltype: string; index: string | null }>(
    `SELECT cl.relname AS tbl, c.contype,
            (SELECT string_agg(a.attname, ',' ORDER BY k.ord) FROM unnest(c.conkey) WITH ORDINALITY k(n, ord) JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n) AS cols,
            rcl.relname AS ref,
            (SELECT string_agg(a.attname, ',' ORDER BY k.ord) FROM unnest(c.confkey) WITH ORDINALITY k(n, ord) JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n) AS refcols,
            c.confdeltype AS deltype, ic.relname AS index
       FROM pg_constraint c JOIN pg_class cl ON cl.oid = c.conrelid JOIN pg_namespace ns ON ns.oid = cl.relnamespace
       LEFT JOIN pg_class rcl ON rcl.oid = c.confrelid LEFT JOIN pg_class ic ON ic.oid = c.conindid
      WHERE ns.nspname = current_schema() AND c.contype IN ('u', 'f', 'p')`,
  );
  const constraintIndexes = new Set<string>();
  for (const c of constraints.rows) {
    if (c.index) constraintIndexes.add(c.index);
    if (c.contype === 'u') tables[c.tbl]!.unique.push(c.cols);
    if (c.contype === 'f') tables[c.tbl]!.foreignKeys.push(`${c.cols} -> ${c.ref}(${c.refcols}) on delete ${PG_DELETE[c.deltype]}`);
  }
  const indexes = await pool.query<{ tbl: string; name: string; cols: string; unique: boolean; partial: boolean }>(
    `SELECT t.relname AS tbl, i.relname AS name, ix.indisunique AS unique, ix.indpred IS NOT NULL AS partial,
            (SELECT string_agg(a.attname, ',' ORDER BY k.ord) FROM unnest(ix.indkey::int2[]) WITH ORDINALITY k(n, ord) JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.n) AS cols
       FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid JOIN pg_class t ON t.oid = ix.indrelid JOIN pg_namespace ns ON ns.oid = t.relnamespace
      WHERE ns.nspname = current_schema()`,
  );
  for (const i of indexes.rows) {
    if (constraintIndexes.has(i.name)) continue;
    tables[i.tbl]!.indexes.push(`${i.name}(${i.cols})${i.unique ? ' unique' : ''}${i.partial ? ' partial' : ''}`);
  }
  for (const t of Object.values(tables)) {
    t.unique.sort();
    t.indexes.sort();
    t.foreignKeys.sort();
  }
  const version = Number((await pool.query<{ v: number }>('SELECT MAX(version) AS v FROM schema_migrations')).rows[0]!.v);
  return { version, tables };
}

const handles = engines<Engine>({ sqlite: (db) => ({ kind: 'sqlite', db }), postgres: (pool) => ({ kind: 'postgres', pool }) });

async function run(engine: Engine, sql: string): Promise<void> {
  if (engine.kind === 'sqlite') engine.db.exec(sql);
  else await engine.pool.query(sql);
}

describe.skipIf(!PG_URL)('the PostgreSQL schema is the SQLite schema (XCARE_TEST_DATABASE_URL)', () => {
  const opened: { close(): Promise<void> }[] = [];
  let sqlite: Schema;
  let postgres: Schema;

  beforeAll(async () => {
    for (const h of handles) {
      const o = await h.open();
      opened.push(o);
      if (o.store.kind === 'sqlite') sqlite = sqliteSchema(o.store.db);
      else postgres = await pgSchema(o.store.pool);
    }
  });
  afterAll(async () => {
    for (const o of opened) await o.close();
  });

  it('both engines stand at the same migration version', () => {
    expect(postgres.version).toBe(sqlite.version);
  });

  it('the same tables', () => {
    expect(Object.keys(postgres.tables).sort()).toEqual(Object.keys(sqlite.tables).sort());
  });

  it('the same columns in every table: names, nullability and type family', () => {
    for (const table of Object.keys(sqlite.tables)) expect({ table, columns: postgres.tables[table]?.columns }).toEqual({ table, columns: sqlite.tables[table]!.columns });
  });

  it('the same unique constraints, indexes and foreign keys', () => {
    for (const [table, s] of Object.entries(sqlite.tables)) {
      const p = postgres.tables[table]!;
      expect({ table, unique: p.unique, indexes: p.indexes, foreignKeys: p.foreignKeys }).toEqual({ table, unique: s.unique, indexes: s.indexes, foreignKeys: s.foreignKeys });
    }
  });
});

/** Rows each engine must refuse: every CHECK, UNIQUE and FOREIGN KEY of the schema is the same on both. */
const REFUSED: [string, string][] = [
  ['a device of an unknown type', `INSERT INTO devices (id, type, customer, installer, tier, token_hash, created_at) VALUES ('x1', 'router', 'c', 'i', 'none', 'h', 1)`],
  ['a device of an unknown tier', `INSERT INTO devices (id, type, customer, installer, tier, token_hash, created_at) VALUES ('x2', 'gateway', 'c', 'i', 'gold', 'h', 1)`],
  ['a device without a customer', `INSERT INTO devices (id, type, installer, tier, token_hash, created_at) VALUES ('x3', 'gateway', 'i', 'none', 'h', 1)`],
  ['a second device with the same id', `INSERT INTO devices (id, type, customer, installer, tier, token_hash, created_at) VALUES ('gw-1', 'gateway', 'c', 'i', 'none', 'h', 1)`],
  ['state of an unknown device', `INSERT INTO device_state (device_id) VALUES ('nobody')`],
  ['a ticket of an unknown severity', `INSERT INTO tickets (kind, family, subject, origin, classification, severity, status, summary, eligible, tier, band, opened_kind, opened_severity, opened_at, waiting_since, updated_at, day_key) VALUES ('k', 'k', 's', 'auto', 'problem', 'critical', 'open', 's', 1, 'none', 'paid', 'k', 'low', 1, 1, 1, 'd')`],
  ['a ticket event of an unknown ticket', `INSERT INTO ticket_events (ticket_id, ts, type) VALUES (999, 1, 'opened')`],
  ['a ticket event of an unknown type', `INSERT INTO ticket_events (ticket_id, ts, type) VALUES (1, 1, 'deleted')`],
  ['two outbox events with one idempotency key', `INSERT INTO outbox (ticket_id, event_type, payload, idempotency_key, created_at, next_attempt_at) VALUES (1, 'e', '{}', 'k1', 1, 1)`],
  ['a second offer of one patch to one device', `INSERT INTO patch_offers (device_id, patch_id, offered_at) VALUES ('gw-1', 'p1', 2)`],
  ['a rollout in an unknown state', `INSERT INTO rollouts (id, patch_id, spec, state, created_at, updated_at) VALUES ('r2', 'p1', '{}', 'stuck', 1, 1)`],
  ['a rollout device of an unknown rollout', `INSERT INTO rollout_devices (rollout_id, device_id, state) VALUES ('r-none', 'gw-1', 'pending')`],
  ['a token of an unknown role', `INSERT INTO api_tokens (name, role, token_hash, created_at, created_by) VALUES ('t2', 'root', 'h2', 1, 'admin')`],
  ['two live tokens of one name', `INSERT INTO api_tokens (name, role, token_hash, created_at, created_by) VALUES ('t1', 'viewer', 'h3', 1, 'admin')`],
  ['a session of an unknown token', `INSERT INTO console_sessions (id_hash, token_id, name, role, csrf, credential_hash, created_at, expires_at) VALUES ('s2', 999, 'n', 'viewer', 'c', 'h', 1, 2)`],
];

const SEED = [
  `INSERT INTO devices (id, type, customer, installer, tier, token_hash, created_at) VALUES ('gw-1', 'gateway', 'c', 'i', 'none', 'h', 1)`,
  `INSERT INTO tickets (kind, family, subject, origin, classification, severity, status, summary, eligible, tier, band, opened_kind, opened_severity, opened_at, waiting_since, updated_at, day_key) VALUES ('k', 'k', 's', 'auto', 'problem', 'low', 'open', 's', 1, 'none', 'paid', 'k', 'low', 1, 1, 1, 'd')`,
  `INSERT INTO outbox (ticket_id, event_type, payload, idempotency_key, created_at, next_attempt_at) VALUES (1, 'e', '{}', 'k1', 1, 1)`,
  `INSERT INTO patch_offers (device_id, patch_id, offered_at) VALUES ('gw-1', 'p1', 1)`,
  `INSERT INTO api_tokens (name, role, token_hash, created_at, created_by) VALUES ('t1', 'viewer', 'h1', 1, 'admin')`,
  // A revoked token's name is free again: only live names are unique.
  `UPDATE api_tokens SET revoked_at = 2 WHERE name = 't1'`,
  `INSERT INTO api_tokens (name, role, token_hash, created_at, created_by) VALUES ('t1', 'viewer', 'h4', 3, 'admin')`,
];

describe.each(handles as EngineHandle<Engine>[])('the schema on $name refuses what the other engine refuses', (handle) => {
  let engine: Engine;
  let close: () => Promise<void>;
  beforeAll(async () => {
    ({ store: engine, close } = await handle.open());
    for (const sql of SEED) await run(engine, sql);
  });
  afterAll(async () => close());

  it.each(REFUSED)('refuses %s', async (_what, sql) => {
    await expect(run(engine, sql)).rejects.toThrow();
  });
});

describe.skipIf(!PG_URL)('PostgreSQL migrations with several daemons starting at once', () => {
  it('three daemons opening an empty database together all start, and each migration is applied once', async () => {
    const schema = `t_${process.pid}_${Date.now()}_race`;
    const admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    await admin.query(`CREATE SCHEMA ${schema}`);
    const url = new URL(PG_URL!);
    url.searchParams.set('options', `-c search_path=${schema}`);
    const pools: PgPool[] = [];
    try {
      const opened = await Promise.allSettled([0, 1, 2].map(() => openPg(url.toString())));
      for (const o of opened) if (o.status === 'fulfilled') pools.push(o.value);
      expect(opened.map((o) => o.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled']);
      const versions = (await pools[0]!.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version')).rows.map((r) => r.version);
      expect(versions).toEqual(pgMigrations.map((m) => m.version));
      expect((await pools[1]!.query("SELECT COUNT(*)::int AS n FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'audit_log'")).rows[0].n).toBe(1);
    } finally {
      for (const p of pools) await p.end();
      await admin.query(`DROP SCHEMA ${schema} CASCADE`);
      await admin.end();
    }
  });
});
