import { conditionKey, familyKey, groupLevel } from './grouping.js';
import type { Ticket } from './ticket-model.js';
import type { TicketKind } from './types.js';

/**
 * The unresolved tickets in memory, indexed so that the evaluator's raise/clear/hasOpen on every tick cost no
 * query: by condition key, by family (automatic tickets only: a person's ticket is never found by a machine
 * condition, RULES.md "People and machines"), by covered subject (grouping), and those waiting to auto-resolve.
 * SQLite is the truth; the service moves this only after a commit.
 */
export class TicketIndex {
  readonly open = new Map<number, Ticket>();
  private readonly byFamily = new Map<string, number>();
  private readonly byCondition = new Map<string, number>();
  /** subject -> unresolved grouping tickets (level >= 1) listing it in `covers`. */
  private readonly coveredBy = new Map<string, Set<number>>();
  /** Tickets whose conditions all cleared: auto-resolve pending. */
  readonly clearing = new Set<number>();

  clear(): void {
    this.open.clear();
    this.byFamily.clear();
    this.byCondition.clear();
    this.coveredBy.clear();
    this.clearing.clear();
  }

  /** The unresolved automatic ticket carrying this condition, or of its family on this subject. */
  forCondition(kind: TicketKind, subject: string): number | undefined {
    return this.byCondition.get(conditionKey(kind, subject)) ?? this.byFamily.get(familyKey(kind, subject));
  }

  /** The unresolved automatic ticket of a family key (`gateway|gw-1`, `sensor_issue|s-1`). */
  byFamilyKey(key: string): number | undefined {
    return this.byFamily.get(key);
  }

  /** Unresolved grouping tickets listing `subject`. */
  coveringTickets(subject: string): ReadonlySet<number> | undefined {
    return this.coveredBy.get(subject);
  }

  /** Replace the indexed version of `t` (a resolved ticket leaves the index). */
  reindex(t: Ticket): void {
    const previous = this.open.get(t.id);
    if (previous) this.unindex(previous);
    this.add(t);
  }

  add(t: Ticket): void {
    if (t.status === 'resolved') return;
    this.open.set(t.id, t);
    if (t.origin === 'auto') this.byFamily.set(familyKey(t.kind, t.subject), t.id);
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
}
