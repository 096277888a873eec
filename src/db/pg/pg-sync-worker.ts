import { workerData, type MessagePort } from 'node:worker_threads';
import pg from 'pg';
import { migratePg } from './pg-database.js';
import { pgMigrations } from './pg-migrations.js';
import { mapSqlCode } from './sql-scan.js';

/**
 * The worker thread behind `PgSyncDatabase` (src/db/pg/pg-sync.ts): it owns one PostgreSQL connection and
 * runs the statements the daemon's thread sends, one at a time, in order. After each reply it raises the
 * shared flag the daemon's thread waits on (Atomics.wait), which then takes the reply off its port
 * synchronously (receiveMessageOnPort).
 *
 * Requests: `{ id, kind: 'open' }` (connect, apply pending migrations), `{ id, kind: 'query', sql, params }`,
 * `{ id, kind: 'exec', sql }` (several statements, no parameters), `{ id, kind: 'begin' | 'commit' |
 * 'rollback' }`, `{ kind: 'reset' }` (out of band: drop the connection, the daemon's wait timed out),
 * `{ id, kind: 'close' }`. Replies: `{ id, rows?, changes? }` or `{ id, error: { message, code, ... } }`.
 *
 * A connection lost inside a transaction never lets the rest of that transaction run on a new connection
 * (that would commit half of it): until its COMMIT or ROLLBACK every statement fails with 08006, and the
 * COMMIT too. While disconnected, statements fail at once (08001) and one reconnect runs in the background,
 * so a database that is down costs the daemon's thread no wait.
 */
interface Request {
  id?: number;
  kind: 'open' | 'query' | 'exec' | 'begin' | 'commit' | 'rollback' | 'reset' | 'close' | 'flush';
  sql?: string;
  params?: unknown[];
  /** Writes queued inside the transaction, run first as one multi-statement round trip. */
  pending?: { sql: string; params: unknown[] }[];
  /** The transaction's BEGIN, not sent yet: first, with `pending` when there is any. */
  begin?: boolean;
}

const { url, signal, port, statementTimeoutMs, connectTimeoutMs } = workerData as {
  url: string;
  signal: SharedArrayBuffer;
  port: MessagePort;
  statementTimeoutMs: number;
  connectTimeoutMs: number;
};
const flag = new Int32Array(signal);

// BIGINT (20) and NUMERIC (1700: SUM over BIGINT) as numbers, as better-sqlite3 returns them: every such value
// in this schema is a count, an id or a millisecond timestamp, far below 2^53. Truth values (16) as 1/0, as
// SQLite has them (the schema stores flags as INTEGER; this covers expressions such as `x = y AS same`).
const types = {
  getTypeParser(oid: number, format?: string) {
    if (oid === 20 || oid === 1700) return (v: string) => Number(v);
    if (oid === 16) return (v: string) => (v === 't' ? 1 : 0);
    return pg.types.getTypeParser(oid, format as 'text');
  },
};

let client: pg.Client | undefined;
/** Bumped on every new connection: a transaction begun on an older one is gone. */
let generation = 0;
let txGeneration: number | null = null;
let connecting: Promise<void> | undefined;
let lastConnectError: { message: string; code?: string } | undefined;
let closed = false;

function connect(): Promise<void> {
  if (connecting) return connecting;
  const c = new pg.Client({
    connectionString: url,
    types,
    statement_timeout: statementTimeoutMs,
    lock_timeout: Math.max(1, Math.floor(statementTimeoutMs / 2)),
    connectionTimeoutMillis: connectTimeoutMs,
    application_name: 'xcared',
  });
  c.on('error', () => drop(c));
  c.on('end', () => drop(c));
  connecting = c
    .connect()
    .then(() => {
      if (closed) {
        void c.end();
        return;
      }
      client = c;
      generation++;
      lastConnectError = undefined;
    })
    .catch((err: Error & { code?: string }) => {
      lastConnectError = { message: err.message, ...(err.code ? { code: err.code } : {}) };
      throw err;
    })
    .finally(() => {
      connecting = undefined;
    });
  return connecting;
}

function drop(c: pg.Client): void {
  if (client !== c) return;
  client = undefined;
  // Reconnect in the background; statements fail fast until it is back.
  if (!closed) connect().catch(() => undefined);
}

function fail(code: string, message: string): never {
  throw Object.assign(new Error(message), { code });
}

function current(): pg.Client {
  if (!client) {
    if (!connecting && !closed) connect().catch(() => undefined);
    fail('08001', `PostgreSQL is not connected${lastConnectError ? `: ${lastConnectError.message}` : ''}`);
  }
  if (txGeneration !== null && txGeneration !== generation) {
    fail('08006', 'the connection was lost inside a transaction; it was rolled back by the server');
  }
  return client;
}

/**
 * The queued writes of a transaction in one round trip: one simple-protocol query of several statements, each
 * with its parameters inlined as literals (pg's escapeLiteral for text, decode(hex) for bytea). Returns rows changed
 * per statement. An error stops at the failing statement and aborts the transaction, like a single one.
 */
async function runPending(items: { sql: string; params: unknown[] }[], begin: boolean): Promise<number[]> {
  const c = current();
  const text = (begin ? ['BEGIN'] : []).concat(items.map((i) => inline(i.sql, i.params, c))).join(';\n');
  if (begin) txGeneration = generation;
  const res = (await c.query(text)) as unknown as pg.QueryResult | pg.QueryResult[];
  const list = Array.isArray(res) ? res : [res];
  return list.slice(begin ? 1 : 0).map((r) => r.rowCount ?? 0);
}

/** `$N` -> the literal of params[N-1], outside quotes and comments (the SQL came from PgSyncStatement's translation). */
function inline(sql: string, params: unknown[], c: pg.Client): string {
  return mapSqlCode(sql, (part) => part.replace(/\$([0-9]+)/g, (_m: string, n: string) => literal(params[Number(n) - 1], c)));
}

function literal(v: unknown, c: pg.Client): string {
  if (v === null || v === undefined) return 'NULL';
  if (typeof v === 'number') {
    // Parenthesised when negative: after a minus in the SQL (`ts-$1`) a bare -5 would start a `--` comment.
    if (Number.isFinite(v)) return v < 0 ? `(${String(v)})` : String(v);
    return `'${Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity'}'::float8`;
  }
  if (typeof v === 'bigint') return v < 0n ? `(${v.toString()})` : v.toString();
  if (v instanceof Uint8Array) return `decode('${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}', 'hex')`;
  return c.escapeLiteral(String(v));
}

async function handle(req: Request): Promise<Record<string, unknown>> {
  switch (req.kind) {
    case 'flush':
      return {};
    case 'open': {
      await connect();
      const pool = new pg.Pool({ connectionString: url, max: 1, connectionTimeoutMillis: connectTimeoutMs });
      pool.on('error', () => undefined);
      try {
        await migratePg(pool, pgMigrations);
      } finally {
        await pool.end().catch(() => undefined);
      }
      return {};
    }
    case 'query': {
      const r = await current().query({ text: req.sql!, values: req.params ?? [] });
      return { rows: r.rows, changes: r.rowCount ?? 0 };
    }
    case 'exec':
      await current().query(req.sql!);
      return {};
    case 'begin':
      await current().query('BEGIN');
      txGeneration = generation;
      return {};
    case 'commit': {
      const tx = txGeneration;
      txGeneration = null;
      if (tx !== generation || !client) fail('08006', 'the connection was lost inside a transaction; it was rolled back by the server');
      await client.query('COMMIT');
      return {};
    }
    case 'rollback':
      await abandon();
      return {};
    case 'close':
      closed = true;
      await client?.end().catch(() => undefined);
      client = undefined;
      return {};
    default:
      return fail('XCARE', `unknown request ${String(req.kind)}`);
  }
}

/** Ends the current transaction, whatever state it is in (a lost connection has ended it already). */
async function abandon(): Promise<void> {
  const tx = txGeneration;
  txGeneration = null;
  if (tx === generation && client) await client.query('ROLLBACK').catch(() => undefined);
}

function errorOf(err: unknown): Record<string, unknown> {
  const e = err as Record<string, unknown>;
  const out: Record<string, unknown> = { message: String(e?.message ?? err) };
  for (const key of ['code', 'detail', 'constraint', 'table', 'column', 'schema']) if (e?.[key] !== undefined) out[key] = String(e[key]);
  return out;
}

let queue: Promise<void> = Promise.resolve();
port.on('message', (req: Request) => {
  if (req.kind === 'reset') {
    // Out of band: the daemon's thread gave up waiting. Destroying the socket fails the stuck statement.
    const c = client;
    client = undefined;
    (c as unknown as { connection?: { stream?: { destroy(): void } } })?.connection?.stream?.destroy();
    if (!closed) connect().catch(() => undefined);
    return;
  }
  queue = queue.then(async () => {
    let reply: Record<string, unknown>;
    let pendingChanges: number[] | undefined;
    try {
      if (req.begin && !req.pending?.length) {
        await current().query('BEGIN');
        txGeneration = generation;
      }
      if (req.pending?.length) {
        try {
          pendingChanges = await runPending(req.pending, req.begin === true);
        } catch (err) {
          // The COMMIT that carried them will not run: end the transaction here, or the connection stays in
          // an aborted one and every later statement fails.
          if (req.kind === 'commit') await abandon();
          throw err;
        }
      }
      reply = { id: req.id, pendingChanges, ...(await handle(req)) };
    } catch (err) {
      reply = { id: req.id, pendingChanges, error: errorOf(err) };
    }
    port.postMessage(reply);
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
  });
});
