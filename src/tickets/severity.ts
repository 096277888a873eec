import { AUTOMATIC_TICKETS, type Severity, type TicketKind } from './types.js';

/**
 * The one severity order (RULES.md "Automatic tickets"): low < medium < high < urgent. Everything that compares
 * severities (the evaluator's upgrade rule, the ticket service's escalation) imports it from here.
 */
export const SEVERITY_RANK: Readonly<Record<Severity, number>> = { low: 0, medium: 1, high: 2, urgent: 3 };

/** The severity an automatic kind opens with (RULES.md table); a person's `manual` ticket has none of its own: low. */
export function severityOf(kind: TicketKind): Severity {
  return kind === 'manual' ? 'low' : AUTOMATIC_TICKETS[kind].severity;
}

/** Is `a` more severe than `b`? */
export function moreSevere(a: Severity, b: Severity): boolean {
  return SEVERITY_RANK[a] > SEVERITY_RANK[b];
}

/** Within the one gateway family, a full loss outranks a partial loss (RULES.md: partial -> full upgrades in place). */
export const KIND_RANK: Readonly<Partial<Record<TicketKind, number>>> = { gateway_partial: 1, gateway_loss: 2 };
