import { describe, it, expect } from 'vitest';
import {
  DEVICE_STATES, ROLLOUT_STATES, assertDeviceTransition, assertRolloutTransition, canTransitionDevice, canTransitionRollout,
  deviceStateForPatchState, IllegalTransitionError,
} from '../../src/rollouts/rollout-states.js';
import { PATCH_STATES } from '../../src/protocol/names.js';

describe('rollout state machine', () => {
  const allowed: [string, string][] = [
    ['scheduled', 'running'], ['scheduled', 'paused'], ['scheduled', 'aborted'], ['running', 'paused'], ['running', 'completed'],
    ['running', 'aborted'], ['paused', 'running'], ['paused', 'scheduled'], ['paused', 'aborted'],
  ];
  for (const from of ROLLOUT_STATES) {
    for (const to of ROLLOUT_STATES) {
      const ok = allowed.some(([a, b]) => a === from && b === to);
      it(`${from} -> ${to} is ${ok ? 'allowed' : 'illegal'}`, () => {
        expect(canTransitionRollout(from, to)).toBe(ok);
        if (ok) expect(() => assertRolloutTransition(from, to)).not.toThrow();
        else expect(() => assertRolloutTransition(from, to)).toThrow(IllegalTransitionError);
      });
    }
  }
});

describe('device state machine', () => {
  const rows: [string, string, boolean][] = [
    ['pending', 'offered', true], ['pending', 'excluded', true], ['pending', 'done', false], ['pending', 'installing', false],
    ['offered', 'downloading', true], ['offered', 'installed', true], ['offered', 'done', true], ['offered', 'pending', true],
    ['downloading', 'offered', false], ['installing', 'downloading', false], ['installed', 'done', true], ['installed', 'failed', true],
    ['installed', 'installing', false], ['done', 'failed', false], ['failed', 'done', false], ['excluded', 'pending', false], ['done', 'offered', false],
  ];
  for (const [from, to, ok] of rows) {
    it(`${from} -> ${to} is ${ok ? 'allowed' : 'illegal'}`, () => {
      expect(canTransitionDevice(from as never, to as never)).toBe(ok);
      if (!ok) expect(() => assertDeviceTransition(from as never, to as never)).toThrow(/illegal transition/);
    });
  }
  it('terminal states have no way out', () => {
    for (const to of DEVICE_STATES) for (const from of ['done', 'failed', 'excluded'] as const) expect(canTransitionDevice(from, to)).toBe(false);
  });
  it('maps every PatchStatus state', () => {
    expect(PATCH_STATES.map(deviceStateForPatchState)).toEqual(['downloading', 'downloading', 'installing', 'installed', 'failed', 'failed', 'failed']);
  });
});
