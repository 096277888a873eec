/** Ticket vocabulary of RULES.md "Automatic tickets" and the support queue. */
export const SEVERITIES = ['urgent', 'high', 'medium', 'low'] as const;
export type Severity = (typeof SEVERITIES)[number];

export const CLASSIFICATIONS = ['problem', 'consultative'] as const;
export type Classification = (typeof CLASSIFICATIONS)[number];

export const TICKET_KINDS = [
  'security_incident',
  'major_outage',
  'cloud_loss_complete',
  'cloud_loss_partial',
  'gateway_loss',
  'gateway_partial',
  'sensor_issue',
  'flapping',
  'rollout_aborted',
  'manual',
] as const;
export type TicketKind = (typeof TICKET_KINDS)[number];

export type TicketStatus = 'open' | 'acknowledged' | 'resolved';

/**
 * What the health evaluator (or the scheduler) reports: a condition that holds now on a subject.
 * The ticket service turns it into open/update/upgrade/reopen/fold; the reporter never touches tickets.
 */
export interface ConditionReport {
  kind: TicketKind;
  /** A device id, `customer:<name>`, `fleet`, or `rollout:<id>`. */
  subject: string;
  severity: Severity;
  classification: Classification;
  summary: string;
  details?: Record<string, unknown>;
  /** Subjects grouped under this ticket: sensors on a gateway ticket, gateways on a customer/fleet ticket. */
  covers?: string[];
}

/** The ticket service as the evaluator and scheduler see it. */
export interface ConditionSink {
  /** The condition holds now: open, update, upgrade, reopen or fold its ticket. */
  raise(report: ConditionReport): void;
  /** The condition no longer holds; the ticket resolves after `resolveAfter` of staying clear. */
  clear(kind: TicketKind, subject: string, reason: string): void;
  /** Is there an open (or acknowledged) ticket of one of these kinds on this subject? */
  hasOpen(kinds: readonly TicketKind[], subject: string): boolean;
  /**
   * Run `work` (raises, clears and the caller's own writes) as one transaction: all of it commits or none of it
   * does, and the sink's in-memory view follows what was committed (issue 8, fault 3: a tick is all or nothing).
   * Throws what `work` or the commit threw.
   */
  atomically?<T>(work: () => T): T;
  /**
   * Tell `listener` when a person resolved a ticket whose condition still held (RULES.md "People and machines"):
   * the reporter raises that condition again at its next evaluation, which reopens the ticket. Returns unsubscribe.
   */
  onResolvedWhileHolding?(listener: (kind: TicketKind, subject: string) => void): () => void;
}

/**
 * RULES.md "Automatic tickets": the classification and severity each automatic kind opens with. Reporters take
 * them from here; `rollout_aborted` is a problem whose severity follows the blast radius (the default is medium).
 */
export const AUTOMATIC_TICKETS: Readonly<Record<Exclude<TicketKind, 'manual'>, { classification: Classification; severity: Severity }>> = {
  security_incident: { classification: 'problem', severity: 'urgent' },
  major_outage: { classification: 'problem', severity: 'urgent' },
  cloud_loss_complete: { classification: 'problem', severity: 'high' },
  cloud_loss_partial: { classification: 'problem', severity: 'medium' },
  gateway_loss: { classification: 'problem', severity: 'medium' },
  gateway_partial: { classification: 'problem', severity: 'low' },
  sensor_issue: { classification: 'problem', severity: 'low' },
  flapping: { classification: 'problem', severity: 'low' },
  rollout_aborted: { classification: 'problem', severity: 'medium' },
};
