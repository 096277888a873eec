import type BetterSqlite3 from 'better-sqlite3';
import type { Database } from '../db/database.js';
import type { Clock, TimerHandle } from '../clock.js';
import type { Logger } from '../log.js';
import type { Config } from '../config/schema.js';
import { ConflictError, NotFoundError, ValidationError } from '../errors.js';
import type { Tier } from '../protocol/names.js';
import type { DeviceDirectory } from '../registry/types.js';
import { band, comparePrioritized, priority, type Band } from './priority.js';
import {
  CLASSIFICATIONS,
  SEVERITIES,
  TICKET_KINDS,
  type Classification,
  type ConditionReport,
  type ConditionSink,
  type Severity,
  type TicketKind,
  type TicketStatus,
} from './types.js';
import {
  COLUMNS,
  clone,
  fromRow,
  ticketView,
  toParams,
  type Ticket,
  type TicketEvent,
  type TicketEventType,
  type TicketRow,
} from './ticket-model.js';

export interface SubjectEligibility {
  eligible: boolean;
  reasons: string[];
  /** Effective tier (an expired subscription is `none`). */
  tier: Tier;
}

/** The part of the outbox the ticket service writes to (inside its own transactions). */
export interface OutboxWriter {
  enqueue(ticketId: number, eventType: string, payload: unknown, idempotencyKey: string): void;
  committed(): void;
}

export interface TicketServiceDeps {
  db: Database;
  clock: Clock;
  config: Config['tickets'];
  log: Logger;
  directory: DeviceDirectory;
  /** Eligibility of a registered device now; undefined for an unknown id. */
  eligibilityOf(deviceId: string): SubjectEligibility | undefined;
  outbox: OutboxWriter;
  /** The person acting in the current request (token name), recorded on ticket events as `actor` (issue 14). */
  actor?(): string | undefined;
}

export interface OpenTicketInput {
  subject: string;
  classification: Classification;
  severity?: Severity;
  summary: string;
  kind?: TicketKind;
  details?: Record<string, unknown>;
}

export interface QueueFilter {
  status?: 'open' | 'all';
  kind?: string;
  severity?: string;
  subject?: string;
  customer?: string;
  /** Resolved tickets shown with status=all (newest first), default 200. */
  limit?: number;
}

export interface QueueItem extends Record<string, unknown> {
  rank: number | null;
  id: number;
  band: Band;
  score: number;
  ageS: number;
  children: QueueItem[];
}

const SEVERITY_RANK: Record<Severity, number> = { low: 0, medium: 1, high: 2, urgent: 3 };
/** Within the one gateway family, a full loss outranks a partial loss (RULES.md: partial -> full upgrades in place). */
const KIND_RANK: Partial<Record<TicketKind, number>> = { gateway_partial: 1, gateway_loss: 2 };

/** RULES.md "One ticket per problem": gateway_partial and gateway_loss of one gateway are one ticket. */
export function ticketFamily(kind: TicketKind): string {
  return kind === 'gateway_partial' || kind === 'gateway_loss' ? 'gateway' : kind;
}

/**
 * Grouping levels (RULES.md "Grouping and inhibition"): sensors (0) are covered by gateway tickets (1), gateways by
 * customer (2) and fleet (3) tickets. Kinds outside the hierarchy are -1.
 */
export function groupLevel(kind: TicketKind): number {
  switch (kind) {
    case 'sensor_issue':
      return 0;
    case 'gateway_partial':
    case 'gateway_loss':
      return 1;
    case 'cloud_loss_partial':
    case 'cloud_loss_complete':
      return 2;
    case 'major_outage':
      return 3;
    default:
      return -1;
  }
}

/** The level of the tickets a ticket of `level` covers: gateway tickets cover sensors, higher ones cover gateways. */
function childLevelOf(level: number): number {
  return level >= 2 ? 1 : 0;
}

const conditionKey = (kind: TicketKind, subject: string): string => `${kind}|${subject}`;

/** Matches the condition keys of one slot: this subject and any kind of this kind's dedupe family. */
function slotMatcher(kind: TicketKind, subject: string): (key: string) => boolean {
  const family = ticketFamily(kind);
  return (key) => {
    const bar = key.indexOf('|');
    return key.slice(bar + 1) === subject && ticketFamily(key.slice(0, bar) as TicketKind) === family;
  };
}
const familyKey = (kind: TicketKind, subject: string): string => `${ticketFamily(kind)}|${subject}`;
const utcDay = (ms: number): string => new Date(ms).toISOString().slice(0, 10);

/** Prepared statements, compiled once per SQL text (a fleet-wide outage attaches thousands of tickets at once). */
class Statements {
  private readonly cache = new Map<string, BetterSqlite3.Statement<unknown[]>>();
  constructor(readonly db: Database) {}
  prepare(sql: string): BetterSqlite3.Statement<unknown[]> {
    let stmt = this.cache.get(sql);
    if (!stmt) {
      stmt = this.db.prepare<unknown[]>(sql);
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
class WorkingSet {
  readonly changed = new Map<number, Ticket>();
  events = 0;

  constructor(
    private readonly service: TicketService,
    private readonly db: Statements,
    private readonly outbox: OutboxWriter,
    readonly now: number,
  ) {}

  get(id: number): Ticket | undefined {
    return this.changed.get(id) ?? this.service.loadForChange(id);
  }

  insert(t: Omit<Ticket, 'id'>): Ticket {
    const params = toParams(t);
    const result = this.db
      .prepare(`INSERT INTO tickets (${COLUMNS.join(', ')}) VALUES (${COLUMNS.map((c) => '@' + c).join(', ')})`)
      .run(params);
    const ticket = { ...t, id: Number(result.lastInsertRowid) } as Ticket;
    this.changed.set(ticket.id, ticket);
    return ticket;
  }

  save(t: Ticket): void {
    t.updatedAt = this.now;
    this.db.prepare(`UPDATE tickets SET ${COLUMNS.map((c) => `${c} = @${c}`).join(', ')} WHERE id = @id`).run(toParams(t));
    this.changed.set(t.id, t);
  }

  /** One history row and its outbox row, in the same transaction as the ticket change. */
  event(t: Ticket, type: TicketEventType, data: Record<string, unknown> = {}): void {
    const actor = this.service.actorName();
    if (actor !== undefined) data = { ...data, actor };
    const result = this.db
      .prepare('INSERT INTO ticket_events (ticket_id, ts, type, data) VALUES (?, ?, ?, ?)')
      .run(t.id, this.now, type, JSON.stringify(data));
    const eventId = Number(result.lastInsertRowid);
    const ts = new Date(this.now).toISOString();
    this.outbox.enqueue(
      t.id,
      type,
      { event: { id: eventId, type, ts, data }, ticket: ticketView(t) },
      `xcare-ticket-${t.id}-event-${eventId}`,
    );
    this.events++;
  }
}

/**
 * The ticket service: the evaluator's ConditionSink plus the people's operations (open, ack, resolve) and the
 * support queue. SQLite is the truth; unresolved tickets are indexed in memory so raise/clear/hasOpen on every
 * evaluator tick cost no query when nothing changes. Every state change is one transaction holding the ticket,
 * its history event(s) and the outbox row(s), committed before delivery is woken.
 */
export class TicketService implements ConditionSink {
  private readonly open = new Map<number, Ticket>();
  private readonly byFamily = new Map<string, number>();
  private readonly byCondition = new Map<string, number>();
  /** subject -> unresolved grouping tickets (level >= 1) listing it in `covers`. */
  private readonly coveredBy = new Map<string, Set<number>>();
  private readonly clearing = new Set<number>();
  private timer?: TimerHandle;
  private timerDue: number | null = null;
  private started = false;
  private readonly log: Logger;
  private readonly sql: Statements;

  constructor(private readonly deps: TicketServiceDeps) {
    this.log = deps.log;
    this.sql = new Statements(deps.db);
  }

  /**
   * Load unresolved tickets into the index and arm the auto-resolve timer. The timer is set for the earliest
   * pending resolution only (no fixed period): idle costs nothing, and a clock jump fires it once, not per second.
   * The evaluator may also call tick() on its own timer; both together are harmless.
   */
  start(): void {
    this.load();
    this.started = true;
    this.scheduleTick();
  }

  stop(): void {
    this.started = false;
    this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.timerDue = null;
  }

  /** Rebuild the in-memory index from SQLite (also used lazily when start() was not called, e.g. CLI-less tests). */
  load(): void {
    this.open.clear();
    this.byFamily.clear();
    this.byCondition.clear();
    this.coveredBy.clear();
    this.clearing.clear();
    const rows = this.deps.db.prepare(`SELECT * FROM tickets WHERE status != 'resolved'`).all() as TicketRow[];
    for (const row of rows) this.index(fromRow(row));
    this.log.info({ open: rows.length }, 'tickets loaded');
  }

  private scheduleTick(): void {
    if (!this.started) return;
    const after = this.deps.config.resolveAfterS * 1000;
    let due = Infinity;
    for (const id of this.clearing) {
      const clearedAt = this.open.get(id)?.clearedAt;
      if (clearedAt !== null && clearedAt !== undefined) due = Math.min(due, clearedAt + after);
    }
    if (due === Infinity) {
      this.deps.clock.clearTimeout(this.timer);
      this.timer = undefined;
      this.timerDue = null;
      return;
    }
    if (this.timer && this.timerDue !== null && this.timerDue <= due) return;
    this.deps.clock.clearTimeout(this.timer);
    this.timerDue = due;
    this.timer = this.deps.clock.setTimeout(() => {
      this.timer = undefined;
      this.timerDue = null;
      try {
        this.tick();
      } catch (err) {
        this.log.error({ err }, 'ticket auto-resolve failed');
      }
      this.scheduleTick();
    }, Math.max(0, due - this.deps.clock.now()));
  }

  // ---------------------------------------------------------------- ConditionSink

  raise(report: ConditionReport): void {
    validateReport(report);
    const { kind, subject } = report;
    const existing = this.byCondition.get(conditionKey(kind, subject)) ?? this.byFamily.get(familyKey(kind, subject));
    // The evaluator may re-raise a holding condition on every tick: no transaction when nothing would change.
    if (existing !== undefined && this.isUnchanged(this.open.get(existing)!, report)) return;
    if (existing === undefined && kind === 'sensor_issue' && this.alreadyListedOnGateway(report.subject)) return;
    this.mutate((ws) => {
      if (existing !== undefined) {
        const t = ws.get(existing)!;
        // A condition folded onto another ticket (fair use) only adds history there, never rewrites its text.
        this.applyRaise(ws, t, report, t.family !== ticketFamily(kind) || t.subject !== subject);
        return;
      }
      if (kind === 'sensor_issue' && this.inhibitSensor(ws, report)) return;
      const last = this.sql
        .prepare('SELECT * FROM tickets WHERE family = ? AND subject = ? ORDER BY id DESC LIMIT 1')
        .get(ticketFamily(kind), subject) as TicketRow | undefined;
      // RULES.md "Auto-resolve": a recurrence within reopenWindow reopens the same ticket (boundary inclusive).
      if (last && last.status === 'resolved' && last.resolved_at !== null && ws.now - last.resolved_at <= this.deps.config.reopenWindowS * 1000) {
        this.reopen(ws, fromRow(last), report);
        return;
      }
      // RULES.md "Fair use": at most maxTicketsPerDay new automatic tickets a subject a UTC day; then fold.
      const openedToday = (
        this.sql.prepare(`SELECT COUNT(*) AS n FROM tickets WHERE subject = ? AND day_key = ? AND origin = 'auto'`).get(subject, utcDay(ws.now)) as {
          n: number;
        }
      ).n;
      if (openedToday >= this.deps.config.maxTicketsPerDay) {
        const newest = this.sql.prepare('SELECT id FROM tickets WHERE subject = ? ORDER BY id DESC LIMIT 1').get(subject) as { id: number };
        this.fold(ws, ws.get(newest.id)!, report, openedToday);
        return;
      }
      this.openTicket(ws, report, 'auto');
    });
  }

  clear(kind: TicketKind, subject: string, reason: string): void {
    const id = this.byCondition.get(conditionKey(kind, subject)) ?? this.byFamily.get(familyKey(kind, subject));
    if (id === undefined) return;
    const inSlot = slotMatcher(kind, subject);
    // Nothing of this condition on the ticket (e.g. one a person opened): nothing to clear.
    if (!this.open.get(id)!.conditions.some(inSlot)) return;
    this.mutate((ws) => {
      const t = ws.get(id)!;
      t.conditions = t.conditions.filter((c) => !inSlot(c));
      // Resolution waits until every condition on the ticket has cleared, then resolveAfter more.
      if (t.conditions.length === 0 && t.clearedAt === null) {
        t.clearedAt = ws.now;
        t.clearReason = reason;
      }
      ws.save(t);
    });
  }

  hasOpen(kinds: readonly TicketKind[], subject: string): boolean {
    for (const kind of kinds) {
      const id = this.byCondition.get(conditionKey(kind, subject)) ?? this.byFamily.get(familyKey(kind, subject));
      if (id !== undefined && this.open.get(id)?.kind === kind) return true;
    }
    return false;
  }

  /** Resolve tickets whose conditions stayed clear for resolveAfter (exactly at the boundary, not a ms before). */
  tick(): void {
    const now = this.deps.clock.now();
    const after = this.deps.config.resolveAfterS * 1000;
    for (const id of [...this.clearing]) {
      const t = this.open.get(id);
      if (!t || t.clearedAt === null || t.conditions.length > 0) continue;
      if (now - t.clearedAt < after) continue;
      const reason = `condition cleared for ${this.deps.config.resolveAfterS} s${t.clearReason ? `: ${t.clearReason}` : ''}`;
      this.mutate((ws) => this.resolveTicket(ws, ws.get(id)!, reason, 'auto'));
    }
  }

  // ---------------------------------------------------------------- people

  openByPerson(input: OpenTicketInput): Ticket {
    const parsed = parseOpenInput(input);
    if (!this.subjectExists(parsed.subject)) {
      throw new ValidationError(`subject: ${parsed.subject} is not a registered device, customer:<name> or fleet`);
    }
    if (parsed.kind !== 'manual') {
      const existing = this.byFamily.get(familyKey(parsed.kind, parsed.subject));
      if (existing !== undefined) throw new ConflictError(`ticket ${existing} is already open for ${parsed.kind} on ${parsed.subject}`);
    }
    let opened!: Ticket;
    this.mutate((ws) => {
      opened = this.openTicket(
        ws,
        { kind: parsed.kind, subject: parsed.subject, severity: parsed.severity, classification: parsed.classification, summary: parsed.summary, details: parsed.details },
        'person',
      );
    });
    return this.get(opened.id)!;
  }

  ack(id: number): Ticket {
    const current = this.get(id);
    if (!current) throw new NotFoundError(`ticket ${id} not found`);
    if (current.status === 'resolved') throw new ConflictError(`ticket ${id} is resolved`);
    if (current.status === 'acknowledged') return current;
    this.mutate((ws) => {
      const t = ws.get(id)!;
      t.status = 'acknowledged';
      t.ackedAt = ws.now;
      ws.save(t);
      ws.event(t, 'acknowledged', { by: 'person' });
    });
    return this.get(id)!;
  }

  resolve(id: number, reason: unknown): Ticket {
    if (typeof reason !== 'string' || reason.trim().length === 0) throw new ValidationError('reason: required');
    if (reason.length > 2000) throw new ValidationError('reason: at most 2000 characters');
    const current = this.get(id);
    if (!current) throw new NotFoundError(`ticket ${id} not found`);
    if (current.status === 'resolved') throw new ConflictError(`ticket ${id} is already resolved`);
    // A live condition resolved by hand reopens at its next raise: a problem cannot be closed away while it holds.
    this.mutate((ws) => this.resolveTicket(ws, ws.get(id)!, reason.trim(), 'person'));
    return this.get(id)!;
  }

  // ---------------------------------------------------------------- reads

  get(id: number): Ticket | undefined {
    const cached = this.open.get(id);
    if (cached) return cached;
    const row = this.sql.prepare('SELECT * FROM tickets WHERE id = ?').get(id) as TicketRow | undefined;
    return row ? fromRow(row) : undefined;
  }

  /** @internal the person acting in the current request, if any. */
  actorName(): string | undefined {
    return this.deps.actor?.();
  }

  /** @internal a private copy for a WorkingSet to change. */
  loadForChange(id: number): Ticket | undefined {
    const t = this.get(id);
    return t ? clone(t) : undefined;
  }

  events(id: number): TicketEvent[] {
    const rows = this.deps.db.prepare('SELECT * FROM ticket_events WHERE ticket_id = ? ORDER BY id').all(id) as {
      id: number;
      ticket_id: number;
      ts: number;
      type: TicketEventType;
      data: string;
    }[];
    return rows.map((r) => ({ id: r.id, ticketId: r.ticket_id, ts: new Date(r.ts).toISOString(), type: r.type, data: JSON.parse(r.data) as Record<string, unknown> }));
  }

  /** One ticket with its band and score now, its unresolved children and its full event history. */
  detail(id: number): { ticket: Record<string, unknown>; events: TicketEvent[] } | undefined {
    const t = this.get(id);
    if (!t) return undefined;
    const p = priority(t, this.deps.clock.now(), this.deps.config);
    const children = [...this.open.values()].filter((c) => c.parentId === id).map((c) => c.id);
    return {
      ticket: { ...ticketView(t), band: p.band, score: Math.round(p.score * 100) / 100, ageS: Math.max(0, Math.floor((this.deps.clock.now() - t.openedAt) / 1000)), children },
      events: this.events(id),
    };
  }

  /** Unresolved tickets (including children), from memory. */
  unresolved(): Ticket[] {
    return [...this.open.values()];
  }

  /**
   * The support queue (RULES.md "Support queue order"): unresolved top-level tickets in queue order, each child
   * (a ticket attached to an unresolved parent) nested under its parent and left out of the ranking. With
   * status=all, resolved tickets follow, newest first.
   */
  queue(filter: QueueFilter = {}): QueueItem[] {
    const now = this.deps.clock.now();
    const weights = this.deps.config;
    const matches = (t: Ticket): boolean =>
      (!filter.kind || t.kind === filter.kind) &&
      (!filter.severity || t.severity === filter.severity) &&
      (!filter.subject || t.subject === filter.subject) &&
      (!filter.customer || t.customer === filter.customer);
    const item = (t: Ticket, rank: number | null, children: QueueItem[] = []): QueueItem => {
      const p = prio(t);
      return {
        ...ticketView(t),
        rank,
        id: t.id,
        band: p.band,
        score: Math.round(p.score * 100) / 100,
        ageS: Math.max(0, Math.floor((now - t.openedAt) / 1000)),
        children,
      };
    };
    // Priorities computed once per ticket, not per comparison.
    const cache = new Map<number, { band: Band; score: number }>();
    const prio = (t: Ticket) => {
      let p = cache.get(t.id);
      if (!p) cache.set(t.id, (p = priority(t, now, weights)));
      return p;
    };
    const byQueue = (a: Ticket, b: Ticket): number => comparePrioritized(a, prio(a), b, prio(b));
    const childrenOf = new Map<number, Ticket[]>();
    const top: Ticket[] = [];
    for (const t of this.open.values()) {
      if (t.parentId !== null && this.open.has(t.parentId)) {
        const list = childrenOf.get(t.parentId) ?? [];
        list.push(t);
        childrenOf.set(t.parentId, list);
      } else if (matches(t)) top.push(t);
    }
    top.sort(byQueue);
    const out = top.map((t, i) => item(t, i + 1, (childrenOf.get(t.id) ?? []).sort(byQueue).map((c) => item(c, null))));
    if (filter.status === 'all') {
      const rows = this.deps.db
        .prepare(`SELECT * FROM tickets WHERE status = 'resolved' ORDER BY resolved_at DESC, id DESC LIMIT ?`)
        .all(filter.limit ?? 200) as TicketRow[];
      for (const row of rows) {
        const t = fromRow(row);
        if (matches(t)) out.push(item(t, null));
      }
    }
    return out;
  }

  // ---------------------------------------------------------------- internals

  private mutate(work: (ws: WorkingSet) => void): void {
    const ws = new WorkingSet(this, this.sql, this.deps.outbox, this.deps.clock.now());
    this.deps.db.transaction(() => work(ws))();
    for (const t of ws.changed.values()) this.reindex(t);
    // Clears are stamped with the current time, so an armed timer is never later than a new one would be.
    if (this.started && !this.timer && this.clearing.size > 0) this.scheduleTick();
    if (ws.events > 0) this.deps.outbox.committed();
  }

  private reindex(t: Ticket): void {
    const previous = this.open.get(t.id);
    if (previous) this.unindex(previous);
    this.index(t);
  }

  private index(t: Ticket): void {
    if (t.status === 'resolved') return;
    this.open.set(t.id, t);
    // Person-opened `manual` tickets are not deduplicated: each question is its own ticket.
    if (t.kind !== 'manual') this.byFamily.set(familyKey(t.kind, t.subject), t.id);
    for (const c of t.conditions) this.byCondition.set(c, t.id);
    if (groupLevel(t.kind) >= 1) {
      for (const s of t.covers) {
        const set = this.coveredBy.get(s) ?? new Set<number>();
        set.add(t.id);
        this.coveredBy.set(s, set);
      }
    }
    if (t.clearedAt !== null && t.conditions.length === 0) this.clearing.add(t.id);
  }

  private unindex(t: Ticket): void {
    this.open.delete(t.id);
    const fk = familyKey(t.kind, t.subject);
    if (this.byFamily.get(fk) === t.id) this.byFamily.delete(fk);
    for (const c of t.conditions) if (this.byCondition.get(c) === t.id) this.byCondition.delete(c);
    for (const s of t.covers) {
      const set = this.coveredBy.get(s);
      if (!set) continue;
      set.delete(t.id);
      if (set.size === 0) this.coveredBy.delete(s);
    }
    this.clearing.delete(t.id);
  }

  private subjectExists(subject: string): boolean {
    if (subject === 'fleet') return true;
    if (this.deps.directory.get(subject)) return true;
    if (subject.startsWith('customer:')) {
      const name = subject.slice('customer:'.length);
      if (this.deps.directory.gatewaysOf(name).length > 0) return true;
      for (const d of this.deps.directory.all()) if (d.customer === name) return true;
    }
    return false;
  }

  /**
   * Eligibility, reasons and tier of a subject (RULES.md "Eligibility": every ticket records why). A device is
   * judged itself; a customer ticket by the devices it covers (eligible when one of them is, at the best tier
   * among those). A fleet-wide subject (`fleet`, `rollout:<id>`: a major outage, a security incident across
   * devices, an aborted rollout) is the operator's own incident, not one device's support claim: it ranks as
   * paid at the xcare weight, whatever the devices it lists.
   */
  private eligibilityFor(subject: string, covers: readonly string[]): SubjectEligibility {
    if (this.deps.directory.get(subject)) {
      return this.deps.eligibilityOf(subject) ?? { eligible: false, reasons: [`device ${subject} is not registered`], tier: 'none' };
    }
    if (!subject.startsWith('customer:')) return { eligible: true, reasons: [], tier: 'xcare' };
    let devices: string[] = [...covers];
    if (devices.length === 0) devices = this.deps.directory.gatewaysOf(subject.slice('customer:'.length)).map((d) => d.id);
    if (devices.length === 0) return { eligible: false, reasons: [`${subject} has no registered gateway`], tier: 'none' };
    const tierRank: Record<Tier, number> = { none: 0, xcare: 1, xcare_pro: 2 };
    let best: Tier = 'none';
    let eligible = false;
    const reasons: string[] = [];
    for (const id of devices) {
      const e = this.deps.eligibilityOf(id);
      if (!e) {
        reasons.push(`${id}: not registered`);
        continue;
      }
      if (e.eligible) {
        if (!eligible || tierRank[e.tier] > tierRank[best]) best = e.tier;
        eligible = true;
      } else {
        if (!eligible && tierRank[e.tier] > tierRank[best]) best = e.tier;
        for (const r of e.reasons) reasons.push(`${id}: ${r}`);
      }
    }
    if (eligible) return { eligible: true, reasons: [], tier: best };
    return { eligible: false, reasons: reasons.slice(0, 20), tier: best };
  }

  private refreshEligibility(t: Ticket): void {
    const e = this.eligibilityFor(t.subject, t.covers);
    t.eligible = e.eligible;
    t.ineligibleReasons = e.reasons;
    t.tier = e.tier;
    t.band = band(t);
  }

  private openTicket(ws: WorkingSet, report: ConditionReport, origin: 'auto' | 'person'): Ticket {
    const device = this.deps.directory.get(report.subject);
    const covers = [...new Set(report.covers ?? [])].sort();
    const e = this.eligibilityFor(report.subject, covers);
    const parentId = this.coveringParent(ws, report.kind, report.subject, null);
    const draft: Omit<Ticket, 'id'> = {
      kind: report.kind,
      family: ticketFamily(report.kind),
      subject: report.subject,
      customer: device?.customer ?? (report.subject.startsWith('customer:') ? report.subject.slice('customer:'.length) : null),
      deviceId: device ? device.id : null,
      origin,
      classification: report.classification,
      severity: report.severity,
      status: 'open',
      summary: report.summary,
      details: report.details ?? {},
      covers,
      conditions: origin === 'auto' ? [conditionKey(report.kind, report.subject)] : [],
      parentId,
      eligible: e.eligible,
      ineligibleReasons: e.reasons,
      tier: e.tier,
      band: band({ eligible: e.eligible, tier: e.tier }),
      openedKind: report.kind,
      openedSeverity: report.severity,
      openedAt: ws.now,
      waitingSince: ws.now,
      updatedAt: ws.now,
      ackedAt: null,
      resolvedAt: null,
      resolveReason: null,
      resolvedBy: null,
      clearedAt: null,
      clearReason: null,
      reopenCount: 0,
      dayKey: utcDay(ws.now),
    };
    const t = ws.insert(draft);
    ws.event(t, 'opened', {
      by: origin,
      kind: t.kind,
      severity: t.severity,
      classification: t.classification,
      summary: t.summary,
      eligible: t.eligible,
      ineligibleReasons: t.ineligibleReasons,
      tier: t.tier,
      ...(parentId !== null ? { parentId } : {}),
    });
    if (parentId !== null) ws.event(ws.get(parentId)!, 'child_attached', { children: [{ id: t.id, subject: t.subject }] });
    this.attachChildren(ws, t);
    this.log.info({ ticketId: t.id, kind: t.kind, subject: t.subject, severity: t.severity, band: t.band }, 'ticket opened');
    return t;
  }

  /** A persisting condition updates its ticket; a rise in severity (partial -> loss) upgrades it in place. */
  private applyRaise(ws: WorkingSet, t: Ticket, report: ConditionReport, folded: boolean): void {
    const key = conditionKey(report.kind, report.subject);
    let dirty = false;
    const newCondition = !t.conditions.includes(key);
    if (newCondition) {
      // gateway_partial and gateway_loss of one gateway are one condition slot: the latest kind replaces the other,
      // so the reporter's clear of the kind it raised last clears the slot.
      const inSlot = slotMatcher(report.kind, report.subject);
      t.conditions = [...t.conditions.filter((c) => !inSlot(c)), key];
      dirty = true;
    }
    if (t.clearedAt !== null) {
      t.clearedAt = null;
      t.clearReason = null;
      dirty = true;
    }
    const from = { kind: t.kind, severity: t.severity };
    let escalated = false;
    if (!folded && ticketFamily(report.kind) === t.family && (KIND_RANK[report.kind] ?? 0) > (KIND_RANK[t.kind] ?? 0)) {
      t.kind = report.kind;
      escalated = true;
    }
    if (SEVERITY_RANK[report.severity] > SEVERITY_RANK[t.severity]) {
      t.severity = report.severity;
      escalated = true;
    }
    const changes: Record<string, unknown> = {};
    if (!folded) {
      if (report.summary !== t.summary) {
        changes.summary = report.summary;
        t.summary = report.summary;
      }
      if (report.details && JSON.stringify(report.details) !== JSON.stringify(t.details)) {
        changes.details = report.details;
        t.details = { ...report.details };
      }
      // Covers only grow while a ticket is unresolved: a subject once grouped stays listed (no churn per tick).
      const listed = new Set(t.covers);
      const added = [...new Set(report.covers ?? [])].filter((c) => !listed.has(c)).sort();
      if (added.length > 0) {
        changes.coversAdded = added;
        t.covers = [...t.covers, ...added].sort();
      }
    }
    const updated = Object.keys(changes).length > 0;
    if (escalated || updated || (folded && newCondition)) this.refreshEligibility(t);
    if (dirty || escalated || updated || (folded && newCondition)) ws.save(t);
    if (folded && newCondition) {
      ws.event(t, 'folded', { kind: report.kind, subject: report.subject, severity: report.severity, summary: report.summary, details: report.details ?? {} });
    }
    if (escalated) {
      ws.event(t, 'escalated', { from, to: { kind: t.kind, severity: t.severity }, summary: t.summary });
      this.log.warn({ ticketId: t.id, from, to: { kind: t.kind, severity: t.severity } }, 'ticket escalated');
    }
    if (updated) ws.event(t, 'updated', { ...changes, eligible: t.eligible, tier: t.tier });
    if (changes.coversAdded) this.attachChildren(ws, t);
  }

  private isUnchanged(t: Ticket, report: ConditionReport): boolean {
    const key = conditionKey(report.kind, report.subject);
    if (!t.conditions.includes(key) || t.clearedAt !== null) return false;
    if (SEVERITY_RANK[report.severity] > SEVERITY_RANK[t.severity]) return false;
    if (t.family === ticketFamily(report.kind) && (KIND_RANK[report.kind] ?? 0) > (KIND_RANK[t.kind] ?? 0)) return false;
    const folded = t.family !== ticketFamily(report.kind) || t.subject !== report.subject;
    if (folded) return true;
    if (report.summary !== t.summary) return false;
    if (report.details && JSON.stringify(report.details) !== JSON.stringify(t.details)) return false;
    if (!report.covers || report.covers.length === 0) return true;
    // Sets, not includes(): a fleet-wide ticket may list tens of thousands of gateways.
    const listed = new Set(t.covers);
    return report.covers.every((c) => listed.has(c));
  }

  private alreadyListedOnGateway(sensor: string): boolean {
    const parent = this.deps.directory.get(sensor)?.parent;
    const id = parent ? this.byFamily.get(`gateway|${parent}`) : undefined;
    return id !== undefined && (this.open.get(id)?.covers.includes(sensor) ?? false);
  }

  /** RULES.md "Grouping and inhibition": a sensor behind a lost (or covering) gateway ticket is listed there instead. */
  private inhibitSensor(ws: WorkingSet, report: ConditionReport): boolean {
    const parent = this.deps.directory.get(report.subject)?.parent;
    if (!parent) return false;
    const gatewayTicketId = this.byFamily.get(`gateway|${parent}`);
    if (gatewayTicketId === undefined) return false;
    const gw = ws.get(gatewayTicketId)!;
    if (gw.kind !== 'gateway_loss' && !gw.covers.includes(report.subject)) return false;
    if (!gw.covers.includes(report.subject)) {
      gw.covers = [...gw.covers, report.subject].sort();
      ws.save(gw);
      ws.event(gw, 'updated', { coversAdded: [report.subject], sensorReport: { kind: report.kind, summary: report.summary } });
    }
    return true;
  }

  private reopen(ws: WorkingSet, last: Ticket, report: ConditionReport): void {
    const t = clone(last);
    const previous = { resolvedAt: new Date(t.resolvedAt!).toISOString(), reason: t.resolveReason };
    t.status = 'open';
    t.resolvedAt = null;
    t.resolveReason = null;
    t.resolvedBy = null;
    t.ackedAt = null;
    t.reopenCount++;
    t.conditions = [conditionKey(report.kind, report.subject)];
    t.clearedAt = null;
    t.clearReason = null;
    t.waitingSince = ws.now;
    // A recurrence is judged afresh: its own kind, severity and text.
    t.kind = report.kind;
    t.severity = report.severity;
    t.classification = report.classification;
    t.summary = report.summary;
    t.details = report.details ?? {};
    t.covers = [...new Set(report.covers ?? [])].sort();
    t.parentId = this.coveringParent(ws, t.kind, t.subject, null);
    this.refreshEligibility(t);
    ws.save(t);
    ws.event(t, 'reopened', { previous, kind: t.kind, severity: t.severity, summary: t.summary, reopenCount: t.reopenCount });
    if (t.parentId !== null) ws.event(ws.get(t.parentId)!, 'child_attached', { children: [{ id: t.id, subject: t.subject }] });
    this.attachChildren(ws, t);
    this.log.info({ ticketId: t.id, kind: t.kind, subject: t.subject }, 'ticket reopened');
  }

  /** RULES.md "Fair use": nothing is dropped; the event goes onto the subject's newest ticket. */
  private fold(ws: WorkingSet, target: Ticket, report: ConditionReport, openedToday: number): void {
    if (target.status === 'resolved') {
      // The condition holds now: its ticket must be in the queue, so the newest ticket reopens to carry it.
      target.status = 'open';
      target.resolvedAt = null;
      target.resolveReason = null;
      target.resolvedBy = null;
      target.reopenCount++;
      target.conditions = [];
      target.clearedAt = null;
      target.waitingSince = ws.now;
      ws.save(target);
      ws.event(target, 'reopened', { folded: true, reopenCount: target.reopenCount });
    }
    this.log.warn({ ticketId: target.id, subject: report.subject, kind: report.kind, openedToday }, 'fair-use cap reached; event folded');
    this.applyRaise(ws, target, report, true);
  }

  private resolveTicket(ws: WorkingSet, t: Ticket, reason: string, by: 'auto' | 'person'): void {
    if (t.status === 'resolved') return;
    t.status = 'resolved';
    t.resolvedAt = ws.now;
    t.resolveReason = reason;
    t.resolvedBy = by;
    ws.save(t);
    ws.event(t, 'resolved', { reason, by });
    this.log.info({ ticketId: t.id, kind: t.kind, subject: t.subject, by }, 'ticket resolved');
    // Children return to the queue (or move to another parent still covering them).
    const children = this.sql.prepare(`SELECT id FROM tickets WHERE parent_id = ? AND status != 'resolved'`).all(t.id) as { id: number }[];
    const moved = new Map<number, { id: number; subject: string }[]>();
    for (const { id } of children) {
      const child = ws.get(id)!;
      if (child.status === 'resolved' || child.parentId !== t.id) continue;
      child.parentId = this.coveringParent(ws, child.kind, child.subject, t.id);
      ws.save(child);
      ws.event(child, 'updated', { detachedFrom: t.id, ...(child.parentId !== null ? { attachedTo: child.parentId } : {}) });
      if (child.parentId !== null) {
        const list = moved.get(child.parentId) ?? [];
        list.push({ id: child.id, subject: child.subject });
        moved.set(child.parentId, list);
      }
    }
    for (const [parentId, list] of moved) ws.event(ws.get(parentId)!, 'child_attached', { children: list });
  }

  /** The highest-level unresolved ticket that covers this subject at the level above this kind, if any. */
  private coveringParent(ws: WorkingSet, kind: TicketKind, subject: string, exclude: number | null): number | null {
    const level = groupLevel(kind);
    if (level < 0) return null;
    const candidates = this.coveredBy.get(subject);
    if (!candidates) return null;
    let best: Ticket | undefined;
    for (const id of candidates) {
      if (id === exclude) continue;
      const p = ws.get(id);
      if (!p || p.status === 'resolved') continue;
      const pl = groupLevel(p.kind);
      if (pl <= level || childLevelOf(pl) !== level) continue;
      if (!best || pl > groupLevel(best.kind)) best = p;
    }
    return best ? best.id : null;
  }

  /** Attach unresolved tickets of the subjects a grouping ticket covers (gateways to customer/fleet, sensors to gateways). */
  private attachChildren(ws: WorkingSet, parent: Ticket): void {
    const level = groupLevel(parent.kind);
    if (level < 1 || parent.status === 'resolved') return;
    const childLevel = childLevelOf(level);
    const attached: { id: number; subject: string }[] = [];
    for (const subject of parent.covers) {
      const id = this.byFamily.get(childLevel === 1 ? `gateway|${subject}` : `sensor_issue|${subject}`);
      if (id === undefined || id === parent.id) continue;
      const child = ws.get(id)!;
      if (child.status === 'resolved' || child.parentId === parent.id) continue;
      if (child.parentId !== null) {
        const current = ws.get(child.parentId);
        if (current && current.status !== 'resolved' && groupLevel(current.kind) >= level) continue;
      }
      child.parentId = parent.id;
      ws.save(child);
      ws.event(child, 'updated', { attachedTo: parent.id });
      attached.push({ id: child.id, subject: child.subject });
    }
    // One event for the batch: a fleet-wide ticket may take thousands of children at once.
    if (attached.length > 0) ws.event(parent, 'child_attached', { children: attached });
  }
}

function validateReport(report: ConditionReport): void {
  if (!report || typeof report !== 'object') throw new ValidationError('report: expected an object');
  if (!TICKET_KINDS.includes(report.kind)) throw new ValidationError(`kind: unknown ticket kind ${JSON.stringify(report.kind)}`);
  if (typeof report.subject !== 'string' || report.subject.length === 0 || report.subject.length > 200) {
    throw new ValidationError('subject: expected a non-empty string');
  }
  if (!SEVERITIES.includes(report.severity)) throw new ValidationError(`severity: unknown severity ${JSON.stringify(report.severity)}`);
  if (!CLASSIFICATIONS.includes(report.classification)) {
    throw new ValidationError(`classification: unknown classification ${JSON.stringify(report.classification)}`);
  }
  if (typeof report.summary !== 'string') throw new ValidationError('summary: expected a string');
}

/** Validate a person's ticket (API body or CLI flags). Consultative tickets default to severity low (RULES.md). */
export function parseOpenInput(raw: unknown): Required<Omit<OpenTicketInput, 'details'>> & { details: Record<string, unknown> } {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new ValidationError('body: expected a JSON object');
  const input = raw as Record<string, unknown>;
  const subject = input.subject;
  if (typeof subject !== 'string' || subject.trim().length === 0 || subject.length > 200) throw new ValidationError('subject: required');
  const classification = input.classification;
  if (classification !== 'problem' && classification !== 'consultative') throw new ValidationError('classification: expected problem or consultative');
  let severity = input.severity;
  if (severity === undefined || severity === null) {
    if (classification === 'consultative') severity = 'low';
    else throw new ValidationError('severity: required for a problem ticket (urgent, high, medium, low)');
  }
  if (!SEVERITIES.includes(severity as Severity)) throw new ValidationError('severity: expected urgent, high, medium or low');
  const summary = input.summary;
  if (typeof summary !== 'string' || summary.trim().length === 0) throw new ValidationError('summary: required');
  if (summary.length > 2000) throw new ValidationError('summary: at most 2000 characters');
  const kind = input.kind ?? 'manual';
  if (!TICKET_KINDS.includes(kind as TicketKind)) throw new ValidationError(`kind: unknown ticket kind ${JSON.stringify(kind)}`);
  const details = input.details ?? {};
  if (typeof details !== 'object' || details === null || Array.isArray(details)) throw new ValidationError('details: expected an object');
  return {
    subject: subject.trim(),
    classification,
    severity: severity as Severity,
    summary: summary.trim(),
    kind: kind as TicketKind,
    details: details as Record<string, unknown>,
  };
}

export type { Ticket, TicketEvent, TicketStatus };
