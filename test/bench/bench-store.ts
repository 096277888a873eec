import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { openDatabase, type Database } from '../../src/db/database.js';
import { PgSyncDatabase } from '../../src/db/pg/pg-sync.js';
import { hashTokenHmac, loadTokenKey } from '../../src/registry/device-token.js';
import { silentLogger } from '../../src/log.js';

/**
 * The store a benchmark's daemons run on (issue 13): SQLite under their data dir, or PostgreSQL in a schema
 * of its own (created here, dropped by `drop()`), so a bench never sees another run's rows and the lead's
 * test suites on the same server never see the bench's. The PostgreSQL URL is `BENCH_DATABASE_URL`, else
 * `XCARE_TEST_DATABASE_URL`; without one every bench runs on SQLite and says so loudly.
 */
export const BENCH_PG_URL: string | undefined = process.env.BENCH_DATABASE_URL || process.env.XCARE_TEST_DATABASE_URL || undefined;

export type StoreKind = 'sqlite' | 'postgres';

export interface BenchStore {
  kind: StoreKind;
  /** `store.url` for the daemon (PostgreSQL, with `options=-c search_path=<schema>`); undefined on SQLite. */
  url?: string;
  schema?: string;
  /** Opens the synchronous store as the daemon's owners do (migrations applied on first open). */
  open(): Database;
  /** Drops the schema (PostgreSQL); nothing on SQLite (the data dir is the caller's temp dir). */
  drop(): Promise<void>;
}

let schemaSeq = 0;

/** A fresh store for one setup: `dataDir/xcare.db`, or a new PostgreSQL schema when `kind` is 'postgres'. */
export async function benchStore(kind: StoreKind, dataDir: string, tag: string): Promise<BenchStore> {
  if (kind === 'sqlite') return { kind, open: () => openDatabase(join(dataDir, 'xcare.db')), drop: async () => undefined };
  if (!BENCH_PG_URL) throw new Error('a PostgreSQL bench store needs BENCH_DATABASE_URL or XCARE_TEST_DATABASE_URL');
  const schema = `bench_${tag}_${process.pid}_${Date.now()}_${schemaSeq++}`.replace(/[^a-z0-9_]/gi, '_').toLowerCase();
  await adminQuery(`CREATE SCHEMA ${schema}`);
  const url = new URL(BENCH_PG_URL);
  url.searchParams.set('options', `-c search_path=${schema}`);
  return {
    kind,
    url: url.toString(),
    schema,
    open: () => new PgSyncDatabase(url.toString(), { statementTimeoutMs: 60_000 }),
    drop: () => adminQuery(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).then(() => undefined),
  };
}

async function adminQuery(sql: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const c = new pg.Client({ connectionString: BENCH_PG_URL });
  await c.connect();
  try {
    return await c.query(sql, params);
  } finally {
    await c.end();
  }
}

/**
 * Provisions `ids` (gateways, tier xcare) with one token, keyed with the token key of `dataDir` (the daemon
 * reads the same key file there), in one transaction. On PostgreSQL this also applies the migrations.
 */
export function seedDevices(store: BenchStore, dataDir: string, ids: string[], token: string): void {
  const hash = hashTokenHmac(loadTokenKey(dataDir, silentLogger()), token);
  const db = store.open();
  try {
    const now = Date.now();
    // Multi-row INSERTs: on PostgreSQL each statement is a round trip from this thread.
    const chunk = 500;
    db.transaction(() => {
      for (let i = 0; i < ids.length; i += chunk) {
        const part = ids.slice(i, i + chunk);
        const values = part.map(() => `(?, 'gateway', 'bench', 'minnovation', 'xcare', '[]', ?, ?)`).join(', ');
        db.prepare(`INSERT INTO devices (id, type, customer, installer, tier, tags, token_hash, created_at) VALUES ${values}`).run(...part.flatMap((id) => [id, hash, now]));
      }
    })();
  } finally {
    db.close();
  }
}

/** RSS (KB) and utime+stime (clock ticks) of a process, from /proc; zeros when it is gone. */
export function procStat(pid: number): { rssKb: number; cpuTicks: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { rssKb: Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0), cpuTicks: Number(fields[11]) + Number(fields[12]) };
  } catch {
    return { rssKb: 0, cpuTicks: 0 };
  }
}

/** Local TCP ports of the sockets process `pid` holds (all its threads share the fd table). */
function localPorts(pid: number): Set<number> {
  const inodes = new Set<string>();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) inodes.add(m[1]!);
      } catch {
        /* closed meanwhile */
      }
    }
  } catch {
    return new Set();
  }
  const ports = new Set<number>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length > 9 && inodes.has(f[9]!)) ports.add(parseInt(f[1]!.split(':')[1]!, 16));
    }
  }
  return ports;
}

/**
 * CPU of the PostgreSQL server processes that serve given client processes (the daemons): the backends whose
 * client port is a socket one of them holds (pg_stat_activity.client_port), so the lead's tests on the same
 * server do not count. Sampled every `everyMs` while running, since the daemons' pools open and close
 * connections: a backend born during the span counts from 0, one that ends counts up to its last sample.
 * Not counted: the shared background processes (WAL writer, checkpointer, autovacuum), which serve every
 * database on the server.
 */
export class PgBackendCpu {
  private readonly seen = new Map<number, { first: number; last: number }>();
  /** Backend pid -> whether it serves one of our client processes. */
  private readonly ours = new Map<number, boolean>();
  private timer?: NodeJS.Timeout;
  private startedAt = 0;
  private sampling?: Promise<void>;
  private client?: pg.Client;
  private connected = false;

  constructor(private readonly clientPids: () => number[], private readonly everyMs = 250) {}

  async start(): Promise<void> {
    this.seen.clear();
    this.startedAt = Date.now();
    if (!this.client) {
      this.client = new pg.Client({ connectionString: BENCH_PG_URL, application_name: 'xcare-bench' });
      await this.client.connect();
    }
    await this.sample();
    this.timer = setInterval(() => {
      this.sampling ??= this.sample().finally(() => (this.sampling = undefined));
    }, this.everyMs);
  }

  /** Stops sampling; returns the clock ticks the backends used since `start()` and how many there were. */
  async stop(): Promise<{ ticks: number; backends: number }> {
    clearInterval(this.timer);
    await this.sampling;
    await this.sample();
    let ticks = 0;
    for (const { first, last } of this.seen.values()) ticks += last - first;
    return { ticks, backends: this.seen.size };
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.client?.end().catch(() => undefined);
    this.client = undefined;
  }

  private async sample(): Promise<void> {
    const rows = (await this.client!.query<{ pid: number; port: number; born: string }>(
      `SELECT pid, client_port AS port, (extract(epoch FROM backend_start) * 1000)::bigint::text AS born
         FROM pg_stat_activity WHERE client_port IS NOT NULL AND pid <> pg_backend_pid()`,
    )).rows;
    // Whose a backend is, decided once per backend: the socket scan reads /proc/net/tcp, which holds every
    // device connection too (thousands of lines), so it runs only when an unknown backend shows up.
    let ports: Set<number> | undefined;
    for (const r of rows) {
      if (!this.ours.has(r.pid)) {
        ports ??= new Set(this.clientPids().flatMap((p) => [...localPorts(p)]));
        this.ours.set(r.pid, ports.has(r.port));
      }
      if (!this.ours.get(r.pid)) continue;
      const now = procStat(r.pid).cpuTicks;
      const entry = this.seen.get(r.pid);
      if (entry) entry.last = Math.max(entry.last, now);
      else this.seen.set(r.pid, { first: Number(r.born) >= this.startedAt ? 0 : now, last: now });
    }
  }
}

/** The daemon's longest event-loop block since the previous read, from prom-client's default metrics (read resets it). */
export async function loopMaxMs(httpPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  const m = /^nodejs_eventloop_lag_max_seconds (\S+)/m.exec(text);
  return m ? +(Number(m[1]) * 1000).toFixed(1) : NaN;
}

/** One counter or histogram count from the daemon's /metrics (sum over labels; 0 when absent). */
export async function metricValue(httpPort: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  let total = 0;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))) total += Number(m[1]);
  return total;
}
