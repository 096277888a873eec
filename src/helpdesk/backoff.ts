/**
 * Delay before the next delivery attempt after `attempts` failed ones: exponential from `baseMs`, capped at `maxMs`,
 * with "equal jitter" (half fixed, half random) so a helpdesk coming back is not hit by every row at once.
 */
export function backoffDelay(attempts: number, settings: { backoffBaseMs: number; backoffMaxMs: number }, random: () => number = Math.random): number {
  const exp = settings.backoffBaseMs * 2 ** Math.max(0, attempts - 1);
  const capped = Math.min(settings.backoffMaxMs, exp);
  return Math.round(capped / 2 + (capped / 2) * random());
}
