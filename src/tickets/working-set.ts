import type { Database, Statement } from '../db/database.js';
import { COLUMNS, toParams, type Ticket, type TicketEventType } from './ticket-model.js';

/** The part of the outbox the ticket service writes to (inside its own transactions). */
export interface OutboxWriter {
  enqueue(ticketId: number, eventType: string, payload: unknown, idempotencyKey: string): void;
  committed(): void;
}

/** Prepared statements, compiled once per SQL text (a fleet-wide outage attaches thousands of tickets at once). */
export class Statements {
  private readonly cache = new Map<string, Statement>();
  constructor(readonly db: Database) {}
  prepare(sql: string): Statement {
    let stmt = this.cache.get(sql);
    if (!stmt) {
      stmt = this.db.prepare(sql);
      this.cache.set(sql, stmt);
    }
    return stmt;
  }
}

/**
 * Ticket changes of one operation: every read goes through here so the latest version in this transaction is
 * seen, every write lands in SQLite inside the caller's transaction, and the in-memory index moves only after
 * the commit.
 */
export class WorkingSet {
  readonly changed = new Map<number, Ticket>();
  events = 0;

  constructor(
    private readonly load: (id: number) => Ticket | undefined,
    private readonly db: Statements,
    private readonly outbox: OutboxWriter,
    /** The ticket as the API and the helpdesk see it (with the success engineer of an xcare_pro customer). */
    private readonly view: (t: Ticket) => Record<string, unknown>,
    readonly now: number,
    /** The person acting in the current request (token name), recorded on every event as `actor` (issue 14). */
    private readonly actor: string | undefined = undefined,
  ) {}

  get(id: number): Ticket | undefined {
    return this.changed.get(id) ?? this.load(id);
  }

  insert(t: Omit<Ticket, 'id'>): Ticket {
    const params = toParams(t);
    const ticket = { ...t, id: this.insertRow('tickets', COLUMNS, params) } as Ticket;
    this.changed.set(ticket.id, ticket);
    return ticket;
  }

  /**
   * INSERT one row and return its id: named ahead where the store reserves ids (PostgreSQL: the write is then
   * queued with the transaction, no round trip), else read back with RETURNING (SQLite, where that is free).
   */
  private insertRow(table: string, columns: readonly string[], params: Record<string, unknown>): number {
    const id = this.db.db.reserveId?.(table);
    if (id !== undefined) {
      this.db.prepare(`INSERT INTO ${table} (id, ${columns.join(', ')}) VALUES (@id, ${columns.map((c) => '@' + c).join(', ')})`).run({ ...params, id });
      return id;
    }
    const row = this.db.prepare(`INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map((c) => '@' + c).join(', ')}) RETURNING id`).get(params) as { id: number };
    return Number(row.id);
  }

  save(t: Ticket): void {
    t.updatedAt = this.now;
    this.db.prepare(`UPDATE tickets SET ${COLUMNS.map((c) => `${c} = @${c}`).join(', ')} WHERE id = @id`).run(toParams(t));
    this.changed.set(t.id, t);
  }

  /** One history row and its outbox row, in the same transaction as the ticket change. */
  event(t: Ticket, type: TicketEventType, data: Record<string, unknown> = {}): void {
    const actor = this.actor;
    if (actor !== undefined) data = { ...data, actor };
    const eventId = this.insertRow('ticket_events', ['ticket_id', 'ts', 'type', 'data'], { ticket_id: t.id, ts: this.now, type, data: JSON.stringify(data) });
    const ts = new Date(this.now).toISOString();
    this.outbox.enqueue(t.id, type, { event: { id: eventId, type, ts, data }, ticket: this.view(t) }, `xcare-ticket-${t.id}-event-${eventId}`);
    this.events++;
  }
}
