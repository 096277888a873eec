import type { Config } from '../config/schema.js';

export type HealthSettings = Config['health'];

/** What the liveness decision needs to know of one device. All times are daemon receive times (ms). */
export interface LivenessInput {
  /**
   * Latest sign of life: for a sensor the max of its own heartbeat and the latest gateway heartbeat listing it
   * (PROTOCOL.md "Either source counts as a sign of life"). Null when never heard from.
   */
  lastSeen: number | null;
  /** Expected heartbeat interval: the device's own announced `intervalS`, else (sensors) its gateway's. */
  intervalS: number | null;
  /** When a `{"online":false}` (Last Will or clean offline) arrived and nothing has been heard since; else null. */
  willAt: number | null;
  /**
   * When this evaluator started watching the device (daemon start, or registration). Silence is measured from
   * max(lastSeen, watchFrom): after a restart every device gets a fresh interval (issue 3, item 1: no ticket storm).
   */
  watchFrom: number;
}

export type LivenessVerdict =
  /** Never heard from: nothing to judge (a device provisioned but not yet installed opens nothing). */
  | { state: 'unknown' }
  /** Alive; judged lost at `deadline` if nothing is heard before. */
  | { state: 'alive'; deadline: number }
  /** Its Last Will arrived; lost at `deadline` (will + grace) unless it comes back. */
  | { state: 'offline'; deadline: number }
  | { state: 'lost'; reason: 'silence' | 'will'; since: number };

/** When a device's silence becomes a loss: missedHeartbeats x intervalS after max(lastSeen, watchFrom). */
export function silenceDeadline(input: LivenessInput, settings: Pick<HealthSettings, 'missedHeartbeats'>): number | null {
  if (input.lastSeen === null || input.intervalS === null || !(input.intervalS > 0)) return null;
  return Math.max(input.lastSeen, input.watchFrom) + settings.missedHeartbeats * input.intervalS * 1000;
}

/** When a Last Will becomes a loss, or null when there is no will pending (a sign of life after it cancels it). */
export function willDeadline(input: LivenessInput, settings: Pick<HealthSettings, 'lastWillGraceS'>): number | null {
  if (input.willAt === null) return null;
  if (input.lastSeen !== null && input.lastSeen > input.willAt) return null;
  return input.willAt + settings.lastWillGraceS * 1000;
}

/**
 * PROTOCOL.md "Heartbeat": a device is lost after `missedHeartbeats` intervals of silence, or after its Last Will
 * plus `lastWillGraceS` if it has not come back. Lost exactly at the deadline, not 1 ms before.
 */
export function livenessVerdict(input: LivenessInput, now: number, settings: HealthSettings): LivenessVerdict {
  const silence = silenceDeadline(input, settings);
  const will = willDeadline(input, settings);
  if (will !== null && (silence === null || will <= silence)) {
    return now >= will ? { state: 'lost', reason: 'will', since: will } : { state: 'offline', deadline: will };
  }
  if (silence === null) return { state: 'unknown' };
  if (now >= silence) return { state: 'lost', reason: 'silence', since: silence };
  return will !== null ? { state: 'offline', deadline: silence } : { state: 'alive', deadline: silence };
}
