/**
 * Reconnect delay: exponential backoff with FULL jitter (issue 2 item 6), i.e.
 * `random(0, min(maxMs, minMs * 2^attempt))`. Full jitter spreads a whole fleet that lost the broker
 * at the same instant over the window instead of sending it back in synchronized waves.
 * `attempt` counts failed attempts since the last successful connect, from 0.
 */
export function backoffDelay(attempt: number, minMs: number, maxMs: number, random: () => number = Math.random): number {
  const safeAttempt = Math.max(0, Math.floor(attempt));
  // 2^attempt overflows to Infinity for large attempts; min() caps it first.
  const ceiling = Math.min(maxMs, minMs * 2 ** Math.min(safeAttempt, 52));
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.floor(r * ceiling);
}
