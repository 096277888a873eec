import type { Config } from '../config/schema.js';
import { conditionKey, ticketFamily } from './grouping.js';
import { KIND_RANK, moreSevere } from './severity.js';
import type { ConditionReport, Severity, TicketKind } from './types.js';

/** What `decideRaise` needs to know of a ticket. */
export interface TicketFacts {
  id: number;
  kind: TicketKind;
  family: string;
  subject: string;
  origin: 'auto' | 'person';
  severity: Severity;
  summary: string;
  details: Record<string, unknown>;
  covers: readonly string[];
  conditions: readonly string[];
  clearedAt: number | null;
}

/** The ticket state a raised condition meets. Fields after `existing` are only read when `existing` is null. */
export interface RaiseState {
  /** The unresolved automatic ticket carrying this condition, or of its family on this subject. */
  existing: TicketFacts | null;
  /** The id of a gateway ticket that lists (or, being a loss, takes) this sensor, or null. */
  coveringGateway: number | null;
  /** The newest automatic ticket of this family and subject, when it is resolved. */
  lastResolved: (TicketFacts & { resolvedAt: number; resolvedBy: 'auto' | 'person' | null }) | null;
  /** New automatic tickets this subject opened this UTC day. */
  openedToday: number;
  /** The subject's newest automatic ticket (any family), the fold target. */
  newestAutomatic: number | null;
}

export type RaiseDecision =
  /** Nothing would change: no transaction. */
  | { action: 'none' }
  /** Update the existing ticket (upgrade, new text, new covers); `folded`: it carries the condition as a guest. */
  | { action: 'update'; ticketId: number; folded: boolean }
  /** A sensor behind a gateway ticket: list it there. */
  | { action: 'inhibit'; gatewayTicketId: number }
  | { action: 'reopen'; ticketId: number; cause: 'recurrence' | 'resolved_while_holding' }
  | { action: 'fold'; ticketId: number }
  | { action: 'open' };

export type RaiseSettings = Pick<Config['tickets'], 'reopenWindowS' | 'maxTicketsPerDay'>;

/**
 * RULES.md "Automatic tickets", one raised condition against the tickets it meets:
 * - one ticket per problem: a condition already on a ticket updates it (or nothing when unchanged);
 * - grouping: a sensor behind a gateway ticket is listed there;
 * - people and machines: a ticket a person resolved while its condition held reopens (however long ago);
 * - auto-resolve: a recurrence within `reopenWindowS` reopens the same ticket (boundary inclusive);
 * - fair use: beyond `maxTicketsPerDay` new automatic tickets a UTC day, fold into the newest automatic ticket.
 * Only automatic tickets are ever found here: a person's ticket is never escalated, folded into or reopened.
 */
export function decideRaise(state: RaiseState, condition: ConditionReport, now: number, settings: RaiseSettings): RaiseDecision {
  const { existing } = state;
  if (existing) {
    if (existing.origin !== 'auto') return { action: 'open' };
    const folded = existing.family !== ticketFamily(condition.kind) || existing.subject !== condition.subject;
    return isUnchanged(existing, condition, folded) ? { action: 'none' } : { action: 'update', ticketId: existing.id, folded };
  }
  if (condition.kind === 'sensor_issue' && state.coveringGateway !== null) return { action: 'inhibit', gatewayTicketId: state.coveringGateway };
  const last = state.lastResolved;
  if (last && last.origin === 'auto') {
    const held = last.resolvedBy === 'person' && last.conditions.includes(conditionKey(condition.kind, condition.subject));
    if (held) return { action: 'reopen', ticketId: last.id, cause: 'resolved_while_holding' };
    if (now - last.resolvedAt <= settings.reopenWindowS * 1000) return { action: 'reopen', ticketId: last.id, cause: 'recurrence' };
  }
  if (state.openedToday >= settings.maxTicketsPerDay && state.newestAutomatic !== null) return { action: 'fold', ticketId: state.newestAutomatic };
  return { action: 'open' };
}

/** Would raising `r` change nothing on `t`? (The evaluator re-raises holding conditions; they must cost nothing.) */
export function isUnchanged(t: TicketFacts, r: ConditionReport, folded: boolean): boolean {
  if (!t.conditions.includes(conditionKey(r.kind, r.subject)) || t.clearedAt !== null) return false;
  if (folded) return true;
  if (moreSevere(r.severity, t.severity)) return false;
  if ((KIND_RANK[r.kind] ?? 0) > (KIND_RANK[t.kind] ?? 0)) return false;
  if (r.summary !== t.summary) return false;
  if (r.details && JSON.stringify(r.details) !== JSON.stringify(t.details)) return false;
  if (!r.covers || r.covers.length === 0) return true;
  // Sets, not includes(): a fleet-wide ticket may list tens of thousands of gateways.
  const listed = new Set(t.covers);
  return r.covers.every((c) => listed.has(c));
}
