import type { Severity } from '../tickets/types.js';
import { IN_FLIGHT, type DeviceRolloutState } from './rollout-states.js';

/**
 * The health gate (RULES.md "Remote patching", "Health gate"): a device counts as patched only when it has
 * reported `installed` and heartbeats the new softwareVersion within the soak time; one that goes silent
 * after installing counts as failed. The next wave starts only when the current one passed its gate; a wave
 * whose failed share exceeds the abort threshold stops the rollout.
 */
export interface DeviceProgress {
  deviceId: string;
  state: DeviceRolloutState;
  /** Connected to the broker now (a pending device that is offline does not hold the gate). */
  connected: boolean;
  /** When `installed` was first heard (status or heartbeat `patch` field). */
  installedAt: number | null;
  /** The offer, or the latest status heard since: a device in flight must progress within the progress timeout. */
  lastProgressAt: number | null;
}

export interface GateSettings {
  soakMs: number;
  abortThreshold: number;
  progressTimeoutMs: number;
}

export type GateStep = 'wait' | 'advance' | 'abort';

export interface WaveTally {
  /** Devices of the wave that count (all but excluded). */
  size: number;
  pending: number;
  pendingConnected: number;
  inFlight: number;
  done: number;
  failed: number;
  excluded: number;
}

export interface GateResult {
  decision: GateStep;
  tally: WaveTally;
  failedShare: number;
  /** Devices the gate judged failed now (silent after install, no progress); the scheduler persists them. */
  newlyFailed: { deviceId: string; reason: string }[];
}

/**
 * Has an in-flight device failed by silence? Boundaries are inclusive for the device: a heartbeat exactly at
 * installedAt + soak still counts, so the device fails only once `now` is strictly past it.
 */
export function judgeDevice(device: DeviceProgress, now: number, settings: Pick<GateSettings, 'soakMs' | 'progressTimeoutMs'>): string | undefined {
  if (device.state === 'installed' && device.installedAt !== null && now > device.installedAt + settings.soakMs) {
    return `silent after install: no heartbeat with the new version within the soak time (${Math.round(settings.soakMs / 1000)} s)`;
  }
  if ((device.state === 'offered' || device.state === 'downloading' || device.state === 'installing') && device.lastProgressAt !== null) {
    if (now > device.lastProgressAt + settings.progressTimeoutMs) {
      return `no progress for ${Math.round(settings.progressTimeoutMs / 1000)} s while ${device.state}`;
    }
  }
  return undefined;
}

/** Does a heartbeat with the new version at `heartbeatAt` make an installed device done? */
export function heartbeatWithinSoak(installedAt: number | null, heartbeatAt: number, soakMs: number): boolean {
  // A heartbeat before the `installed` status was heard (reordered or lost QoS 1 message) proves it as well.
  return installedAt === null || heartbeatAt <= installedAt + soakMs;
}

/**
 * Decide a wave's step:
 * - abort when failed / size > abortThreshold (size = the wave without excluded devices), as soon as it is
 *   exceeded: there is no point offering the rest of a wave that has already failed;
 * - wait while a device is in flight, or pending and connected (it is about to be offered);
 * - wait while nobody in the wave succeeded and some are still pending offline (a canary of offline devices is
 *   no evidence);
 * - otherwise advance. Pending devices that are offline do not hold the gate: they get their offer when they
 *   come back, while the rollout runs (RULES.md).
 */
export function gateDecision(wave: readonly DeviceProgress[], now: number, settings: GateSettings): GateResult {
  const tally: WaveTally = { size: 0, pending: 0, pendingConnected: 0, inFlight: 0, done: 0, failed: 0, excluded: 0 };
  const newlyFailed: GateResult['newlyFailed'] = [];
  for (const device of wave) {
    const failedBy = judgeDevice(device, now, settings);
    const state: DeviceRolloutState = failedBy ? 'failed' : device.state;
    if (failedBy) newlyFailed.push({ deviceId: device.deviceId, reason: failedBy });
    if (state === 'excluded') {
      tally.excluded++;
      continue;
    }
    tally.size++;
    if (state === 'pending') {
      tally.pending++;
      if (device.connected) tally.pendingConnected++;
    } else if (IN_FLIGHT.has(state)) tally.inFlight++;
    else if (state === 'done') tally.done++;
    else if (state === 'failed') tally.failed++;
  }
  const failedShare = tally.size === 0 ? 0 : tally.failed / tally.size;
  let decision: GateStep;
  if (failedShare > settings.abortThreshold) decision = 'abort';
  else if (tally.inFlight > 0 || tally.pendingConnected > 0) decision = 'wait';
  else if (tally.done === 0 && tally.pending > 0) decision = 'wait';
  else decision = 'advance';
  return { decision, tally, failedShare, newlyFailed };
}

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
