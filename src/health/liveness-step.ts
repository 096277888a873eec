import type { LiveState } from './device-conditions.js';
import { livenessVerdict, type HealthSettings, type LivenessInput } from './liveness.js';

/** Everything one liveness judgement of one device depends on. Times are monotonic ms (see `Clock.monotonicNow`). */
export interface LivenessStepInput {
  liveness: LivenessInput;
  /** Its state as the evaluator holds it now. */
  state: LiveState;
  /**
   * When its install grace ends (installing, or restarting after the install's final status; from the one
   * record, src/patches/install-grace.ts), or null. A value not after `now` means the grace is over.
   */
  installGraceUntil: number | null;
  /** Heard from (itself, or a gateway listing it) since the daemon started. */
  heardSinceStart: boolean;
  /** When the start-up grace ends (RULES.md "Our own outages are not the fleet's"), or null when it is over. */
  startupGraceUntil: number | null;
}

export type LivenessStep =
  /** Never heard from: nothing to judge. */
  | { action: 'none' }
  /** Not due yet: judge again at `at`. */
  | { action: 'wait'; at: number }
  /** Already lost: nothing new. */
  | { action: 'stay' }
  /** Silent while installing or restarting after an install: no loss, judge again at `at`. */
  | { action: 'restarting'; at: number }
  /** Silent since the daemon started, start-up grace still running: not judged yet, again at `at`. */
  | { action: 'hold'; at: number }
  | { action: 'lost'; reason: 'silence' | 'will' };

/**
 * The liveness step (PROTOCOL.md "Heartbeat", RULES.md "Updates and alerting work together" and "Our own outages
 * are not the fleet's"): lost after `missedHeartbeats` intervals of silence or a Last Will plus its grace, except
 * while it installs, and except a device that has not had its chance to reconnect since the daemon started.
 */
export function livenessStep(input: LivenessStepInput, now: number, settings: HealthSettings): LivenessStep {
  const verdict = livenessVerdict(input.liveness, now, settings);
  if (verdict.state === 'unknown') return { action: 'none' };
  if (verdict.state !== 'lost') return { action: 'wait', at: verdict.deadline };
  if (input.state === 'lost') return { action: 'stay' };
  // Strictly after now: a grace ending now is over (and a judgement scheduled at `now` would never advance).
  if (input.installGraceUntil !== null && input.installGraceUntil > now) return { action: 'restarting', at: input.installGraceUntil };
  // A Last Will is the device's own word that it went away; silence since our start may be our doing.
  if (verdict.reason === 'silence' && !input.heardSinceStart && input.startupGraceUntil !== null && now < input.startupGraceUntil) {
    return { action: 'hold', at: input.startupGraceUntil };
  }
  return { action: 'lost', reason: verdict.reason };
}
