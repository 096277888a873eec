import { AUTOMATIC_TICKETS, type ConditionReport } from '../tickets/types.js';
import type { HealthSettings } from './liveness.js';

export interface FlappingVerdict {
  flapping: boolean;
  /** offline/online changes within the window ending now. */
  changes: number;
  /** When the verdict can next change with no new change (the oldest counted change leaves the window), or null. */
  recheckAt: number | null;
}

/**
 * RULES.md `flapping`: `flapping.changes` or more offline/online changes within `flapping.windowS`.
 * A change counts while `now - at < windowS` (the window is (now - windowS, now]). `changes` is sorted ascending.
 */
export function flappingVerdict(changes: readonly number[], now: number, settings: Pick<HealthSettings, 'flapping'>): FlappingVerdict {
  const windowMs = settings.flapping.windowS * 1000;
  let first = 0;
  while (first < changes.length && now - changes[first]! >= windowMs) first++;
  const count = changes.length - first;
  return { flapping: count >= settings.flapping.changes, changes: count, recheckAt: count > 0 ? changes[first]! + windowMs : null };
}

export function flappingCondition(deviceId: string, verdict: FlappingVerdict, settings: Pick<HealthSettings, 'flapping'>): ConditionReport | null {
  if (!verdict.flapping) return null;
  return {
    kind: 'flapping',
    subject: deviceId,
    ...AUTOMATIC_TICKETS.flapping,
    summary: `device ${deviceId} flapping: ${verdict.changes} offline/online changes in ${settings.flapping.windowS} s`,
    details: { changes: verdict.changes, windowS: settings.flapping.windowS },
  };
}
