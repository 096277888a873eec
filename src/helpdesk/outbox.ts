import type { Database, Statement } from '../db/database.js';
import type { Clock } from '../clock.js';
import { ValidationError } from '../errors.js';

export type OutboxState = 'pending' | 'delivered' | 'dead' | 'all';

export interface OutboxEntry {
  id: number;
  ticketId: number;
  eventType: string;
  idempotencyKey: string;
  createdAt: string;
  attempts: number;
  nextAttemptAt: string | null;
  deliveredAt: string | null;
  deadAt: string | null;
  lastError: string | null;
  payload: unknown;
}

export interface OutboxRow {
  id: number;
  ticket_id: number;
  event_type: string;
  payload: string;
  idempotency_key: string;
  created_at: number;
  attempts: number;
  next_attempt_at: number;
  delivered_at: number | null;
  dead_at: number | null;
  last_error: string | null;
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/**
 * The durable helpdesk outbox. `enqueue` runs inside the caller's transaction, so a ticket change and the event
 * that reports it commit together or not at all; `committed()` is called after the commit to wake the delivery.
 */
export class Outbox {
  private readonly listeners = new Set<() => void>();
  private insert?: Statement;
  constructor(private readonly deps: { db: Database; clock: Clock }) {}

  /** Insert one event; must be called inside a db.transaction of the change it reports. */
  enqueue(ticketId: number, eventType: string, payload: unknown, idempotencyKey: string): void {
    const now = this.deps.clock.now();
    this.insert ??= this.deps.db.prepare(
      `INSERT INTO outbox (ticket_id, event_type, payload, idempotency_key, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?)`,
    );
    this.insert.run(ticketId, eventType, JSON.stringify(payload), idempotencyKey, now, now);
  }

  /** Tell listeners (the webhook delivery) that new rows are committed. */
  committed(): void {
    for (const l of this.listeners) l();
  }

  onCommitted(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Newest first; `beforeId` continues a page (keyset paging, issue 14). */
  list(state: OutboxState = 'pending', limit = 100, beforeId?: number): OutboxEntry[] {
    const where = {
      pending: 'delivered_at IS NULL AND dead_at IS NULL',
      delivered: 'delivered_at IS NOT NULL',
      dead: 'dead_at IS NOT NULL',
      all: '1 = 1',
    }[state];
    if (!where) throw new ValidationError('state: expected pending, delivered, dead or all');
    const before = beforeId === undefined ? '' : ' AND id < ?';
    const args = beforeId === undefined ? [limit] : [beforeId, limit];
    const rows = this.deps.db.prepare(`SELECT * FROM outbox WHERE (${where})${before} ORDER BY id DESC LIMIT ?`).all(...args) as OutboxRow[];
    return rows.map(toEntry);
  }

  /** The helpdesk deliveries of one ticket, oldest first (the console's "webhook delivery state"). */
  forTicket(ticketId: number, limit = 200): OutboxEntry[] {
    const rows = this.deps.db.prepare('SELECT * FROM outbox WHERE ticket_id = ? ORDER BY id LIMIT ?').all(ticketId, limit) as OutboxRow[];
    return rows.map(toEntry);
  }

  get(id: number): OutboxEntry | undefined {
    const row = this.deps.db.prepare('SELECT * FROM outbox WHERE id = ?').get(id) as OutboxRow | undefined;
    return row ? toEntry(row) : undefined;
  }

  /** Give a dead letter a fresh set of attempts; later events of its ticket were held behind it and follow. */
  retry(id: number): OutboxEntry | undefined {
    const now = this.deps.clock.now();
    const result = this.deps.db
      .prepare('UPDATE outbox SET dead_at = NULL, attempts = 0, next_attempt_at = ? WHERE id = ? AND dead_at IS NOT NULL')
      .run(now, id);
    if (result.changes > 0) this.committed();
    return this.get(id);
  }

  pendingCount(): number {
    return (this.deps.db.prepare('SELECT COUNT(*) AS n FROM outbox WHERE delivered_at IS NULL AND dead_at IS NULL').get() as { n: number }).n;
  }

  deadCount(): number {
    return (this.deps.db.prepare('SELECT COUNT(*) AS n FROM outbox WHERE dead_at IS NOT NULL').get() as { n: number }).n;
  }
}

export function toEntry(row: OutboxRow): OutboxEntry {
  return {
    id: row.id,
    ticketId: row.ticket_id,
    eventType: row.event_type,
    idempotencyKey: row.idempotency_key,
    createdAt: iso(row.created_at)!,
    attempts: row.attempts,
    nextAttemptAt: row.delivered_at === null && row.dead_at === null ? iso(row.next_attempt_at) : null,
    deliveredAt: iso(row.delivered_at),
    deadAt: iso(row.dead_at),
    lastError: row.last_error,
    payload: JSON.parse(row.payload) as unknown,
  };
}
