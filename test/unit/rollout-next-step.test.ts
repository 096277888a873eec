import { describe, it, expect } from 'vitest';
import {
  afterFailure, applyHeartbeat, applyStatus, gateDecision, judgeInFlight, judgeSoak, retryDelay,
  type DeviceRules, type GateDevice,
} from '../../src/rollouts/next-step.js';
import type { RolloutDeviceRow } from '../../src/rollouts/rollout-store.js';
import type { DeviceRolloutState } from '../../src/rollouts/rollout-states.js';

/** Table tests of the rollout's pure decisions (RULES.md "Health gate", "Soak is bake time", "Retries"). */
const T0 = Date.parse('2026-11-26T02:00:00.000Z');
const MIN = 60_000;
const rules: DeviceRules = { soakMs: 30 * MIN, reportTimeoutMs: 15 * MIN, progressTimeoutMs: 60 * MIN, retries: 0, retryBackoffMs: MIN };
const row = (state: DeviceRolloutState, over: Partial<RolloutDeviceRow> = {}): RolloutDeviceRow => ({
  deviceId: 'gw-1', wave: 0, state, offeredAt: state === 'pending' ? null : T0, installedAt: null, doneAt: null,
  progressAt: state === 'pending' ? null : T0, joinedAt: null, detail: null, attempts: state === 'pending' ? 0 : 1, retryAt: null, cancelRequestedAt: null, ...over,
});
const g = (state: DeviceRolloutState, over: Partial<GateDevice> = {}): GateDevice => ({ state, active: false, doneAt: state === 'done' ? T0 : null, ...over });
const many = (k: number, state: DeviceRolloutState, over: Partial<GateDevice> = {}) => Array.from({ length: k }, () => g(state, over));
const at = (iso: string) => Date.parse(iso);

describe('gateDecision: soak is bake time', () => {
  const settings = { soakMs: 30 * MIN, abortThreshold: 0.1 };
  const rows: [string, GateDevice[], string, 'wait' | 'advance' | 'abort'][] = [
    ['all done, soak not yet over since the last done -> wait', many(5, 'done'), '2026-11-26T02:29:59.999Z', 'wait'],
    ['all done, soak over since the last done -> advance', many(5, 'done'), '2026-11-26T02:30:00.000Z', 'advance'],
    ['the soak runs from the LAST device done', [...many(4, 'done'), g('done', { doneAt: T0 + 10 * MIN })], '2026-11-26T02:35:00.000Z', 'wait'],
    ['one still installing -> wait', [...many(4, 'done'), g('installing')], '2026-11-26T03:10:00.000Z', 'wait'],
    ['installed but not yet heard on the new version -> wait', [...many(4, 'done'), g('installed')], '2026-11-26T03:10:00.000Z', 'wait'],
    ['pending and able to receive -> wait', [...many(4, 'done'), g('pending', { active: true })], '2026-11-26T03:10:00.000Z', 'wait'],
    ['pending offline does not hold the gate', [...many(4, 'done'), g('pending')], '2026-11-26T03:10:00.000Z', 'advance'],
    ['all pending offline: no evidence -> wait', many(3, 'pending'), '2026-11-26T03:10:00.000Z', 'wait'],
    ['empty wave -> advance', [], '2026-11-26T02:10:00.000Z', 'advance'],
    ['only excluded -> advance', many(2, 'excluded'), '2026-11-26T02:10:00.000Z', 'advance'],
    ['1 of 10 failed = 10 % is not over 10 % -> advance after soak', [...many(9, 'done'), g('failed')], '2026-11-26T02:40:00.000Z', 'advance'],
    ['2 of 10 failed = 20 % -> abort', [...many(8, 'done'), ...many(2, 'failed')], '2026-11-26T02:40:00.000Z', 'abort'],
    ['1 of 5 failed -> abort at once, even with others in flight', [g('failed'), ...many(4, 'installing')], '2026-11-26T02:05:00.000Z', 'abort'],
    ['excluded devices do not count in the share', [...many(9, 'done'), g('failed'), ...many(5, 'excluded')], '2026-11-26T02:40:00.000Z', 'advance'],
  ];
  for (const [name, wave, now, expected] of rows) {
    it(name, () => expect(gateDecision(wave, at(now), settings).decision).toBe(expected));
  }
  it('reports when the soak ends', () => {
    expect(gateDecision([...many(2, 'done'), g('done', { doneAt: T0 + MIN })], T0 + 2 * MIN, settings).soakEndsAt).toBe(T0 + 31 * MIN);
  });
  it('threshold 0 aborts on the first failure', () => {
    expect(gateDecision([g('failed'), ...many(99, 'done')], T0, { ...settings, abortThreshold: 0 }).decision).toBe('abort');
  });
});

describe('applyStatus: done only after a final installed and a later heartbeat', () => {
  const rows: [string, RolloutDeviceRow, Parameters<typeof applyStatus>[1], boolean, Partial<RolloutDeviceRow> | undefined][] = [
    ['offered -> downloading', row('offered'), { state: 'downloading', at: T0 + 1 }, true, { state: 'downloading', progressAt: T0 + 1 }],
    ['verifying is downloading', row('offered'), { state: 'verifying', at: T0 + 1 }, true, { state: 'downloading' }],
    ['installing -> installed records installedAt, is not done', row('installing'), { state: 'installed', at: T0 + 5 }, true, { state: 'installed', installedAt: T0 + 5 }],
    ['a repeated installing only moves the progress clock', row('installing'), { state: 'installing', at: T0 + 9 }, true, { state: 'installing', progressAt: T0 + 9 }],
    ['a repeated installed changes nothing', row('installed', { installedAt: T0 }), { state: 'installed', at: T0 + 9 }, true, undefined],
    ['an older status never moves it back', row('installing'), { state: 'downloading', at: T0 + 9 }, true, undefined],
    ['rolled_back while installed -> failed', row('installed'), { state: 'rolled_back', at: T0 + 9, detail: 'check exited 1' }, true, { state: 'failed', detail: 'rolled_back: check exited 1' }],
    ['rolled_back after done, gate open -> failed', row('done', { doneAt: T0 }), { state: 'rolled_back', at: T0 + 9 }, true, { state: 'failed' }],
    ['rolled_back after done, gate closed -> nothing', row('done', { doneAt: T0 }), { state: 'rolled_back', at: T0 + 9 }, false, undefined],
    ['cancelled -> failed', row('downloading'), { state: 'cancelled', at: T0 + 9 }, true, { state: 'failed', detail: 'cancelled' }],
    ['a status for a pending device moves nothing', row('pending'), { state: 'installed', at: T0 + 9 }, true, undefined],
    ['a failed device stays failed', row('failed'), { state: 'installed', at: T0 + 9 }, true, undefined],
  ];
  for (const [name, d, input, gateOpen, expected] of rows) {
    it(name, () => {
      const next = applyStatus(d, input, gateOpen, rules, 'r-1');
      if (expected === undefined) expect(next).toBeUndefined();
      else expect(next).toMatchObject(expected);
    });
  }
  it('a retryable failure with tries left goes back to pending with a backoff', () => {
    const next = applyStatus(row('downloading'), { state: 'failed', at: T0 + 9, detail: 'download timed out', retryable: true }, true, { ...rules, retries: 2 }, 'r-1');
    expect(next).toMatchObject({ state: 'pending', detail: expect.stringMatching(/try 1 of 3 failed: failed: download timed out/) });
    expect(next!.retryAt).toBeGreaterThanOrEqual(T0 + 9 + MIN / 2);
  });
  it('a failure not marked retryable fails at once even with retries', () => {
    expect(applyStatus(row('installing'), { state: 'failed', at: T0, detail: 'install exited 1' }, true, { ...rules, retries: 2 }, 'r-1')).toMatchObject({ state: 'failed' });
  });
});

describe('applyHeartbeat', () => {
  const hb = (onNewVersion: boolean, patchState?: 'installing' | 'installed') => ({ at: T0 + 7, onNewVersion, softwareVersion: onNewVersion ? '2.3.2' : '2.3.1', patchState });
  it('installed + new version + no running job -> done', () => expect(applyHeartbeat(row('installed'), hb(true), true)).toMatchObject({ state: 'done', doneAt: T0 + 7 }));
  it('installed + new version + heartbeat says installed -> done', () => expect(applyHeartbeat(row('installed'), hb(true, 'installed'), true)).toMatchObject({ state: 'done' }));
  it('issue 9 fault 2: new version while the heartbeat says installing (check running) -> not done', () =>
    expect(applyHeartbeat(row('installed'), hb(true, 'installing'), true)).toBeUndefined());
  it('installing + new version -> not done (no final installed yet)', () => expect(applyHeartbeat(row('installing'), hb(true), true)).toBeUndefined());
  it('done + old version while the gate is open -> failed (reverted)', () =>
    expect(applyHeartbeat(row('done'), hb(false), true)).toMatchObject({ state: 'failed', detail: 'reverted to 2.3.1 during the soak' }));
  it('done + old version after the gate closed -> nothing', () => expect(applyHeartbeat(row('done'), hb(false), false)).toBeUndefined());
});

describe('judgeInFlight and judgeSoak', () => {
  it('installed without a heartbeat on the new version past the time allowed to report -> failed', () => {
    expect(judgeInFlight(row('installed', { installedAt: T0 }), T0 + 15 * MIN, rules)).toBeUndefined();
    expect(judgeInFlight(row('installed', { installedAt: T0 }), T0 + 15 * MIN + 1, rules)).toMatchObject({ retryable: false });
  });
  it('an offer never acted on is a transient failure', () => expect(judgeInFlight(row('offered'), T0 + 60 * MIN + 1, rules)).toMatchObject({ retryable: true }));
  it('a stalled install is not', () => expect(judgeInFlight(row('installing'), T0 + 60 * MIN + 1, rules)).toMatchObject({ retryable: false }));
  it('a done device silent within the soak fails it', () => {
    const live = { lastHeartbeatAt: T0, silenceMs: 90_000, lossTicket: false };
    expect(judgeSoak(row('done', { doneAt: T0 }), T0 + 90_000, live, T0)).toBeUndefined();
    expect(judgeSoak(row('done', { doneAt: T0 }), T0 + 90_001, live, T0)).toMatchObject({ reason: expect.stringMatching(/silent during the soak/) });
  });
  it('a loss ticket fails it', () => expect(judgeSoak(row('done'), T0, { lastHeartbeatAt: T0, silenceMs: 1e9, lossTicket: true }, T0)).toBeDefined());
});

describe('afterFailure and retryDelay', () => {
  it('counts as failed only after its last try', () => {
    const r2 = { ...rules, retries: 1 };
    expect(afterFailure(row('offered', { attempts: 1 }), { reason: 'x', retryable: true }, T0, r2, 'r')).toMatchObject({ state: 'pending' });
    expect(afterFailure(row('offered', { attempts: 2 }), { reason: 'x', retryable: true }, T0, r2, 'r')).toMatchObject({ state: 'failed', detail: 'x (after 2 tries)' });
  });
  it('backs off exponentially, the same after a restart', () => {
    expect(retryDelay(1, MIN, 'a')).toBe(retryDelay(1, MIN, 'a'));
    expect(retryDelay(3, MIN, 'a')).toBeGreaterThanOrEqual(2 * MIN);
    expect(retryDelay(30, MIN, 'a')).toBeLessThanOrEqual(16 * MIN);
  });
});
