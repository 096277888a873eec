import type { Database } from '../db/database.js';
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
  id: number;
  ts: number;
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

/** The database and the clock (`ts` of each entry). */
export interface AuditLogDeps {
  db: Database;
  clock: Clock;
}

/** Longest detail stored: a summary, not a copy of the request. */
const MAX_DETAIL_CHARS = 4000;

function toEntry(r: AuditRow): AuditEntry {
  return { ...r, ts: new Date(r.ts).toISOString(), detail: JSON.parse(r.detail) as Record<string, unknown> };
}

/**
 * The audit trail (issue 14, PROTOCOL.md "HTTP": every change made through the API is in the audit log): who,
 * when, what, to what and from where. Append-only; the one owner of `audit_log`. Listed newest first.
 */
export class AuditLog {
  constructor(private readonly deps: AuditLogDeps) {}

  record(input: AuditInput): AuditEntry {
    let detail = JSON.stringify(input.detail ?? {});
    if (detail.length > MAX_DETAIL_CHARS) detail = JSON.stringify({ truncated: true, summary: detail.slice(0, MAX_DETAIL_CHARS) });
    const now = this.deps.clock.now();
    const result = this.deps.db
      .prepare(
        'INSERT INTO audit_log (ts, actor, role, via, action, target, method, path, status, remote, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      )
      .run(now, input.principal.name, input.principal.role, input.principal.via, input.action, input.target, input.method, input.path, input.status, input.remote, detail);
    return toEntry(this.deps.db.prepare('SELECT * FROM audit_log WHERE id = ?').get(Number(result.lastInsertRowid)) as AuditRow);
  }

  /** Newest first, keyset-paged on the id (a cursor is the id of the last entry seen). */
  list(filter: AuditFilter, page: PageRequest): Page<AuditEntry> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (page.after !== undefined) {
      if (typeof page.after !== 'number' || !Number.isInteger(page.after)) throw new ValidationError('cursor: invalid');
      where.push('id < ?');
      args.push(page.after);
    }
    if (filter.actor) where.push('actor = ?') && args.push(filter.actor);
    if (filter.action) where.push('action = ?') && args.push(filter.action);
    if (filter.target) where.push('target = ?') && args.push(filter.target);
    const limit = page.limit ?? 100;
    const rows = this.deps.db
      .prepare(`SELECT * FROM audit_log ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`)
      .all(...args, limit + 1) as AuditRow[];
    const items = rows.slice(0, limit).map(toEntry);
    return { items, nextCursor: rows.length > limit ? encodeCursor(items[items.length - 1]!.id) : null };
  }
}
