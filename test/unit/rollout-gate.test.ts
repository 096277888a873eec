import { describe, it, expect } from 'vitest';
import { abortSeverity, gateDecision, heartbeatWithinSoak, judgeDevice, type DeviceProgress } from '../../src/rollouts/gate.js';
import type { DeviceRolloutState } from '../../src/rollouts/rollout-states.js';

const T0 = Date.parse('2026-11-26T02:00:00.000Z');
const MIN = 60_000;
const settings = { soakMs: 30 * MIN, abortThreshold: 0.1, progressTimeoutMs: 60 * MIN };
let n = 0;
const d = (state: DeviceRolloutState, over: Partial<DeviceProgress> = {}): DeviceProgress => ({
  deviceId: `gw-${n++}`, state, connected: true, installedAt: null, lastProgressAt: state === 'pending' ? null : T0, ...over,
});
const many = (k: number, state: DeviceRolloutState, over: Partial<DeviceProgress> = {}) => Array.from({ length: k }, () => d(state, over));

describe('gateDecision', () => {
  const rows: [string, DeviceProgress[], string, 'wait' | 'advance' | 'abort'][] = [
    ['all done -> advance', many(5, 'done'), '2026-11-26T02:40:00.000Z', 'advance'],
    ['one still installing -> wait', [...many(4, 'done'), d('installing')], '2026-11-26T02:10:00.000Z', 'wait'],
    ['one offered, none heard -> wait', [...many(4, 'done'), d('offered')], '2026-11-26T02:10:00.000Z', 'wait'],
    ['pending and connected -> wait (about to be offered)', [...many(4, 'done'), d('pending')], '2026-11-26T02:10:00.000Z', 'wait'],
    ['pending offline does not hold the gate', [...many(4, 'done'), d('pending', { connected: false })], '2026-11-26T02:10:00.000Z', 'advance'],
    ['all pending offline: no evidence -> wait', many(3, 'pending', { connected: false }), '2026-11-26T02:10:00.000Z', 'wait'],
    ['empty wave -> advance', [], '2026-11-26T02:10:00.000Z', 'advance'],
    ['only excluded -> advance', many(2, 'excluded'), '2026-11-26T02:10:00.000Z', 'advance'],
    ['1 of 10 failed = 10 % is not over 10 % -> advance', [...many(9, 'done'), d('failed')], '2026-11-26T02:40:00.000Z', 'advance'],
    ['2 of 10 failed = 20 % -> abort', [...many(8, 'done'), ...many(2, 'failed')], '2026-11-26T02:40:00.000Z', 'abort'],
    ['1 of 5 canaries failed -> abort at once, even with others in flight', [d('failed'), ...many(4, 'installing')], '2026-11-26T02:05:00.000Z', 'abort'],
    ['excluded devices do not count in the share', [...many(9, 'done'), d('failed'), ...many(5, 'excluded')], '2026-11-26T02:40:00.000Z', 'advance'],
    // silence after install
    ['installed, heartbeat not yet, exactly at soak -> wait', [...many(9, 'done'), d('installed', { installedAt: T0 })], '2026-11-26T02:30:00.000Z', 'wait'],
    ['installed and silent 1 ms past soak -> failed; 1 of 10 -> advance', [...many(9, 'done'), d('installed', { installedAt: T0 })], '2026-11-26T02:30:00.001Z', 'advance'],
    ['two silent past soak of 10 -> abort', [...many(8, 'done'), ...many(2, 'installed', { installedAt: T0 })], '2026-11-26T02:30:00.001Z', 'abort'],
    ['offered with no progress past the progress timeout -> failed -> abort', [d('offered'), ...many(4, 'done')], '2026-11-26T03:00:00.001Z', 'abort'],
    ['downloading within the progress timeout -> wait', [d('downloading'), ...many(4, 'done')], '2026-11-26T03:00:00.000Z', 'wait'],
  ];
  for (const [name, wave, now, expected] of rows) {
    it(name, () => expect(gateDecision(wave, Date.parse(now), settings).decision).toBe(expected));
  }

  it('reports the devices it judged failed, with why', () => {
    const silent = d('installed', { installedAt: T0 });
    const r = gateDecision([silent, ...many(9, 'done')], T0 + 30 * MIN + 1, settings);
    expect(r.newlyFailed).toEqual([{ deviceId: silent.deviceId, reason: expect.stringMatching(/silent after install/) }]);
    expect(r.tally).toMatchObject({ size: 10, done: 9, failed: 1 });
  });
  it('threshold 0 aborts on the first failure', () => {
    expect(gateDecision([d('failed'), ...many(99, 'done')], T0, { ...settings, abortThreshold: 0 }).decision).toBe('abort');
  });
});

describe('judgeDevice and heartbeatWithinSoak', () => {
  const soak = { soakMs: 30 * MIN, progressTimeoutMs: 60 * MIN };
  it('done devices are never judged', () => expect(judgeDevice(d('done', { installedAt: T0 }), T0 + 10 * 60 * MIN, soak)).toBeUndefined());
  it('installed within soak is not failed', () => expect(judgeDevice(d('installed', { installedAt: T0 }), T0 + 30 * MIN, soak)).toBeUndefined());
  it('installed past soak is failed', () => expect(judgeDevice(d('installed', { installedAt: T0 }), T0 + 30 * MIN + 1, soak)).toMatch(/silent after install/));
  it('installing past the progress timeout is failed', () => expect(judgeDevice(d('installing'), T0 + 60 * MIN + 1, soak)).toMatch(/no progress/));
  it('a heartbeat exactly at soak counts', () => expect(heartbeatWithinSoak(T0, T0 + 30 * MIN, 30 * MIN)).toBe(true));
  it('a heartbeat 1 ms after soak does not', () => expect(heartbeatWithinSoak(T0, T0 + 30 * MIN + 1, 30 * MIN)).toBe(false));
  it('a heartbeat before `installed` was heard counts', () => expect(heartbeatWithinSoak(null, T0, 30 * MIN)).toBe(true));
});

describe('abortSeverity (blast radius)', () => {
  const rows: [number, number, string][] = [
    [1, 5, 'low'], [2, 1000, 'low'], [3, 1000, 'medium'], [5, 50, 'high'], [20, 10000, 'high'], [10, 40, 'urgent'], [100, 100000, 'urgent'], [0, 0, 'low'],
  ];
  for (const [failed, targeted, severity] of rows) {
    it(`${failed} failed of ${targeted} -> ${severity}`, () => expect(abortSeverity(failed, targeted)).toBe(severity));
  }
});
