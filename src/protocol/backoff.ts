/** How the random part of a backoff is drawn (see `backoffDelay`). */
export type Jitter = 'full' | 'equal';

/** A backoff's shape: the first ceiling, the cap (ms), and the jitter. */
export interface BackoffSettings {
  baseMs: number;
  maxMs: number;
  jitter: Jitter;
}

/**
 * The one exponential backoff with jitter (STYLE.md "One backoff"): the agent's reconnects (full jitter,
 * issue 2 item 6), the helpdesk webhook's retries and the rollout scheduler's offer retries (equal jitter).
 * Dependency-free: the agent imports it (agent/ may import src/protocol/).
 *
 * `failures`: failed attempts before this wait, from 0 (negative counts as 0). The ceiling is
 * `min(maxMs, baseMs * 2^failures)` (2^failures capped first, so a huge count stays finite).
 * - `full`: `floor(r * ceiling)`, anywhere in [0, ceiling): a fleet that lost the broker at one instant
 *   comes back spread over the window, not in synchronized waves;
 * - `equal`: `round(ceiling/2 + r * ceiling/2)`: never less than half, so retries keep their pace while a
 *   helpdesk that comes back is not hit by every row at once.
 * `random` returns [0, 1); a broken source is clamped to [0, 1]. Returns integer milliseconds.
 */
export function backoffDelay(failures: number, settings: BackoffSettings, random: () => number = Math.random): number {
  const n = Math.max(0, Math.floor(failures));
  const ceiling = Math.min(settings.maxMs, settings.baseMs * 2 ** Math.min(n, 52));
  const r = Math.min(Math.max(random(), 0), 1);
  return settings.jitter === 'full' ? Math.floor(r * ceiling) : Math.round(ceiling / 2 + (ceiling / 2) * r);
}
