import type { Database } from '../db/database.js';
import type { PgPool } from '../db/pg/pg-database.js';
import { pgRunner, sqliteRunner, type SqlRunner } from '../db/pg/sql-runner.js';
import type { Clock } from '../clock.js';
import { ValidationError } from '../errors.js';
import { encodeCursor, type Page, type PageRequest } from '../http/paging.js';
import type { Principal } from '../access/roles.js';

/** One audit entry as the API shows it. */
export interface AuditEntry {
  id: number;
  /** ISO time the change was made (the daemon's clock). */
  ts: string;
  /** Who: the token's name (`admin` for the configured admin token). */
  actor: string;
  role: string;
  /** `bearer` (API, xcarectl) or `session` (console). */
  via: string;
  /** What, e.g. `ticket.ack`, `rollout.abort`, `token.create`; `denied` entries have status 403. */
  action: string;
  /** What it was done to, `kind:id` (`ticket:12`, `device:gw-1`), or null. */
  target: string | null;
  method: string;
  path: string;
  status: number;
  /** From where: the client's address. */
  remote: string | null;
  detail: Record<string, unknown>;
}

/** What the HTTP layer hands over after a change (or a refusal). */
export interface AuditInput {
  principal: Pick<Principal, 'name' | 'role' | 'via'>;
  action: string;
  target: string | null;
  method: string;
  path: string;
  status: number;
  remote: string | null;
  detail?: Record<string, unknown>;
}

/** Exact-match filters of `GET /api/v1/audit`. */
export interface AuditFilter {
  actor?: string;
  action?: string;
  /** Exact target (`ticket:12`). */
  target?: string;
}

interface AuditRow {
  id: number | string;
  ts: number | string;
  actor: string;
  role: string;
  via: string;
  action: string;
  target: string | null;
  method: string;
  path: string;
  status: number;
  remote: string | null;
  detail: string;
}

/** Longest detail stored: a summary, not a copy of the request. */
const MAX_DETAIL_CHARS = 4000;

function toEntry(r: AuditRow): AuditEntry {
  return { ...r, id: Number(r.id), ts: new Date(Number(r.ts)).toISOString(), status: Number(r.status), detail: JSON.parse(r.detail) as Record<string, unknown> };
}

/**
 * The audit trail (issue 14, PROTOCOL.md "HTTP": every change made through the API is in the audit log): who,
 * when, what, to what and from where. Append-only; the one owner of `audit_log`, behind an async interface with
 * a SQLite and a PostgreSQL implementation (engine chosen once, src/db/store-engine.ts). Listed newest first.
 */
export interface AuditLog {
  /** Appends one entry (one INSERT .. RETURNING); `detail` beyond 4,000 characters is stored truncated. */
  record(input: AuditInput): Promise<AuditEntry>;
  /** Newest first, keyset-paged on the id (a cursor is the id of the last entry seen); ValidationError for a bad cursor. */
  list(filter: AuditFilter, page: PageRequest): Promise<Page<AuditEntry>>;
}

const COLUMNS = 'id, ts, actor, role, via, action, target, method, path, status, remote, detail';
const INSERT = `INSERT INTO audit_log (ts, actor, role, via, action, target, method, path, status, remote, detail)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING ${COLUMNS}`;

/** The statements, written once over either engine's runner. */
class SqlAuditLog implements AuditLog {
  constructor(private readonly deps: { sql: SqlRunner; clock: Clock }) {}

  async record(input: AuditInput): Promise<AuditEntry> {
    let detail = JSON.stringify(input.detail ?? {});
    if (detail.length > MAX_DETAIL_CHARS) detail = JSON.stringify({ truncated: true, summary: detail.slice(0, MAX_DETAIL_CHARS) });
    const { principal } = input;
    const [row] = await this.deps.sql.rows<AuditRow>(INSERT, [
      this.deps.clock.now(), principal.name, principal.role, principal.via, input.action, input.target, input.method, input.path, input.status, input.remote, detail,
    ]);
    return toEntry(row!);
  }

  async list(filter: AuditFilter, page: PageRequest): Promise<Page<AuditEntry>> {
    const where: string[] = [];
    const args: unknown[] = [];
    const add = (clause: string, value: unknown) => {
      args.push(value);
      where.push(clause.replace('?', `$${args.length}`));
    };
    if (page.after !== undefined) {
      if (typeof page.after !== 'number' || !Number.isInteger(page.after)) throw new ValidationError('cursor: invalid');
      add('id < ?', page.after);
    }
    if (filter.actor) add('actor = ?', filter.actor);
    if (filter.action) add('action = ?', filter.action);
    if (filter.target) add('target = ?', filter.target);
    const limit = page.limit ?? 100;
    args.push(limit + 1);
    const rows = await this.deps.sql.rows<AuditRow>(
      `SELECT ${COLUMNS} FROM audit_log ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT $${args.length}`,
      args,
    );
    const items = rows.slice(0, limit).map(toEntry);
    return { items, nextCursor: rows.length > limit ? encodeCursor(items[items.length - 1]!.id) : null };
  }
}

/** The audit log on the embedded SQLite store. */
export class SqliteAuditLog extends SqlAuditLog {
  constructor(deps: { db: Database; clock: Clock }) {
    super({ sql: sqliteRunner(deps.db), clock: deps.clock });
  }
}

/** The audit log on PostgreSQL (or a compatible distributed SQL database). */
export class PgAuditLog extends SqlAuditLog {
  constructor(deps: { pool: PgPool; clock: Clock }) {
    super({ sql: pgRunner(deps.pool), clock: deps.clock });
  }
}
