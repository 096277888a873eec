import type { Config } from '../config/schema.js';
import type { Tier } from '../protocol/names.js';
import type { Classification, Severity } from './types.js';

export type Band = 'paid' | 'discretionary';
export type QueueWeights = Pick<
  Config['tickets'],
  'severityWeight' | 'tierWeight' | 'classWeight' | 'agingPerHour' | 'agingCap'
>;

/** What the queue order looks at; eligibility and tier are the ones stored on the ticket (at open / last update). */
export interface QueueTicket {
  id: number;
  severity: Severity;
  classification: Classification;
  tier: Tier;
  eligible: boolean;
  /** When the wait started (open, or the latest reopen), ms. */
  waitingSince: number;
}

export interface Priority {
  band: Band;
  score: number;
}

const HOUR_MS = 3_600_000;

/**
 * RULES.md "Support queue order". Band: eligible paid devices first. The tier and eligibility are those stored on
 * the ticket, judged at open and refreshed at each update, never re-judged against `now` here: a subscription
 * expiring while a ticket waits must not drop it to discretionary, because "a ticket's priority never falls while
 * it waits" (RULES.md, queue properties). Expired subscriptions are already tier `none` and ineligible when stored.
 */
export function band(ticket: Pick<QueueTicket, 'tier' | 'eligible'>): Band {
  return ticket.eligible && (ticket.tier === 'xcare' || ticket.tier === 'xcare_pro') ? 'paid' : 'discretionary';
}

export function priority(ticket: QueueTicket, now: number, weights: QueueWeights): Priority {
  const hoursWaiting = Math.max(0, now - ticket.waitingSince) / HOUR_MS;
  const aging = Math.min(weights.agingPerHour * hoursWaiting, weights.agingCap);
  const score =
    weights.severityWeight[ticket.severity] * weights.tierWeight[ticket.tier] + weights.classWeight[ticket.classification] + aging;
  return { band: band(ticket), score };
}

/** Queue order: paid band first, then score (highest first), then oldest first, then lowest id. */
export function compareQueue(a: QueueTicket, b: QueueTicket, now: number, weights: QueueWeights): number {
  return comparePrioritized(a, priority(a, now, weights), b, priority(b, now, weights));
}

/** compareQueue with priorities already computed (sorting a large queue computes each once). */
export function comparePrioritized(a: QueueTicket, pa: Priority, b: QueueTicket, pb: Priority): number {
  if (pa.band !== pb.band) return pa.band === 'paid' ? -1 : 1;
  if (pa.score !== pb.score) return pb.score - pa.score;
  if (a.waitingSince !== b.waitingSince) return a.waitingSince - b.waitingSince;
  return a.id - b.id;
}
