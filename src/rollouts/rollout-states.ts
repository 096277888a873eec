import { XcareError } from '../errors.js';
import type { PatchState } from '../protocol/names.js';

/**
 * The rollout and per-device state machines as tables (STYLE.md "State machines are tables").
 * The scheduler persists every transition before acting on it; an illegal transition throws.
 */
export const ROLLOUT_STATES = ['scheduled', 'running', 'paused', 'completed', 'aborted', 'failed'] as const;
export type RolloutState = (typeof ROLLOUT_STATES)[number];

export const ROLLOUT_TRANSITIONS: Readonly<Record<RolloutState, readonly RolloutState[]>> = {
  // scheduled: created, waiting for its first window to open.
  // failed: the scheduler could not execute the rollout at run time (issue 9 fault 8); the others go on.
  scheduled: ['running', 'paused', 'aborted', 'failed'],
  running: ['paused', 'completed', 'aborted', 'failed'],
  // Resume goes back to scheduled when the rollout had not started yet.
  paused: ['running', 'scheduled', 'aborted', 'failed'],
  completed: [],
  aborted: [],
  failed: [],
};

export const DEVICE_STATES = ['pending', 'offered', 'downloading', 'installing', 'installed', 'done', 'failed', 'excluded'] as const;
export type DeviceRolloutState = (typeof DEVICE_STATES)[number];

export const DEVICE_TRANSITIONS: Readonly<Record<DeviceRolloutState, readonly DeviceRolloutState[]>> = {
  // excluded: the offer-time guard found it revoked, ineligible or off-range, or it was offline when the rollout ended.
  pending: ['offered', 'excluded'],
  // offered -> pending only when the port reports the offer was NOT handed to the broker (nothing was sent,
  // so re-offering later is not a second offer). Any status may be the first one heard (QoS 1 messages can be
  // lost; the heartbeat `patch` field repeats the latest state, PROTOCOL.md "Heartbeat").
  // -> pending: a transient failure with tries left (RULES.md "Retries"); offered again after a backoff.
  offered: ['pending', 'downloading', 'installing', 'installed', 'failed'],
  downloading: ['pending', 'installing', 'installed', 'failed'],
  installing: ['pending', 'installed', 'failed'],
  // installed -> done only on a heartbeat on the new version after the final `installed` (RULES.md "Health gate").
  installed: ['done', 'failed'],
  // done -> failed: a rollback, a revert or silence before the wave's gate closes (soak is bake time).
  done: ['failed'],
  failed: [],
  excluded: [],
};

/** Devices in these states count against the concurrency caps: they are updating or restarting. */
export const IN_FLIGHT: ReadonlySet<DeviceRolloutState> = new Set(['offered', 'downloading', 'installing', 'installed']);
export const TERMINAL: ReadonlySet<DeviceRolloutState> = new Set(['done', 'failed', 'excluded']);

export class IllegalTransitionError extends XcareError {
  constructor(what: string, from: string, to: string) {
    super('ILLEGAL_TRANSITION', `${what}: illegal transition ${from} -> ${to}`, 409);
  }
}

export function canTransitionRollout(from: RolloutState, to: RolloutState): boolean {
  return ROLLOUT_TRANSITIONS[from].includes(to);
}

export function assertRolloutTransition(from: RolloutState, to: RolloutState, what = 'rollout'): void {
  if (!canTransitionRollout(from, to)) throw new IllegalTransitionError(what, from, to);
}

export function canTransitionDevice(from: DeviceRolloutState, to: DeviceRolloutState): boolean {
  return DEVICE_TRANSITIONS[from].includes(to);
}

export function assertDeviceTransition(from: DeviceRolloutState, to: DeviceRolloutState, what = 'device'): void {
  if (!canTransitionDevice(from, to)) throw new IllegalTransitionError(what, from, to);
}

/** PatchStatus.state (PROTOCOL.md) to the device's rollout state. */
export function deviceStateForPatchState(state: PatchState): DeviceRolloutState {
  switch (state) {
    case 'downloading':
    case 'verifying':
      return 'downloading';
    case 'installing':
      return 'installing';
    case 'installed':
      return 'installed';
    case 'failed':
    case 'rolled_back':
    case 'rejected':
    case 'cancelled':
      return 'failed';
  }
}
