import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import type { Database, RunResult, Statement } from '../database.js';
import { mapSqlCode } from './sql-scan.js';

/**
 * The synchronous store API of the daemon (`Database`, the subset of better-sqlite3 it uses: `prepare` with
 * `run`/`get`/`all`, `transaction`, `exec`, `open`, `close`) over PostgreSQL (issue 13, item 2: `store.url`).
 *
 * Why synchronous: the daemon's state owners (registry, device state, tickets and outbox, patches, rollouts,
 * integrity) commit each change before acting on it inside one synchronous step, e.g. a health tick writes
 * its tickets and outbox rows in one transaction and publishes only after COMMIT. better-sqlite3 makes
 * that step atomic with respect to the event loop; an async driver would let other work interleave
 * inside it. So each statement goes to a worker thread that holds one PostgreSQL connection (`pg`), and
 * this thread waits for the answer (Atomics.wait on a shared flag, then receiveMessageOnPort). The cost is
 * one network round trip per statement on the daemon's thread: ~0.1-0.3 ms on loopback or a LAN (README
 * "At scale" has the figures); a database far away makes every write that slow.
 *
 * Semantics kept from better-sqlite3: `?` and `@name` parameters (translated to `$N`), integers, BIGINT and
 * NUMERIC as numbers, booleans as 1/0, row keys in the case the SQL wrote them (PostgreSQL folds unquoted
 * aliases to lower case), nested transactions as savepoints, a transaction function may not return a
 * promise. Not kept: `lastInsertRowid` (throws: write `RETURNING id`). Writes inside a transaction are
 * queued and sent together with its next read or its COMMIT (one round trip for a tick's hundreds of
 * writes); so a failing write inside a transaction throws there, not at its `run()` (the transaction
 * fails as a whole either way: PostgreSQL aborts it at the first error).
 *
 * Failures: every PostgreSQL error keeps its SQLSTATE as `code` (23505 unique, 23503 foreign key...); a
 * database that is down fails each statement at once with 08001 while a reconnect runs in the background;
 * a statement that takes longer than `statementTimeoutMs` (default 5 s) is cancelled (57014); a connection
 * lost inside a transaction fails the rest of it, COMMIT included (08006), never half-applies it.
 */
export class PgSyncDatabase implements Database {
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly flag: Int32Array;
  private seq = 0;
  private depth = 0;
  /** Writes (`run`) inside a transaction not yet sent: they go with the next round trip. */
  private pending: Deferred[] = [];
  /** A BEGIN not sent yet: it goes first with the transaction's first round trip. */
  private beginQueued = false;
  private readonly waitMs: number;
  open = true;

  constructor(url: string, options: { statementTimeoutMs?: number; connectTimeoutMs?: number } = {}) {
    const statementTimeoutMs = options.statementTimeoutMs ?? 5000;
    const connectTimeoutMs = options.connectTimeoutMs ?? 5000;
    this.waitMs = Math.max(statementTimeoutMs, connectTimeoutMs) + 1000;
    const signal = new SharedArrayBuffer(4);
    this.flag = new Int32Array(signal);
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    this.worker = new Worker(workerScript(), {
      workerData: { url, signal, port: port2, statementTimeoutMs, connectTimeoutMs },
      transferList: [port2],
    });
    this.worker.unref();
    // Connect and apply pending migrations (src/db/pg/pg-migrations.ts) before anything else runs.
    try {
      this.call({ kind: 'open' }, connectTimeoutMs * 3 + 30_000);
    } catch (err) {
      this.open = false;
      void this.worker.terminate();
      this.port.close();
      throw err;
    }
  }

  /** Ids reserved per table (`reserveId`), handed out in order. */
  private readonly reserved = new Map<string, number[]>();

  /**
   * The next id of `table`'s identity column: 64 are taken from its sequence in one round trip and handed out in
   * order, so inserts name their ids and need no RETURNING read. Ids of a failed transaction are not reused
   * (gaps, as any sequence has). `table` is one of our own table names (checked).
   */
  reserveId(table: string): number {
    if (!/^[a-z_]+$/.test(table)) throw new Error(`not a table name: ${table}`);
    let ids = this.reserved.get(table);
    if (!ids || ids.length === 0) {
      const { rows = [] } = this.call({
        kind: 'query',
        sql: `SELECT nextval(pg_get_serial_sequence('${table}', 'id')) AS id FROM generate_series(1, 64) ORDER BY 1`,
        params: [],
      });
      ids = rows.map((r) => Number(r.id));
      this.reserved.set(table, ids);
    }
    return ids.shift()!;
  }

  get inTransaction(): boolean {
    return this.depth > 0;
  }

  prepare(sql: string): Statement {
    return new PgSyncStatement(this, sql);
  }

  exec(sql: string): this {
    this.call({ kind: 'exec', sql });
    return this;
  }

  transaction<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R {
    return (...args: A): R => {
      // BEGIN and SAVEPOINT travel with the transaction's first round trip, RELEASE with a later one: a
      // mutation nested in a tick costs no round trip of its own (issue 13: a mass outage nests one per device).
      const savepoint = this.depth > 0 ? `xcare_sp_${this.depth}` : null;
      const marker: Deferred | undefined = savepoint ? { sql: `SAVEPOINT ${savepoint}`, params: [], changes: undefined } : undefined;
      if (marker) this.pending.push(marker);
      else this.beginQueued = true;
      this.depth++;
      let result: R;
      try {
        result = fn(...args);
        if (result && typeof (result as { then?: unknown }).then === 'function') {
          throw new TypeError('Transaction function cannot return a promise');
        }
      } catch (err) {
        this.depth--;
        this.undo(marker, savepoint);
        throw err;
      }
      this.depth--;
      if (savepoint) this.pending.push({ sql: `RELEASE SAVEPOINT ${savepoint}`, params: [], changes: undefined });
      else if (this.beginQueued && this.pending.length === 0) this.beginQueued = false; // nothing was written or read
      else this.call({ kind: 'commit' });
      return result;
    };
  }

  /**
   * Undo a transaction (no `marker`) or a savepoint whose function threw. What was never sent is dropped
   * without a round trip; otherwise ROLLBACK (TO SAVEPOINT) goes to the server. Errors of the undo itself are
   * swallowed: the function's error says more, and a lost connection has rolled back already.
   */
  private undo(marker: Deferred | undefined, savepoint: string | null): void {
    if (marker) {
      const at = this.pending.indexOf(marker);
      if (at >= 0) {
        this.pending.length = at;
        return;
      }
      this.pending = [];
      try {
        this.call({ kind: 'exec', sql: `ROLLBACK TO SAVEPOINT ${savepoint}` });
      } catch {
        // see above
      }
      return;
    }
    this.pending = [];
    if (this.beginQueued) {
      this.beginQueued = false;
      return;
    }
    try {
      this.call({ kind: 'rollback' });
    } catch {
      // see above
    }
  }

  close(): this {
    if (!this.open) return this;
    try {
      this.call({ kind: 'close' }, 5000);
    } catch {
      // Closing anyway.
    }
    this.open = false;
    void this.worker.terminate();
    this.port.close();
    return this;
  }

  /** Sends one request and waits for its reply. Throws the worker's error with its SQLSTATE `code`. */
  call(req: { kind: string; sql?: string; params?: unknown[] }, waitMs = this.waitMs): { rows?: Record<string, unknown>[]; changes?: number } {
    if (!this.open) throw Object.assign(new TypeError('The database connection is not open'), { code: 'XCARE_STORE_CLOSED' });
    const id = ++this.seq;
    const pending = this.pending;
    if (pending.length > 0) this.pending = [];
    const begin = this.beginQueued;
    this.beginQueued = false;
    Atomics.store(this.flag, 0, 0);
    this.port.postMessage({
      ...req,
      id,
      ...(begin ? { begin } : {}),
      ...(pending.length > 0 ? { pending: pending.map((p) => ({ sql: p.sql, params: p.params })) } : {}),
    });
    const deadline = performance.now() + waitMs;
    for (;;) {
      const reply = this.take(id);
      if (reply) {
        reply.pendingChanges?.forEach((n, i) => (pending[i]!.changes = n));
        if (reply.error) throw Object.assign(new Error(String(reply.error.message)), reply.error);
        return reply;
      }
      const left = deadline - performance.now();
      if (left <= 0 || Atomics.wait(this.flag, 0, 0, left) === 'timed-out') {
        const late = this.take(id);
        if (late) {
          if (late.error) throw Object.assign(new Error(String(late.error.message)), late.error);
          return late;
        }
        this.port.postMessage({ kind: 'reset' });
        throw Object.assign(new Error(`PostgreSQL did not answer within ${waitMs} ms; the connection is reset`), { code: '57014' });
      }
    }
  }

  /**
   * A write inside a transaction: queued and sent with the transaction's next round trip (a read, a savepoint,
   * the COMMIT), all queued statements in one message. A statement that fails there fails the transaction, as
   * any failed statement does on PostgreSQL. Reading `changes` sends the queue at once.
   */
  defer(sql: string, params: unknown[]): RunResult | undefined {
    if (this.depth === 0) return undefined;
    const item: Deferred = { sql, params, changes: undefined };
    this.pending.push(item);
    const flush = () => {
      if (item.changes === undefined) this.call({ kind: 'flush' });
      return item.changes ?? 0;
    };
    return {
      get changes(): number {
        return flush();
      },
      get lastInsertRowid(): number {
        throw new TypeError('lastInsertRowid is not available on PostgreSQL: write RETURNING id');
      },
    };
  }

  /** The reply to `id` if it is on the port; stale replies (of a request that timed out) are dropped. */
  private take(id: number): Reply | undefined {
    for (;;) {
      const m = receiveMessageOnPort(this.port);
      if (!m) {
        Atomics.store(this.flag, 0, 0);
        // A reply may have landed between the empty read and the reset of the flag.
        const again = receiveMessageOnPort(this.port);
        if (!again) return undefined;
        if ((again.message as { id: number }).id === id) return again.message;
        continue;
      }
      if ((m.message as { id: number }).id === id) return m.message;
    }
  }
}

interface Deferred {
  sql: string;
  params: unknown[];
  /** Rows changed, once sent. */
  changes: number | undefined;
}

interface Reply {
  id: number;
  pendingChanges?: number[];
  rows?: Record<string, unknown>[];
  changes?: number;
  error?: Record<string, unknown>;
}

class PgSyncStatement implements Statement {
  private readonly text: string;
  private readonly names: string[];
  private readonly positional: number;
  private readonly keyCase: Map<string, string>;
  readonly reader: boolean;

  constructor(
    private readonly db: PgSyncDatabase,
    readonly source: string,
  ) {
    const t = translate(source);
    this.text = t.text;
    this.names = t.names;
    this.positional = t.positional;
    this.keyCase = t.keyCase;
    this.reader = /^\s*(select|with|values)\b/i.test(source) || /\breturning\b/i.test(source);
  }

  run(...params: unknown[]): RunResult {
    const values = this.bind(params);
    const deferred = this.db.defer(this.text, values);
    if (deferred) return deferred;
    const { changes } = this.db.call({ kind: 'query', sql: this.text, params: values });
    return {
      changes: changes ?? 0,
      get lastInsertRowid(): number {
        throw new TypeError('lastInsertRowid is not available on PostgreSQL: write RETURNING id');
      },
    };
  }

  get(...params: unknown[]): unknown {
    return this.rows(params)[0];
  }

  all(...params: unknown[]): unknown[] {
    return this.rows(params);
  }

  private rows(params: unknown[]): Record<string, unknown>[] {
    const { rows = [] } = this.db.call({ kind: 'query', sql: this.text, params: this.bind(params) });
    for (const row of rows) {
      for (const key of Object.keys(row)) {
        const value = row[key];
        if (value instanceof Uint8Array && !Buffer.isBuffer(value)) row[key] = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
        const original = this.keyCase.get(key);
        if (original !== undefined) {
          row[original] = row[key];
          delete row[key];
        }
      }
    }
    return rows;
  }

  /** better-sqlite3's binding: positional values (or arrays of them) and at most one object of named values. */
  private bind(args: unknown[]): unknown[] {
    const positional: unknown[] = [];
    let named: Record<string, unknown> | undefined;
    for (const a of args) {
      if (Array.isArray(a)) positional.push(...a);
      else if (a !== null && typeof a === 'object' && !(a instanceof Uint8Array) && !(a instanceof Date)) named = a as Record<string, unknown>;
      else positional.push(a);
    }
    if (positional.length !== this.positional) {
      throw new RangeError(`Too ${positional.length < this.positional ? 'few' : 'many'} parameter values were provided`);
    }
    const values = positional.map(value);
    for (const name of this.names) {
      if (!named || !(name in named)) throw new RangeError(`Missing named parameter "${name}"`);
      values.push(value(named[name]));
    }
    return values;
  }
}

function value(v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'boolean') throw new TypeError('SQLite3 can only bind numbers, strings, bigints, buffers, and null');
  if (v === undefined) throw new RangeError('Missing parameter value');
  return v;
}

/**
 * `?` -> `$1..$n` in order, then each distinct `@name` -> the next `$k`; string literals, quoted
 * identifiers and comments are left alone. `keyCase`: every identifier the SQL spells with capitals,
 * by its lower-case form (the key PostgreSQL returns for an unquoted alias).
 */
export function translate(sql: string): { text: string; names: string[]; positional: number; keyCase: Map<string, string> } {
  let positional = 0;
  const keyCase = new Map<string, string>();
  const named: string[] = [];
  // Names get their numbers after every `?`: marked first (U+0000, never in our SQL), numbered below.
  const marked = mapSqlCode(sql, (part) =>
    part.replace(/\?|@([A-Za-z_][A-Za-z0-9_]*)|[A-Za-z_][A-Za-z0-9_]*/g, (m: string, name: string | undefined) => {
      if (m === '?') return `$${++positional}`;
      if (name !== undefined) {
        named.push(name);
        return '\u0000';
      }
      if (m !== m.toLowerCase()) keyCase.set(m.toLowerCase(), m);
      return m;
    }),
  );
  // Keywords come back as column keys only as aliases; drop the ones that are SQL words, not names.
  for (const k of [...keyCase.keys()]) if (SQL_WORDS.has(k)) keyCase.delete(k);
  const names: string[] = [];
  let next = 0;
  const text = named.length
    ? mapSqlCode(marked, (part) =>
        part.replace(/\u0000/g, () => {
          const name = named[next++]!;
          let index = names.indexOf(name);
          if (index < 0) index = names.push(name) - 1;
          return `$${positional + index + 1}`;
        }),
      )
    : marked;
  return { text, names, positional, keyCase };
}

const SQL_WORDS = new Set(
  'select from where and or not null is in as on join left inner outer order by group having limit offset insert into values update set delete returning case when then else end distinct count sum min max avg coalesce exists union all asc desc conflict do nothing excluded like between with create table index primary key default'.split(
    ' ',
  ),
);

function workerScript(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const sibling = join(here, 'pg-sync-worker.js');
  if (existsSync(sibling)) return sibling;
  // Under a TypeScript test runner only the .ts source is here: the build (`npm test` runs tsc first) has the worker.
  const built = join(here, '..', '..', '..', 'dist', 'src', 'db', 'pg', 'pg-sync-worker.js');
  if (existsSync(built)) return built;
  throw new Error(`the PostgreSQL worker is not built (${sibling}): run npm run build`);
}
