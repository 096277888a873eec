import { backoffDelay } from '../protocol/backoff.js';
import type { PatchState } from '../protocol/names.js';
import { PATCH_STATE_RANK } from '../protocol/names.js';
import { hash32 } from './jitter.js';
import { IN_FLIGHT, canTransitionDevice, deviceStateForPatchState } from './rollout-states.js';
import type { RolloutDeviceRow } from './rollout-store.js';

/**
 * The rollout's pure decisions (STYLE.md "Pure decisions, thin shells"), table-tested in
 * test/unit/rollout-next-step.test.ts; the scheduler (rollout-scheduler.ts) only does the I/O around them.
 * RULES.md "Remote patching": "Health gate", "Soak is bake time", "Retries".
 */

/** Per-device settings from the rollout spec and its wave. */
export interface DeviceRules {
  /** Bake time of the device's wave. */
  soakMs: number;
  /** Time allowed to report the new version after the final `installed` (RULES.md "within the time allowed to report"). */
  reportTimeoutMs: number;
  /** An offered/downloading/installing device that reports nothing for this long has failed. */
  progressTimeoutMs: number;
  /** Offers after the first one for transient failures (`--retries N`). */
  retries: number;
  /** Base of the retry backoff (doubles per try, capped at 16 x base). */
  retryBackoffMs: number;
}

/** What the scheduler knows of a device's liveness, for the soak. */
export interface Liveness {
  /** Latest heartbeat received, or null if none since the daemon started. */
  lastHeartbeatAt: number | null;
  /** How long a heartbeat may be missing before the device counts as silent (missed x interval). */
  silenceMs: number;
  /** An open loss ticket (gateway_loss) for the device. */
  lossTicket: boolean;
}

/** A failure: why, and whether it is transient (may be retried). */
export interface Failure {
  reason: string;
  retryable: boolean;
}

/**
 * Has an in-flight device failed by time? No progress within the progress timeout (an offer never acted on
 * and a stalled download are transient: a retry may help; a stalled install is not), or `installed` but no
 * heartbeat on the new version within the time allowed to report.
 */
export function judgeInFlight(d: RolloutDeviceRow, now: number, rules: DeviceRules): Failure | undefined {
  if (d.state === 'installed') {
    if (d.installedAt !== null && now > d.installedAt + rules.reportTimeoutMs) {
      return { reason: `did not report the new version within ${Math.round(rules.reportTimeoutMs / 1000)} s of installing`, retryable: false };
    }
    return undefined;
  }
  if (d.state !== 'offered' && d.state !== 'downloading' && d.state !== 'installing') return undefined;
  const since = d.progressAt ?? d.offeredAt;
  if (since === null || now <= since + rules.progressTimeoutMs) return undefined;
  const secs = Math.round(rules.progressTimeoutMs / 1000);
  if (d.state === 'offered') return { reason: `offer not acted on within ${secs} s`, retryable: true };
  if (d.state === 'downloading') return { reason: `no download progress for ${secs} s`, retryable: true };
  return { reason: `no progress for ${secs} s while installing`, retryable: false };
}

/**
 * Has a done device failed its soak? A device silent (no heartbeat for its silence time), with an open loss
 * ticket, counts as failed while its wave's gate is still open (RULES.md "Soak is bake time").
 * `watchingSince` is when the daemon began watching (done time, or daemon start after a restart).
 */
export function judgeSoak(d: RolloutDeviceRow, now: number, live: Liveness, watchingSince: number): Failure | undefined {
  if (d.state !== 'done') return undefined;
  if (live.lossTicket) return { reason: 'lost during the soak (loss ticket open)', retryable: false };
  const heard = Math.max(live.lastHeartbeatAt ?? watchingSince, watchingSince);
  if (now > heard + live.silenceMs) return { reason: `silent during the soak (no heartbeat for ${Math.round((now - heard) / 1000)} s)`, retryable: false };
  return undefined;
}

/**
 * The row after a failure: back to `pending` for another offer after a backoff when the failure is transient
 * and tries remain (RULES.md "Retries": it counts as failed only after its last try), else `failed`.
 */
export function afterFailure(d: RolloutDeviceRow, failure: Failure, now: number, rules: DeviceRules, rolloutId: string): RolloutDeviceRow {
  const tries = Math.max(1, d.attempts);
  if (failure.retryable && tries <= rules.retries && canTransitionDevice(d.state, 'pending')) {
    const delay = retryDelay(tries, rules.retryBackoffMs, `${rolloutId}\u0000${d.deviceId}\u0000${tries}`);
    return { ...d, state: 'pending', retryAt: now + delay, progressAt: null, detail: `try ${tries} of ${rules.retries + 1} failed: ${failure.reason}; retry after ${Math.round(delay / 1000)} s` };
  }
  const suffix = tries > 1 ? ` (after ${tries} tries)` : '';
  return { ...d, state: 'failed', retryAt: null, detail: `${failure.reason}${suffix}` };
}

/**
 * Backoff before retry number `tries` (1 = after the first failure): the daemon's exponential backoff with
 * equal jitter (src/protocol/backoff.ts), with the jitter drawn from a hash so a restarted daemon computes
 * the same moment (nothing random needs storing).
 */
export function retryDelay(tries: number, baseMs: number, seed: string): number {
  return backoffDelay(tries - 1, { baseMs, maxMs: baseMs * 16, jitter: 'equal' }, () => hash32(seed) / 2 ** 32);
}

/** A status for this device's job (PatchStatus, or the heartbeat's `patch` field). */
export interface StatusInput {
  state: PatchState;
  at: number;
  detail?: string | undefined;
  retryable?: boolean | undefined;
}

/**
 * A device's row after a patch status, or undefined when it changes nothing (RULES.md "Health gate"):
 * - progress moves forward only (ranks of src/protocol/names.ts); a repeat only moves the progress clock;
 * - `installed` records installedAt: the device is NOT done yet (it needs a later heartbeat on the version);
 * - `failed`, `rolled_back`, `rejected`, `cancelled` turn it failed (or pending for a retry when the agent
 *   marked it retryable), also when it was already done but its wave's gate is still open (`gateOpen`).
 */
export function applyStatus(d: RolloutDeviceRow, input: StatusInput, gateOpen: boolean, rules: DeviceRules, rolloutId: string): RolloutDeviceRow | undefined {
  const to = deviceStateForPatchState(input.state);
  if (d.state === 'pending' || d.state === 'excluded' || d.state === 'failed') return undefined;
  if (d.state === 'done') {
    if (to !== 'failed' || !gateOpen) return undefined;
    return { ...d, state: 'failed', detail: `${input.state} after it was counted done${input.detail ? `: ${input.detail}` : ''}` };
  }
  if (to === d.state) {
    // A repeat (heartbeats repeat the latest state): only the progress clock moves.
    if (to === 'installed' || d.progressAt === input.at) return undefined;
    return { ...d, progressAt: input.at };
  }
  if (to !== 'failed' && PATCH_STATE_RANK[input.state] < rankOf(d.state)) return undefined; // older than what we know
  if (to === 'failed') {
    const reason = input.detail ? `${input.state}: ${input.detail}` : input.state;
    return afterFailure({ ...d, progressAt: input.at }, { reason, retryable: input.retryable === true && input.state === 'failed' }, input.at, rules, rolloutId);
  }
  const next: RolloutDeviceRow = { ...d, state: to, progressAt: input.at, detail: d.detail };
  if (to === 'installed') next.installedAt = input.at;
  return next;
}

function rankOf(state: RolloutDeviceRow['state']): number {
  switch (state) {
    case 'offered':
      return PATCH_STATE_RANK.offered;
    case 'downloading':
      return PATCH_STATE_RANK.downloading;
    case 'installing':
      return PATCH_STATE_RANK.installing;
    default:
      return PATCH_STATE_RANK.installed;
  }
}

/** What a heartbeat says about the rollout's patch. */
export interface HeartbeatInput {
  at: number;
  /** Does the reported softwareVersion equal the patch version (strict semver)? */
  onNewVersion: boolean;
  softwareVersion: string;
  /** The heartbeat's `patch.state` when it names this rollout's patch, else undefined. */
  patchState: PatchState | undefined;
}

/**
 * A device's row after a heartbeat (the status in its `patch` field already applied):
 * - `installed` + a heartbeat on the new version that does not say the job is still running -> done
 *   (issue 9 fault 2: a heartbeat saying `installing` while the check runs never counts);
 * - done, gate open, a heartbeat on another version -> failed (reverted during the soak).
 */
export function applyHeartbeat(d: RolloutDeviceRow, hb: HeartbeatInput, gateOpen: boolean): RolloutDeviceRow | undefined {
  if (d.state === 'installed') {
    if (!hb.onNewVersion) return undefined;
    if (hb.patchState !== undefined && hb.patchState !== 'installed') return undefined;
    return { ...d, state: 'done', doneAt: hb.at, progressAt: hb.at };
  }
  if (d.state === 'done' && gateOpen && !hb.onNewVersion) {
    return { ...d, state: 'failed', detail: `reverted to ${hb.softwareVersion} during the soak` };
  }
  return undefined;
}

export type GateStep = 'wait' | 'advance' | 'abort';

export interface WaveTally {
  /** Devices of the wave that count (all but excluded). */
  size: number;
  pending: number;
  /** Pending and able to receive an offer now: about to be offered. */
  pendingActive: number;
  inFlight: number;
  done: number;
  failed: number;
  excluded: number;
}

export interface GateResult {
  decision: GateStep;
  tally: WaveTally;
  failedShare: number;
  /** When every device is settled and the wave bakes: when the soak ends. */
  soakEndsAt: number | null;
}

export interface GateDevice {
  state: RolloutDeviceRow['state'];
  /** Pending and able to receive an offer now. */
  active: boolean;
  doneAt: number | null;
}

/**
 * A wave's gate (RULES.md "Health gate", "Soak is bake time"):
 * - abort as soon as failed / size > abortThreshold (size = the wave without excluded devices);
 * - wait while a device is in flight, or pending and about to be offered (ready, or a retry scheduled);
 * - wait while nobody in the wave succeeded and some are still pending offline (no evidence yet);
 * - wait until `soakMs` has passed since the LAST device of the wave became done (bake time; a device that
 *   goes silent or reverts meanwhile is failed by the caller, which may then abort);
 * - otherwise advance. Offline pending devices do not hold the gate: they get their offer when they come back.
 */
export function gateDecision(wave: readonly GateDevice[], now: number, settings: { soakMs: number; abortThreshold: number }): GateResult {
  const tally: WaveTally = { size: 0, pending: 0, pendingActive: 0, inFlight: 0, done: 0, failed: 0, excluded: 0 };
  let lastDoneAt: number | null = null;
  for (const device of wave) {
    if (device.state === 'excluded') {
      tally.excluded++;
      continue;
    }
    tally.size++;
    if (device.state === 'pending') {
      tally.pending++;
      if (device.active) tally.pendingActive++;
    } else if (IN_FLIGHT.has(device.state)) tally.inFlight++;
    else if (device.state === 'done') {
      tally.done++;
      if (device.doneAt !== null) lastDoneAt = Math.max(lastDoneAt ?? device.doneAt, device.doneAt);
    } else if (device.state === 'failed') tally.failed++;
  }
  const failedShare = tally.size === 0 ? 0 : tally.failed / tally.size;
  if (failedShare > settings.abortThreshold) return { decision: 'abort', tally, failedShare, soakEndsAt: null };
  if (tally.inFlight > 0 || tally.pendingActive > 0) return { decision: 'wait', tally, failedShare, soakEndsAt: null };
  if (tally.done === 0 && tally.pending > 0) return { decision: 'wait', tally, failedShare, soakEndsAt: null };
  const soakEndsAt = lastDoneAt === null ? null : lastDoneAt + settings.soakMs;
  if (soakEndsAt !== null && now < soakEndsAt) return { decision: 'wait', tally, failedShare, soakEndsAt };
  return { decision: 'advance', tally, failedShare, soakEndsAt };
}

/**
 * Is a pending device about to be offered (holds the gate)? Only when it can receive an offer now; a device
 * offline (first offer or a retry) gets its offer when it comes back, while the rollout runs (RULES.md).
 */
export function isActivePending(d: RolloutDeviceRow, ready: boolean): boolean {
  return d.state === 'pending' && ready;
}
