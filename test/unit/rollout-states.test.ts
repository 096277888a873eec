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
    // issue 9 fault 8: a rollout that cannot run at run time is failed, from any active state
    ['scheduled', 'failed'], ['running', 'failed'], ['paused', 'failed'],
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
    ['offered', 'downloading', true], ['offered', 'installed', true], ['offered', 'pending', true],
    // issue 9 fault 2: done only from installed (a final installed, then a heartbeat on the new version)
    ['offered', 'done', false], ['downloading', 'done', false], ['installing', 'done', false],
    ['downloading', 'offered', false], ['installing', 'downloading', false], ['installed', 'done', true], ['installed', 'failed', true],
    ['installed', 'installing', false], ['failed', 'done', false], ['excluded', 'pending', false], ['done', 'offered', false],
    // soak is bake time: a rollback or silence before the gate closes turns done into failed
    ['done', 'failed', true],
    // retries: a transient failure with tries left goes back to pending
    ['downloading', 'pending', true], ['installing', 'pending', true], ['installed', 'pending', false],
  ];
  for (const [from, to, ok] of rows) {
    it(`${from} -> ${to} is ${ok ? 'allowed' : 'illegal'}`, () => {
      expect(canTransitionDevice(from as never, to as never)).toBe(ok);
      if (!ok) expect(() => assertDeviceTransition(from as never, to as never)).toThrow(/illegal transition/);
    });
  }
  it('failed and excluded have no way out; done only to failed', () => {
    for (const to of DEVICE_STATES) for (const from of ['failed', 'excluded'] as const) expect(canTransitionDevice(from, to)).toBe(false);
    expect(DEVICE_STATES.filter((to) => canTransitionDevice('done', to))).toEqual(['failed']);
  });
  it('maps every PatchStatus state', () => {
    expect(PATCH_STATES.map(deviceStateForPatchState)).toEqual(['downloading', 'downloading', 'installing', 'installed', 'failed', 'failed', 'failed', 'failed']);
  });
});
