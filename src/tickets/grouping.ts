import type { TicketKind } from './types.js';

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
export function childLevelOf(level: number): number {
  return level >= 2 ? 1 : 0;
}

/** The key of one condition on one subject, as stored in a ticket's `conditions`. */
export const conditionKey = (kind: TicketKind, subject: string): string => `${kind}|${subject}`;

/** The key of a ticket family on one subject (dedupe of automatic tickets). */
export const familyKey = (kind: TicketKind, subject: string): string => `${ticketFamily(kind)}|${subject}`;

/** Matches the condition keys of one slot: this subject and any kind of this kind's dedupe family. */
export function slotMatcher(kind: TicketKind, subject: string): (key: string) => boolean {
  const family = ticketFamily(kind);
  return (key) => {
    const bar = key.indexOf('|');
    return key.slice(bar + 1) === subject && ticketFamily(key.slice(0, bar) as TicketKind) === family;
  };
}

/** The UTC day a ticket counts against for fair use (RULES.md "Fair use": per day). */
export const utcDay = (ms: number): string => new Date(ms).toISOString().slice(0, 10);
