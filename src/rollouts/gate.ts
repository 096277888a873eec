import type { ConditionReport, Severity } from '../tickets/types.js';
import type { RolloutDeviceRow, RolloutRow } from './rollout-store.js';

/** The wave gate itself is in next-step.ts (pure decisions); this file keeps the ticket's blast radius. */
/**
 * Severity of the `rollout_aborted` ticket by blast radius (RULES.md: "A rollout that aborts opens a ticket
 * (problem, severity by blast radius)"), from the failed devices of the whole rollout:
 * | failed devices                                 | severity |
 * |------------------------------------------------|----------|
 * | >= 100, or >= 25 % of the targeted and >= 10   | urgent   |
 * | >= 20, or >= 10 % of the targeted and >= 5     | high     |
 * | >= 3                                           | medium   |
 * | fewer (a canary caught it)                     | low      |
 */
export function abortSeverity(failed: number, targeted: number): Severity {
  const share = targeted > 0 ? failed / targeted : 0;
  if (failed >= 100 || (share >= 0.25 && failed >= 10)) return 'urgent';
  if (failed >= 20 || (share >= 0.1 && failed >= 5)) return 'high';
  if (failed >= 3) return 'medium';
  return 'low';
}

/** The `rollout_aborted` ticket of an aborted or failed rollout: blast radius, wave, the failed devices and why. */
export function abortTicket(row: RolloutRow, devices: readonly RolloutDeviceRow[], reason: string): ConditionReport {
  const failed = devices.filter((d) => d.state === 'failed');
  const targeted = devices.filter((d) => d.state !== 'excluded').length;
  return {
    kind: 'rollout_aborted',
    subject: `rollout:${row.id}`,
    classification: 'problem',
    severity: abortSeverity(failed.length, targeted),
    summary: `Rollout ${row.id} of ${row.patchId} ${row.state === 'failed' ? 'failed' : 'aborted'}: ${reason}`,
    details: {
      rolloutId: row.id,
      patchId: row.patchId,
      wave: row.currentWave + 1,
      failed: failed.length,
      targeted,
      failedDevices: failed.slice(0, 100).map((d) => ({ deviceId: d.deviceId, detail: d.detail })),
    },
  };
}
