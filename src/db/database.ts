import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Clock, TimerHandle } from '../clock.js';
import type { Logger } from '../log.js';
import { migrations, type Migration } from './migrations/index.js';
import { refuseNewerSchema } from './schema-version.js';

/** The embedded engine's connection (better-sqlite3). */
export type SqliteDatabase = BetterSqlite3.Database;

/** What `Statement.run` returns: rows changed; `lastInsertRowid` only on SQLite (portable code writes RETURNING). */
export interface RunResult {
  changes: number;
  lastInsertRowid: number | bigint;
}

/** A prepared statement: `?` or `@name` parameters (better-sqlite3's binding rules). */
export interface Statement {
  /** Whether the statement returns rows (a SELECT, or anything with RETURNING). */
  readonly reader: boolean;
  run(...params: unknown[]): RunResult;
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
}

/**
 * The synchronous store every state owner writes to: better-sqlite3 (the embedded default) or
 * `PgSyncDatabase` (src/db/pg/pg-sync.ts, `store.url`). SQL written against it must run on both: portable SQL
 * only (README "At scale", PostgreSQL). Transactions are synchronous functions, nested ones savepoints.
 */
export interface Database {
  readonly open: boolean;
  readonly inTransaction: boolean;
  prepare(sql: string): Statement;
  exec(sql: string): unknown;
  transaction<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R;
  close(): unknown;
  /**
   * PostgreSQL only: the next id of `table`'s identity column, reserved ahead in blocks, so an INSERT can name
   * its id instead of reading it back with RETURNING (one round trip per row saved). Undefined on SQLite, where
   * RETURNING costs nothing: callers use it when present.
   */
  reserveId?(table: string): number;
}

/**
 * Open the SQLite store: WAL (readers never block the writer), a busy timeout, foreign keys,
 * and every pending versioned migration applied in one transaction each.
 */
/**
 * `head VALUES-rows tail` for many rows at once: one statement per `chunk` rows instead of one per row (on
 * PostgreSQL every statement is a round trip of the daemon's thread, or one more statement the server runs).
 * `head` ends where the rows start (`INSERT INTO t (a, b) VALUES`), `row` is one row's placeholders
 * (`(?, ?)`), `tail` follows the rows (`ON CONFLICT .. DO NOTHING RETURNING a`). Returns what the
 * statements returned (RETURNING), in order; [] without RETURNING. A row must not repeat a conflict key
 * within one call (PostgreSQL refuses to update one row twice in a statement).
 */
export function writeRows(db: Database, head: string, row: string, rows: readonly (readonly unknown[])[], tail = '', chunk = 250): unknown[] {
  const out: unknown[] = [];
  const returning = /\bRETURNING\b/i.test(tail);
  for (let i = 0; i < rows.length; i += chunk) {
    const part = rows.slice(i, i + chunk);
    const stmt = db.prepare(`${head} ${part.map(() => row).join(', ')} ${tail}`);
    const values = part.flat();
    if (returning) out.push(...stmt.all(values));
    else stmt.run(values);
  }
  return out;
}

export function openDatabase(file: string, list: readonly Migration[] = migrations): SqliteDatabase {
  if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
  const db = new BetterSqlite3(file);
  db.pragma('journal_mode = WAL');
  // NORMAL is durable across a process crash (kill -9) in WAL mode; only a power loss may drop the last commits.
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
  db.pragma('foreign_keys = ON');
  migrate(db, list);
  return db;
}

export function migrate(db: SqliteDatabase, list: readonly Migration[]): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)');
  const applied = new Set(
    (db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]).map((r) => r.version),
  );
  refuseNewerSchema(applied, list);
  const sorted = [...list].sort((a, b) => a.version - b.version);
  for (const m of sorted) {
    if (applied.has(m.version)) continue;
    db.transaction(() => {
      db.exec(m.up);
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(
        m.version,
        m.name,
        new Date().toISOString(),
      );
    })();
  }
}

export function schemaVersion(db: Database): number {
  const row = db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number | null };
  return row.v ?? 0;
}

/**
 * Why writes to the store fail (the reason /readyz names), by SQLite result code or PostgreSQL SQLSTATE:
 * `unreachable` is PostgreSQL only (connection refused, lost, or the server shutting down).
 */
export const STORE_FAULT_REASONS = ['read_only', 'disk_full', 'locked', 'io_error', 'unreachable', 'closed', 'other'] as const;
export type StoreFaultReason = (typeof STORE_FAULT_REASONS)[number];
/** The components that report store faults (`StoreHealth.failed(source, ...)`): the probe, the evaluator, the tickets. */
const STORE_WRITERS = ['probe', 'health', 'tickets'] as const;

export function storeFaultReason(err: unknown): StoreFaultReason {
  const code = String((err as { code?: unknown })?.code ?? '');
  const message = String((err as { message?: unknown })?.message ?? '');
  // PostgreSQL: read_only_sql_transaction (a standby, or default_transaction_read_only), disk_full, lock and
  // statement timeouts, deadlocks and serialization failures, then the connection classes.
  if (code === '25006') return 'read_only';
  if (code === '53100') return 'disk_full';
  if (code === '55P03' || code === '57014' || code === '40P01' || code === '40001') return 'locked';
  if (code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03') return 'unreachable';
  if (code === '58030') return 'io_error';
  if (code.startsWith('SQLITE_READONLY') || /readonly|read-only/i.test(message)) return 'read_only';
  if (code.startsWith('SQLITE_FULL') || /disk is full|database or disk is full/i.test(message)) return 'disk_full';
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED') || /database is locked/i.test(message)) return 'locked';
  if (code.startsWith('SQLITE_IOERR') || code.startsWith('SQLITE_CANTOPEN') || code.startsWith('SQLITE_CORRUPT')) return 'io_error';
  if (/not open/i.test(message)) return 'closed';
  return 'other';
}

export interface StoreFault {
  reason: StoreFaultReason;
  /** The component whose write failed (`health`, `tickets`, `probe`...). */
  source: string;
  message: string;
  since: number;
}

/**
 * Whether the store takes writes (issue 8, fault 3: a storage fault must be visible). Components report each
 * write's outcome; a periodic probe write (`probeWrite`) notices a read-only or full store even when nothing else
 * writes. /readyz answers 503 naming the reason while any source is failing, `fleet_store_healthy` is 0, and the
 * first failure and the recovery are logged.
 */
export class StoreHealth {
  private readonly faults = new Map<string, StoreFault>();
  private readonly listeners: ((fault: StoreFault | null, source: string) => void)[] = [];
  private readonly failureListeners: ((fault: StoreFault) => void)[] = [];

  constructor(private readonly now: () => number = () => Date.now()) {}

  failed(source: string, err: unknown): StoreFault {
    const existing = this.faults.get(source);
    const reason = storeFaultReason(err);
    const fault: StoreFault = { reason, source, message: String((err as Error)?.message ?? err), since: existing?.since ?? this.now() };
    this.faults.set(source, fault);
    for (const l of this.failureListeners) l(fault);
    if (!existing || existing.reason !== reason) for (const l of this.listeners) l(fault, source);
    return fault;
  }

  ok(source: string): void {
    if (!this.faults.delete(source)) return;
    for (const l of this.listeners) l(null, source);
  }

  healthy(): boolean {
    return this.faults.size === 0;
  }

  current(): StoreFault[] {
    return [...this.faults.values()];
  }

  /** Called on every failed write, repeated or not (for counting). */
  onFailure(listener: (fault: StoreFault) => void): void {
    this.failureListeners.push(listener);
  }

  /** Called on every change: a new fault (or a new reason), or `null` when `source` recovered. */
  onChange(listener: (fault: StoreFault | null, source: string) => void): void {
    this.listeners.push(listener);
  }
}

/**
 * One small write that proves the store takes writes: a read-only file, a full disk or a file system gone
 * read-only fail here even when the fleet is quiet. It rewrites one row of `store_probe` (migration 005).
 */
export function probeWrite(db: Database, now: number): void {
  db.prepare('INSERT INTO store_probe (id, at) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET at = excluded.at').run(now);
}

/**
 * Probes the store every `intervalMs` (and once at start) and reports to `health`; logs each fault when it
 * starts or changes reason, and the recovery. Metrics: `fleet_store_healthy` (1/0, at scrape time) and
 * `fleet_store_write_failures_total{source,reason}`.
 */
export class StoreMonitor {
  private timer?: TimerHandle;
  private running = false;
  private failures?: Counter<'source' | 'reason'>;

  constructor(
    private readonly deps: { db: Database; clock: Clock; log: Logger; health: StoreHealth; metrics?: Registry; intervalMs?: number },
  ) {}

  start(): void {
    const { health, log, metrics } = this.deps;
    if (metrics && !this.failures) {
      new Gauge({
        name: 'fleet_store_healthy',
        help: '1 while the store takes writes, 0 while any write or probe fails (read-only, disk full, locked, I/O error)',
        registers: [metrics],
        collect() {
          this.set(health.healthy() ? 1 : 0);
        },
      });
      this.failures = new Counter({
        name: 'fleet_store_write_failures_total',
        help: 'Store writes that failed, by component and reason',
        labelNames: ['source', 'reason'] as const,
        registers: [metrics],
      });
      // Every known pair at 0 from the start, so rate()/increase() see the first failure (issue 10).
      for (const source of STORE_WRITERS) for (const reason of STORE_FAULT_REASONS) this.failures.inc({ source, reason }, 0);
    }
    health.onFailure((fault) => this.failures?.inc({ source: fault.source, reason: fault.reason }));
    health.onChange((fault, source) => {
      if (fault) {
        log.error({ source, reason: fault.reason, err: { message: fault.message } }, 'store fault: writes fail; /readyz answers 503');
      } else {
        log.info({ source }, 'store writes succeed again');
      }
    });
    this.running = true;
    this.probe();
  }

  stop(): void {
    this.running = false;
    this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** One probe write now; reschedules itself. */
  probe(): void {
    if (!this.deps.db.open) return;
    try {
      probeWrite(this.deps.db, this.deps.clock.now());
      this.deps.health.ok('probe');
    } catch (err) {
      this.deps.health.failed('probe', err);
    }
    if (!this.running) return;
    this.deps.clock.clearTimeout(this.timer);
    this.timer = this.deps.clock.setTimeout(() => this.probe(), this.deps.intervalMs ?? 5000);
  }
}
