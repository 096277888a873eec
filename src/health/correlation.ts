import { AUTOMATIC_TICKETS, type ConditionReport } from '../tickets/types.js';
import type { HealthSettings } from './liveness.js';

/** A gateway the evaluator currently judges lost. */
export interface LostGateway {
  id: string;
  customer: string;
  /** When it was judged lost (daemon time, ms). */
  lostSince: number;
}

export interface LossInput {
  /** Every gateway currently lost (a loss that ended is not listed). */
  lost: readonly LostGateway[];
  /** Non-revoked gateways in the whole fleet. */
  fleetGateways: number;
  /** Non-revoked gateways per customer, for the customers to classify. */
  customerGateways: ReadonlyMap<string, number>;
}

/** `count` of `total` reaches `share` (shares compared as counts, so 3 of 10 at 0.3 holds despite float error). */
export function reachesShare(count: number, total: number, share: number): boolean {
  return total > 0 && count >= Math.ceil(share * total - 1e-9);
}

/**
 * The earliest group of losses that lie within one correlation window (a span of `windowMs`) and satisfy
 * `qualifies(count)`. Returns the start of that group, or null. "Lost within the correlation window"
 * (RULES.md) reads as: lost close together in time, so a gateway broken for a week and one lost now are not
 * one outage. Once it holds, the condition persists while the gateways stay lost: it is a function of the
 * set of lost gateways, not of the clock, so an outage does not "clear" because time passes.
 */
export function firstCorrelatedGroup(lostSince: readonly number[], windowMs: number, qualifies: (count: number) => boolean): number | null {
  const times = [...lostSince].sort((a, b) => a - b);
  let left = 0;
  for (let right = 0; right < times.length; right++) {
    while (times[right]! - times[left]! > windowMs) left++;
    if (qualifies(right - left + 1)) return times[left]!;
  }
  return null;
}

function coveredSince(lost: readonly LostGateway[], start: number): string[] {
  return lost
    .filter((g) => g.lostSince >= start)
    .map((g) => g.id)
    .sort();
}

/** RULES.md `major_outage`: >= fleetGatewayShare of all gateways and >= minCorrelated lost within the window. */
export function fleetCondition(lost: readonly LostGateway[], fleetGateways: number, settings: HealthSettings): ConditionReport | null {
  const windowMs = settings.correlationWindowS * 1000;
  const quick = Math.max(settings.minCorrelated, Math.ceil(settings.fleetGatewayShare * fleetGateways - 1e-9));
  // Most ticks have a handful of lost gateways: no sort unless the threshold is reachable at all.
  if (lost.length < quick) return null;
  const start = firstCorrelatedGroup(
    lost.map((g) => g.lostSince),
    windowMs,
    (n) => n >= settings.minCorrelated && reachesShare(n, fleetGateways, settings.fleetGatewayShare),
  );
  if (start === null) return null;
  const covers = coveredSince(lost, start);
  return {
    kind: 'major_outage',
    subject: 'fleet',
    ...AUTOMATIC_TICKETS.major_outage,
    summary: `${covers.length} of ${fleetGateways} gateways lost`,
    details: { lostGateways: covers.length, fleetGateways, since: new Date(start).toISOString() },
    covers,
  };
}

/**
 * RULES.md `cloud_loss_complete` (every gateway of a customer with >= 2 gateways, lost within the window: high)
 * and `cloud_loss_partial` (>= customerGatewayShare and >= minCorrelated of them: medium). Complete wins.
 */
export function customerCondition(
  customer: string,
  lost: readonly LostGateway[],
  customerGateways: number,
  settings: HealthSettings,
): ConditionReport | null {
  if (lost.length === 0 || customerGateways === 0) return null;
  const windowMs = settings.correlationWindowS * 1000;
  const subject = `customer:${customer}`;
  const times = lost.map((g) => g.lostSince);
  if (customerGateways >= 2 && lost.length >= customerGateways) {
    const span = Math.max(...times) - Math.min(...times);
    if (span <= windowMs) {
      return {
        kind: 'cloud_loss_complete',
        subject,
        ...AUTOMATIC_TICKETS.cloud_loss_complete,
        summary: `all ${customerGateways} gateways of customer ${customer} lost`,
        details: { customer, lostGateways: lost.length, customerGateways },
        covers: lost.map((g) => g.id).sort(),
      };
    }
  }
  const start = firstCorrelatedGroup(
    times,
    windowMs,
    (n) => n >= settings.minCorrelated && reachesShare(n, customerGateways, settings.customerGatewayShare),
  );
  if (start === null) return null;
  const covers = coveredSince(lost, start);
  return {
    kind: 'cloud_loss_partial',
    subject,
    ...AUTOMATIC_TICKETS.cloud_loss_partial,
    summary: `${covers.length} of ${customerGateways} gateways of customer ${customer} lost`,
    details: { customer, lostGateways: covers.length, customerGateways },
    covers,
  };
}

/** Fleet- and customer-level conditions that hold for a set of lost gateways. */
export function classifyLosses(input: LossInput, settings: HealthSettings): ConditionReport[] {
  const out: ConditionReport[] = [];
  const fleet = fleetCondition(input.lost, input.fleetGateways, settings);
  if (fleet) out.push(fleet);
  const byCustomer = new Map<string, LostGateway[]>();
  for (const g of input.lost) {
    if (!input.customerGateways.has(g.customer)) continue;
    let list = byCustomer.get(g.customer);
    if (!list) byCustomer.set(g.customer, (list = []));
    list.push(g);
  }
  for (const [customer, list] of byCustomer) {
    const c = customerCondition(customer, list, input.customerGateways.get(customer)!, settings);
    if (c) out.push(c);
  }
  return out;
}
