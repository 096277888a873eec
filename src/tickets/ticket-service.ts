import type { Database, StoreHealth } from '../db/database.js';
import type { Clock, TimerHandle } from '../clock.js';
import type { Logger } from '../log.js';
import type { Config } from '../config/schema.js';
import { ConflictError, NotFoundError, ValidationError, XcareError } from '../errors.js';
import type { DeviceDirectory } from '../registry/types.js';
import { decideRaise, type RaiseState, type TicketFacts } from './decide-raise.js';
import { attachChildren, conditionKey, coveringParent, groupLevel, slotMatcher, ticketFamily, utcDay } from './grouping.js';
import { TicketIndex } from './ticket-index.js';
import { priority } from './priority.js';
import { KIND_RANK, moreSevere } from './severity.js';
import { buildQueue, type QueueFilter, type QueueItem } from './support-queue.js';
import { nextEligibility, subjectEligibility, type SubjectEligibility } from './ticket-eligibility.js';
import { parseOpenInput, subjectExists, validateReport, type OpenTicketInput } from './ticket-input.js';
import { clone, fromRow, ticketView, type Ticket, type TicketEvent, type TicketEventType, type TicketRow } from './ticket-model.js';
import type { ConditionReport, ConditionSink, TicketKind, TicketStatus } from './types.js';
import { Statements, WorkingSet, type OutboxWriter } from './working-set.js';

export type { SubjectEligibility, OutboxWriter, OpenTicketInput, QueueFilter, QueueItem };
export { parseOpenInput, ticketFamily, groupLevel };

/** The dedicated success engineer of an xcare_pro device's customer (RULES.md "Subscriptions"). */
export interface SuccessEngineer {
  name: string | null;
  email: string | null;
  phone: string | null;
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
  /** The success engineer named on a customer, if any; xcare_pro tickets and their deliveries carry it. */
  successEngineerOf?(customer: string): SuccessEngineer | undefined;
  /** Where the outcome of every ticket write is reported (/readyz, `fleet_store_healthy`). */
  storeHealth?: StoreHealth;
}

/**
 * The ticket service: the evaluator's ConditionSink plus the people's operations (open, ack, resolve) and the
 * support queue. SQLite is the truth; unresolved tickets are indexed in memory so raise/clear/hasOpen on every
 * evaluator tick cost no query when nothing changes. Every state change is one transaction holding the ticket,
 * its history event(s) and the outbox row(s), committed before delivery is woken. The decisions are pure
 * functions elsewhere: `decideRaise` (decide-raise.ts), `nextEligibility` (ticket-eligibility.ts), `buildQueue`.
 */
export class TicketService implements ConditionSink {
  private readonly idx = new TicketIndex();
  private readonly open = this.idx.open;
  private readonly clearing = this.idx.clearing;
  /** When each clearing ticket cleared, on the monotonic clock: resolveAfter must not jump with the wall clock. */
  private readonly clearedMono = new Map<number, { wall: number; mono: number }>();
  private readonly holdingListeners = new Set<(kind: TicketKind, subject: string) => void>();
  /** Inside `atomically`: changes wait for the outer commit before they reach the index and the outbox. */
  private batch: { changed: Map<number, Ticket>; events: number } | null = null;
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

  /** Rebuild the in-memory index from SQLite (at start, and after a batch whose transaction failed). */
  load(): void {
    this.idx.clear();
    const rows = this.deps.db.prepare(`SELECT * FROM tickets WHERE status != 'resolved'`).all() as TicketRow[];
    this.clearedMono.clear();
    for (const row of rows) this.idx.add(fromRow(row));
    for (const id of this.clearing) this.clearedSince(this.open.get(id)!);
    this.log.info({ open: rows.length }, 'tickets loaded');
  }

  private scheduleTick(retryMs?: number): void {
    if (!this.started) return;
    const after = this.deps.config.resolveAfterS * 1000;
    let due = Infinity;
    for (const id of this.clearing) {
      const t = this.open.get(id);
      if (t && t.clearedAt !== null) due = Math.min(due, this.clearedSince(t) + after);
    }
    if (due === Infinity) {
      this.deps.clock.clearTimeout(this.timer);
      this.timer = undefined;
      this.timerDue = null;
      return;
    }
    // After a failed attempt (storage fault) the same resolution is due at once: wait instead of spinning.
    if (retryMs !== undefined) due = Math.max(due, this.deps.clock.monotonicNow() + retryMs);
    if (this.timer && this.timerDue !== null && this.timerDue <= due) return;
    this.deps.clock.clearTimeout(this.timer);
    this.timerDue = due;
    this.timer = this.deps.clock.setTimeout(() => {
      this.timer = undefined;
      this.timerDue = null;
      try {
        this.tick();
        this.scheduleTick();
      } catch (err) {
        this.log.error({ err }, 'ticket auto-resolve failed; retrying');
        this.scheduleTick(1000);
      }
    }, Math.max(0, due - this.deps.clock.monotonicNow()));
  }

  /**
   * When `t` (clearing) cleared, in monotonic ms: taken from its stored wall time the first time it is seen, so a
   * wall-clock step afterwards neither resolves it early nor holds it back.
   */
  private clearedSince(t: Ticket): number {
    const known = this.clearedMono.get(t.id);
    if (known && known.wall === t.clearedAt) return known.mono;
    const mono = this.deps.clock.monotonicNow() - (this.deps.clock.now() - t.clearedAt!);
    this.clearedMono.set(t.id, { wall: t.clearedAt!, mono });
    return mono;
  }

  // ---------------------------------------------------------------- ConditionSink

  /**
   * Run `work` as one transaction with every ticket change it makes; the index, the outbox wake-up and the
   * auto-resolve timer follow only after the commit. On failure the index is rebuilt from SQLite and the error
   * rethrown, so the caller can retry everything later (issue 8, fault 3).
   */
  atomically<T>(work: () => T): T {
    if (this.batch) return work();
    this.batch = { changed: new Map(), events: 0 };
    let result: T;
    try {
      result = this.deps.db.transaction(work)();
    } catch (err) {
      this.batch = null;
      this.load();
      throw err;
    }
    const batch = this.batch;
    this.batch = null;
    this.deps.storeHealth?.ok('tickets');
    this.afterCommit(batch.changed.values(), batch.events);
    return result;
  }

  onResolvedWhileHolding(listener: (kind: TicketKind, subject: string) => void): () => void {
    this.holdingListeners.add(listener);
    return () => this.holdingListeners.delete(listener);
  }

  raise(report: ConditionReport): void {
    validateReport(report);
    const { kind, subject } = report;
    const existingId = this.idx.forCondition(kind, subject);
    const existing = existingId === undefined ? undefined : this.open.get(existingId);
    // The evaluator may re-raise a holding condition on every tick: no transaction when nothing would change.
    if (existing && decideRaise(this.raiseState(existing), report, this.deps.clock.now(), this.deps.config).action === 'none') return;
    if (!existing && kind === 'sensor_issue' && this.alreadyListedOnGateway(subject)) return;
    this.mutate((ws) => {
      const decision = decideRaise(existing ? this.raiseState(existing) : this.lookupRaiseState(ws, report), report, ws.now, this.deps.config);
      switch (decision.action) {
        case 'none':
          return;
        case 'update':
          // A condition folded onto another ticket only adds history there, never rewrites its text.
          return this.applyRaise(ws, ws.get(decision.ticketId)!, report, decision.folded);
        case 'inhibit':
          return this.listOnGateway(ws, ws.get(decision.gatewayTicketId)!, report);
        case 'reopen':
          return this.reopen(ws, ws.get(decision.ticketId)!, report, decision.cause);
        case 'fold':
          return this.fold(ws, ws.get(decision.ticketId)!, report);
        case 'open':
          this.openTicket(ws, report, 'auto');
      }
    });
  }

  clear(kind: TicketKind, subject: string, reason: string): void {
    const id = this.idx.forCondition(kind, subject);
    if (id === undefined) return;
    const inSlot = slotMatcher(kind, subject);
    // Nothing of this condition on the ticket: nothing to clear.
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
      const id = this.idx.forCondition(kind, subject);
      if (id !== undefined && this.open.get(id)?.kind === kind) return true;
    }
    return false;
  }

  /** Resolve tickets whose conditions stayed clear for resolveAfter (exactly at the boundary, not a ms before). */
  tick(): void {
    const now = this.deps.clock.monotonicNow();
    const after = this.deps.config.resolveAfterS * 1000;
    for (const id of this.clearedMono.keys()) if (!this.clearing.has(id)) this.clearedMono.delete(id);
    for (const id of [...this.clearing]) {
      const t = this.open.get(id);
      if (!t || t.clearedAt === null || t.conditions.length > 0) continue;
      if (now - this.clearedSince(t) < after) continue;
      const reason = `condition cleared for ${this.deps.config.resolveAfterS} s${t.clearReason ? `: ${t.clearReason}` : ''}`;
      this.mutate((ws) => this.resolveTicket(ws, ws.get(id)!, reason, 'auto'));
    }
  }

  // ---------------------------------------------------------------- people

  /** `actor`: the token name of the person acting, recorded on the ticket's events (issue 14). */
  openByPerson(input: OpenTicketInput, actor?: string): Ticket {
    const parsed = parseOpenInput(input);
    if (!subjectExists(parsed.subject, this.deps.directory)) {
      throw new ValidationError(`subject: ${parsed.subject} is not a registered device, customer:<name> or fleet`);
    }
    if (parsed.kind !== 'manual') {
      const family = ticketFamily(parsed.kind);
      for (const t of this.open.values()) {
        if (t.kind !== 'manual' && t.family === family && t.subject === parsed.subject) {
          throw new ConflictError(`ticket ${t.id} is already open for ${parsed.kind} on ${parsed.subject}`);
        }
      }
    }
    let opened!: Ticket;
    this.mutate((ws) => {
      opened = this.openTicket(
        ws,
        { kind: parsed.kind, subject: parsed.subject, severity: parsed.severity, classification: parsed.classification, summary: parsed.summary, details: parsed.details },
        'person',
      );
    }, actor);
    return this.get(opened.id)!;
  }

  ack(id: number, actor?: string): Ticket {
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
    }, actor);
    return this.get(id)!;
  }

  /**
   * A person resolves a ticket. Its conditions are kept on the resolved row: one still holding (RULES.md "People
   * and machines") is raised again by the evaluator at its next evaluation, which reopens this ticket with an
   * event saying so.
   */
  resolve(id: number, reason: unknown, actor?: string): Ticket {
    if (typeof reason !== 'string' || reason.trim().length === 0) throw new ValidationError('reason: required');
    if (reason.length > 2000) throw new ValidationError('reason: at most 2000 characters');
    const current = this.get(id);
    if (!current) throw new NotFoundError(`ticket ${id} not found`);
    if (current.status === 'resolved') throw new ConflictError(`ticket ${id} is already resolved`);
    const holding = current.origin === 'auto' && current.clearedAt === null ? [...current.conditions] : [];
    this.mutate((ws) => this.resolveTicket(ws, ws.get(id)!, reason.trim(), 'person'), actor);
    for (const key of holding) {
      const bar = key.indexOf('|');
      for (const l of this.holdingListeners) l(key.slice(0, bar) as TicketKind, key.slice(bar + 1));
    }
    return this.get(id)!;
  }

  // ---------------------------------------------------------------- reads

  get(id: number): Ticket | undefined {
    const cached = this.open.get(id);
    if (cached) return cached;
    const row = this.sql.prepare('SELECT * FROM tickets WHERE id = ?').get(id) as TicketRow | undefined;
    return row ? fromRow(row) : undefined;
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

  /** The API/helpdesk form of a ticket: an xcare_pro ticket names its customer's success engineer (RULES.md). */
  view(t: Ticket): Record<string, unknown> {
    const v = ticketView(t);
    if (t.tier === 'xcare_pro' && t.customer !== null) v.successEngineer = this.deps.successEngineerOf?.(t.customer) ?? null;
    return v;
  }

  /** One ticket with its band and score now, its unresolved children and its full event history. */
  detail(id: number): { ticket: Record<string, unknown>; events: TicketEvent[] } | undefined {
    const t = this.get(id);
    if (!t) return undefined;
    const p = priority(t, this.deps.clock.now(), this.deps.config);
    const children = [...this.open.values()].filter((c) => c.parentId === id).map((c) => c.id);
    return {
      ticket: { ...this.view(t), band: p.band, score: Math.round(p.score * 100) / 100, ageS: Math.max(0, Math.floor((this.deps.clock.now() - t.openedAt) / 1000)), children },
      events: this.events(id),
    };
  }

  /** Unresolved tickets (including children), from memory. */
  unresolved(): Ticket[] {
    return [...this.open.values()];
  }

  /** The support queue (RULES.md "Support queue order"), see `buildQueue`. */
  queue(filter: QueueFilter = {}): QueueItem[] {
    const resolved =
      filter.status === 'all'
        ? (this.deps.db.prepare(`SELECT * FROM tickets WHERE status = 'resolved' ORDER BY resolved_at DESC, id DESC LIMIT ?`).all(filter.limit ?? 200) as TicketRow[]).map(fromRow)
        : [];
    return buildQueue(this.open, resolved, filter, this.deps.clock.now(), this.deps.config, (t) => this.view(t));
  }

  // ---------------------------------------------------------------- internals

  /** `actor`: the person whose request this is (recorded on every event), undefined for the daemon's own work. */
  private mutate(work: (ws: WorkingSet) => void, actor?: string): void {
    const ws = new WorkingSet((id) => this.loadForChange(id), this.sql, this.deps.outbox, (t) => this.view(t), this.deps.clock.now(), actor);
    try {
      this.deps.db.transaction(() => work(ws))();
    } catch (err) {
      // A storage fault is visible (/readyz), whoever asked for the change (issue 8, fault 3).
      if (!(err instanceof XcareError)) this.deps.storeHealth?.failed('tickets', err);
      throw err;
    }
    if (this.batch) {
      // Inside an outer transaction: visible to later reads of this batch, indexed only after its commit.
      for (const t of ws.changed.values()) {
        this.batch.changed.set(t.id, t);
        this.idx.reindex(t);
      }
      this.batch.events += ws.events;
      return;
    }
    this.deps.storeHealth?.ok('tickets');
    this.afterCommit(ws.changed.values(), ws.events);
  }

  private afterCommit(changed: Iterable<Ticket>, events: number): void {
    for (const t of changed) {
      this.idx.reindex(t);
      if (this.clearing.has(t.id)) this.clearedSince(t);
    }
    // Clears are stamped with the current time, so an armed timer is never later than a new one would be.
    if (this.started && !this.timer && this.clearing.size > 0) this.scheduleTick();
    if (events > 0) this.deps.outbox.committed();
  }

  /** The facts `decideRaise` reads when the condition meets an unresolved ticket (memory only). */
  private raiseState(existing: Ticket): RaiseState {
    return { existing, coveringGateway: null, lastResolved: null, openedToday: 0, newestAutomatic: null };
  }

  /** The facts `decideRaise` reads when no unresolved ticket carries the condition (a few indexed queries). */
  private lookupRaiseState(ws: WorkingSet, report: ConditionReport): RaiseState {
    const { kind, subject } = report;
    let coveringGateway: number | null = null;
    if (kind === 'sensor_issue') {
      const parent = this.deps.directory.get(subject)?.parent;
      const gwId = parent ? this.idx.byFamilyKey(`gateway|${parent}`) : undefined;
      const gw = gwId === undefined ? undefined : ws.get(gwId);
      if (gw && (gw.kind === 'gateway_loss' || gw.covers.includes(subject))) coveringGateway = gw.id;
    }
    // One query for the three facts (on PostgreSQL each query is a round trip of the event loop, and a mass
    // outage asks this once per device): the newest automatic ticket of this family and subject, how many
    // automatic tickets the subject opened today, and its newest automatic ticket of any family.
    const row = this.sql
      .prepare(
        `SELECT t.*,
           (SELECT COUNT(*) FROM tickets WHERE subject = @subject AND day_key = @day AND origin = 'auto') AS opened_today,
           (SELECT id FROM tickets WHERE subject = @subject AND origin = 'auto' ORDER BY id DESC LIMIT 1) AS newest_id
         FROM (SELECT 1 AS one) AS one
         LEFT JOIN (SELECT * FROM tickets WHERE family = @family AND subject = @subject AND origin = 'auto' ORDER BY id DESC LIMIT 1) AS t ON TRUE`,
      )
      .get({ family: ticketFamily(kind), subject, day: utcDay(ws.now) }) as (TicketRow & { opened_today: number; newest_id: number | null; one?: number }) | undefined;
    const last = row && row.id !== null && row.id !== undefined ? (row as TicketRow) : undefined;
    const lastTicket = last && last.status === 'resolved' && last.resolved_at !== null ? fromRow(last) : null;
    const openedToday = Number(row?.opened_today ?? 0);
    const newest = row?.newest_id !== null && row?.newest_id !== undefined ? { id: Number(row.newest_id) } : undefined;
    return {
      existing: null,
      coveringGateway,
      lastResolved: lastTicket ? { ...(lastTicket as TicketFacts), resolvedAt: lastTicket.resolvedAt!, resolvedBy: lastTicket.resolvedBy } : null,
      openedToday,
      newestAutomatic: newest?.id ?? null,
    };
  }

  /**
   * Judge the ticket's eligibility: `afresh` at open and reopen; otherwise (an update) band and tier only rise,
   * while the reasons are always the latest (RULES.md "Support queue order").
   */
  private refreshEligibility(t: Ticket, afresh: boolean): void {
    const fresh = subjectEligibility(t.subject, t.covers, this.deps.directory, (id) => this.deps.eligibilityOf(id));
    const next = nextEligibility(afresh ? null : t, fresh);
    t.eligible = next.eligible;
    t.ineligibleReasons = next.ineligibleReasons;
    t.tier = next.tier;
    t.band = next.band;
  }

  private openTicket(ws: WorkingSet, report: ConditionReport, origin: 'auto' | 'person'): Ticket {
    const device = this.deps.directory.get(report.subject);
    const covers = [...new Set(report.covers ?? [])].sort();
    const e = nextEligibility(null, subjectEligibility(report.subject, covers, this.deps.directory, (id) => this.deps.eligibilityOf(id)));
    const parentId = coveringParent(this.idx, ws, report.kind, report.subject, null);
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
      ineligibleReasons: e.ineligibleReasons,
      tier: e.tier,
      band: e.band,
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
    attachChildren(this.idx, ws, t);
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
    if (moreSevere(report.severity, t.severity)) {
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
    if (escalated || updated || (folded && newCondition)) this.refreshEligibility(t, false);
    if (dirty || escalated || updated || (folded && newCondition)) ws.save(t);
    if (folded && newCondition) {
      ws.event(t, 'folded', { kind: report.kind, subject: report.subject, severity: report.severity, summary: report.summary, details: report.details ?? {} });
    }
    if (escalated) {
      ws.event(t, 'escalated', { from, to: { kind: t.kind, severity: t.severity }, summary: t.summary });
      this.log.warn({ ticketId: t.id, from, to: { kind: t.kind, severity: t.severity } }, 'ticket escalated');
    }
    if (updated) ws.event(t, 'updated', { ...changes, eligible: t.eligible, tier: t.tier, ineligibleReasons: t.ineligibleReasons });
    if (changes.coversAdded) attachChildren(this.idx, ws, t);
  }

  private alreadyListedOnGateway(sensor: string): boolean {
    const parent = this.deps.directory.get(sensor)?.parent;
    const id = parent ? this.idx.byFamilyKey(`gateway|${parent}`) : undefined;
    return id !== undefined && (this.open.get(id)?.covers.includes(sensor) ?? false);
  }

  /** RULES.md "Grouping and inhibition": a sensor behind a lost (or covering) gateway ticket is listed there instead. */
  private listOnGateway(ws: WorkingSet, gw: Ticket, report: ConditionReport): void {
    if (gw.covers.includes(report.subject)) return;
    gw.covers = [...gw.covers, report.subject].sort();
    ws.save(gw);
    ws.event(gw, 'updated', { coversAdded: [report.subject], sensorReport: { kind: report.kind, summary: report.summary } });
  }

  private reopen(ws: WorkingSet, last: Ticket, report: ConditionReport, cause: 'recurrence' | 'resolved_while_holding'): void {
    const t = clone(last);
    const previous = { resolvedAt: new Date(t.resolvedAt!).toISOString(), reason: t.resolveReason, by: t.resolvedBy };
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
    t.parentId = coveringParent(this.idx, ws, t.kind, t.subject, null);
    this.refreshEligibility(t, true);
    ws.save(t);
    const why = cause === 'resolved_while_holding' ? 'resolved by a person while its condition still held' : 'condition recurred within the reopen window';
    ws.event(t, 'reopened', { previous, cause, reason: why, kind: t.kind, severity: t.severity, summary: t.summary, reopenCount: t.reopenCount });
    if (t.parentId !== null) ws.event(ws.get(t.parentId)!, 'child_attached', { children: [{ id: t.id, subject: t.subject }] });
    attachChildren(this.idx, ws, t);
    this.log.info({ ticketId: t.id, kind: t.kind, subject: t.subject, cause }, 'ticket reopened');
  }

  /** RULES.md "Fair use": nothing is dropped; the event goes onto the subject's newest automatic ticket. */
  private fold(ws: WorkingSet, target: Ticket, report: ConditionReport): void {
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
      ws.event(target, 'reopened', { folded: true, cause: 'folded', reopenCount: target.reopenCount });
    }
    this.log.warn({ ticketId: target.id, subject: report.subject, kind: report.kind }, 'fair-use cap reached; event folded');
    this.applyRaise(ws, target, report, true);
  }

  private resolveTicket(ws: WorkingSet, t: Ticket, reason: string, by: 'auto' | 'person'): void {
    if (t.status === 'resolved') return;
    t.status = 'resolved';
    t.resolvedAt = ws.now;
    t.resolveReason = reason;
    t.resolvedBy = by;
    ws.save(t);
    ws.event(t, 'resolved', { reason, by, ...(by === 'person' && t.conditions.length > 0 && t.clearedAt === null ? { conditionHolds: true } : {}) });
    this.log.info({ ticketId: t.id, kind: t.kind, subject: t.subject, by }, 'ticket resolved');
    // Children return to the queue (or move to another parent still covering them).
    const children = this.sql.prepare(`SELECT id FROM tickets WHERE parent_id = ? AND status != 'resolved'`).all(t.id) as { id: number }[];
    const moved = new Map<number, { id: number; subject: string }[]>();
    for (const { id } of children) {
      const child = ws.get(id)!;
      if (child.status === 'resolved' || child.parentId !== t.id) continue;
      child.parentId = coveringParent(this.idx, ws, child.kind, child.subject, t.id);
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
}

export type { Ticket, TicketEvent, TicketStatus };
