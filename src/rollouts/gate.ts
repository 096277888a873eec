import type { Severity } from '../tickets/types.js';

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
