import type { Tier } from '../protocol/names.js';
import type { DeviceDirectory } from '../registry/types.js';
import { band, type Band } from './priority.js';

export interface SubjectEligibility {
  eligible: boolean;
  reasons: string[];
  /** Effective tier (an expired subscription is `none`). */
  tier: Tier;
}

/** What a ticket stores of eligibility (RULES.md "Eligibility": every ticket records why). */
export interface StoredEligibility {
  eligible: boolean;
  ineligibleReasons: string[];
  tier: Tier;
  band: Band;
}

const TIER_RANK: Readonly<Record<Tier, number>> = { none: 0, xcare: 1, xcare_pro: 2 };

/**
 * RULES.md "Support queue order": the band and tier of an open ticket only ever rise. Judged afresh when a ticket
 * opens or reopens; on an update the fresh judgement can raise them, never lower them, and its reasons are
 * recorded (a subscription expiring while the ticket waits shows in the reasons, not in the rank).
 */
export function nextEligibility(stored: StoredEligibility | null, fresh: SubjectEligibility): StoredEligibility {
  const judged: StoredEligibility = { eligible: fresh.eligible, ineligibleReasons: fresh.reasons, tier: fresh.tier, band: band(fresh) };
  if (!stored) return judged;
  const tier = TIER_RANK[fresh.tier] > TIER_RANK[stored.tier] ? fresh.tier : stored.tier;
  const eligible = stored.eligible || fresh.eligible;
  const result = { eligible, ineligibleReasons: fresh.reasons, tier, band: band({ eligible, tier }) };
  // The band follows eligible and tier; should the stored pair ever have been paid by another path, keep paid.
  if (stored.band === 'paid') result.band = 'paid';
  return result;
}

/**
 * Eligibility, reasons and tier of a subject. A device is judged itself; a customer ticket by the devices it
 * covers (eligible when one of them is, at the best tier among those). A fleet-wide subject (`fleet`,
 * `rollout:<id>`: a major outage, a security incident across devices, an aborted rollout) is the operator's own
 * incident, not one device's support claim: it ranks as paid at the xcare weight, whatever the devices it lists.
 */
export function subjectEligibility(
  subject: string,
  covers: readonly string[],
  directory: Pick<DeviceDirectory, 'get' | 'gatewaysOf'>,
  eligibilityOf: (deviceId: string) => SubjectEligibility | undefined,
): SubjectEligibility {
  if (directory.get(subject)) {
    return eligibilityOf(subject) ?? { eligible: false, reasons: [`device ${subject} is not registered`], tier: 'none' };
  }
  if (!subject.startsWith('customer:')) return { eligible: true, reasons: [], tier: 'xcare' };
  let devices: string[] = [...covers];
  if (devices.length === 0) devices = directory.gatewaysOf(subject.slice('customer:'.length)).map((d) => d.id);
  if (devices.length === 0) return { eligible: false, reasons: [`${subject} has no registered gateway`], tier: 'none' };
  let best: Tier = 'none';
  let eligible = false;
  const reasons: string[] = [];
  for (const id of devices) {
    const e = eligibilityOf(id);
    if (!e) {
      reasons.push(`${id}: not registered`);
      continue;
    }
    if (e.eligible) {
      if (!eligible || TIER_RANK[e.tier] > TIER_RANK[best]) best = e.tier;
      eligible = true;
    } else {
      if (!eligible && TIER_RANK[e.tier] > TIER_RANK[best]) best = e.tier;
      for (const r of e.reasons) reasons.push(`${id}: ${r}`);
    }
  }
  if (eligible) return { eligible: true, reasons: [], tier: best };
  return { eligible: false, reasons: reasons.slice(0, 20), tier: best };
}
