import type { Logger } from '../log.js';
import { moreSevere, severityOf } from '../tickets/severity.js';
import type { ConditionReport, ConditionSink, TicketKind } from '../tickets/types.js';
import type { HealthMetrics } from './health-metrics.js';

interface ActiveCondition {
  kind: TicketKind;
  subject: string;
  signature: string;
}

interface JournalEntry {
  active: ActiveCondition | undefined;
  reconciled: boolean;
}

/**
 * What the evaluator has told the ticket service, per slot (`gw:<id>`, `sensor:<id>`, `cust:<name>`, `fleet`,
 * `flap:<id>`, `sec:<subject>`), and the raise/clear calls that keep the service in step with the conditions.
 *
 * A tick is all or nothing (issue 8, fault 3): `begin()` starts a journal of every slot it touches; if the tick's
 * transaction fails, `rollback()` restores them, so the next tick raises or clears again what was not committed.
 */
export class ConditionReconciler {
  private readonly active = new Map<string, ActiveCondition>();
  /** Slots whose ticket state was checked against the sink since start (open tickets survive our restarts). */
  private readonly reconciled = new Set<string>();
  private journal: Map<string, JournalEntry> | null = null;

  constructor(private readonly deps: { sink: ConditionSink; log: Logger; metrics?: () => HealthMetrics | undefined }) {}

  begin(): void {
    this.journal = new Map();
  }

  commit(): void {
    this.journal = null;
  }

  /** Undo every slot change since `begin()`; returns the slots touched (to re-evaluate next tick). */
  rollback(): string[] {
    const journal = this.journal;
    this.journal = null;
    if (!journal) return [];
    for (const [slot, entry] of journal) {
      if (entry.active) this.active.set(slot, entry.active);
      else this.active.delete(slot);
      if (entry.reconciled) this.reconciled.add(slot);
      else this.reconciled.delete(slot);
    }
    return [...journal.keys()];
  }

  has(slot: string): boolean {
    return this.active.has(slot);
  }

  isReconciled(slot: string): boolean {
    return this.reconciled.has(slot);
  }

  /** Slots whose active condition is `kind` on `subject`. */
  slotsOf(kind: TicketKind, subject: string): string[] {
    const out: string[] = [];
    for (const [slot, a] of this.active) if (a.kind === kind && a.subject === subject) out.push(slot);
    return out;
  }

  /**
   * The ticket of this slot was resolved by a person while its condition still held (RULES.md "People and
   * machines"): forget what was sent, so the next evaluation raises it again and the service reopens the ticket.
   */
  forget(slot: string): void {
    const a = this.active.get(slot);
    if (!a) return;
    this.touch(slot);
    this.active.set(slot, { ...a, signature: '' });
  }

  /**
   * Raise a condition when it starts or changes, clear it when it stops. Without a record of this slot (our own
   * restart), a clear asks the sink first: a ticket opened before the restart still gets its clear.
   * `merged`: the slot's kinds are one ticket in the sink (gateway_partial/gateway_loss, RULES.md "One ticket
   * per problem"), so a rise in severity is a plain raise (the sink upgrades in place).
   */
  reconcile(slot: string, subject: string, kinds: readonly TicketKind[], report: ConditionReport | null, merged: boolean, reason: string): void {
    const prev = this.active.get(slot);
    const sink = this.deps.sink;
    const m = this.deps.metrics?.();
    if (report) {
      const signature = signatureOf(report);
      if (prev && prev.kind === report.kind && prev.signature === signature) return;
      this.touch(slot);
      const upgrade = prev && prev.kind !== report.kind && moreSevere(report.severity, severityOf(prev.kind));
      if (prev && prev.kind !== report.kind && merged && !upgrade) {
        sink.clear(prev.kind, subject, `changed to ${report.kind}`);
        m?.conditions.inc({ kind: prev.kind, action: 'clear' });
      }
      sink.raise(report);
      m?.conditions.inc({ kind: report.kind, action: 'raise' });
      if (prev && prev.kind !== report.kind && !merged) {
        sink.clear(prev.kind, subject, `superseded by ${report.kind}`);
        m?.conditions.inc({ kind: prev.kind, action: 'clear' });
      }
      this.active.set(slot, { kind: report.kind, subject, signature });
      this.reconciled.add(slot);
      this.deps.log.info({ kind: report.kind, subject, severity: report.severity, covers: report.covers?.length ?? 0 }, 'condition raised');
      return;
    }
    if (prev) {
      this.touch(slot);
      sink.clear(prev.kind, subject, reason);
      m?.conditions.inc({ kind: prev.kind, action: 'clear' });
      this.active.delete(slot);
      this.deps.log.info({ kind: prev.kind, subject, reason }, 'condition cleared');
      return;
    }
    if (!this.reconciled.has(slot)) {
      this.touch(slot);
      this.reconciled.add(slot);
      for (const kind of kinds) {
        if (sink.hasOpen([kind], subject)) {
          sink.clear(kind, subject, reason);
          m?.conditions.inc({ kind, action: 'clear' });
        }
      }
    }
  }

  private touch(slot: string): void {
    if (!this.journal || this.journal.has(slot)) return;
    const a = this.active.get(slot);
    this.journal.set(slot, { active: a && { ...a }, reconciled: this.reconciled.has(slot) });
  }
}

/**
 * What makes a condition "changed" for the sink: its kind, severity and covers, and for device/customer/fleet
 * losses the summary. Security and flapping counts move with every event and are not re-raised for that.
 */
export function signatureOf(r: ConditionReport): string {
  const covers = r.covers ? r.covers.join(',') : '';
  const extra = r.kind === 'security_incident' ? Object.keys(r.details ?? {}).sort().join(',') : r.kind === 'flapping' ? '' : r.summary;
  return `${r.kind}|${r.severity}|${covers}|${extra}`;
}
