import { createHash } from 'node:crypto';

/**
 * Offers are spread with jitter across the window (RULES.md "Gentle on the network"). The offset is a hash of
 * (rollout, device), not a random number: it is the same after a restart, so a resumed rollout neither
 * bunches its offers nor needs to store the offsets.
 */
export function hash32(text: string): number {
  return createHash('sha256').update(text).digest().readUInt32BE(0);
}

/** A deterministic offset in [0, spreadMs) (0 when spreadMs <= 0). */
export function jitterOffset(deviceId: string, rolloutId: string, spreadMs: number): number {
  if (!(spreadMs > 0)) return 0;
  const spread = Math.floor(spreadMs);
  if (spread <= 1) return 0;
  // 32 bits of hash scaled down; the modulo bias of a 2^32 range over a spread below days of ms is negligible.
  return hash32(`${rolloutId}\u0000${deviceId}`) % spread;
}
