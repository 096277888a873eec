import { describe, it, expect } from 'vitest';
import { heartbeatSchema, patchStatusSchema, parsePayload, PAYLOAD_LIMITS } from '../../src/protocol/schemas.js';
import { MAX_INTERVAL_S, MIN_INTERVAL_S } from '../../src/protocol/names.js';
import type { Heartbeat } from '../../src/protocol/types.js';

/** Issue 11 fault 6: both bounds on every number, string and array of every device payload. */
const good: Heartbeat = {
  seq: 1,
  ts: '2026-11-26T17:00:00.000Z',
  intervalS: 30,
  uptimeS: 10,
  agentVersion: '1.0.0',
  softwareVersion: '2.3.1',
  health: { cpu: 0.5, memUsed: 0.5, diskUsed: 0.5, load1: 3 },
};

const beat = (over: Record<string, unknown>) => JSON.stringify({ ...good, ...over });

describe('heartbeat bounds', () => {
  it('accepts the edges', () => {
    for (const over of [{ intervalS: MIN_INTERVAL_S }, { intervalS: MAX_INTERVAL_S }, { seq: Number.MAX_SAFE_INTEGER }, { health: { cpu: 0, memUsed: 1, diskUsed: 1, load1: 0 } }]) {
      expect(parsePayload(heartbeatSchema, beat(over)).ok, JSON.stringify(over)).toBe(true);
    }
  });

  const refused: Array<[string, Record<string, unknown>, string]> = [
    ['intervalS 1e-300 (the issue)', { intervalS: 1e-300 }, 'intervalS'],
    ['intervalS 0.5', { intervalS: 0.5 }, 'intervalS'],
    ['intervalS above a day', { intervalS: MAX_INTERVAL_S + 1 }, 'intervalS'],
    ['intervalS 1e308', { intervalS: 1e308 }, 'intervalS'],
    ['seq beyond a safe integer', { seq: 2 ** 60 }, 'seq'],
    ['seq fractional', { seq: 1.5 }, 'seq'],
    ['uptimeS negative', { uptimeS: -1 }, 'uptimeS'],
    ['uptimeS beyond a century', { uptimeS: PAYLOAD_LIMITS.uptimeS + 1 }, 'uptimeS'],
    ['cpu above 1', { health: { cpu: 1.5 } }, 'health.cpu'],
    ['memUsed negative', { health: { memUsed: -0.1 } }, 'health.memUsed'],
    ['diskUsed 1e9', { health: { diskUsed: 1e9 } }, 'health.diskUsed'],
    ['load1 absurd', { health: { load1: 1e12 } }, 'health.load1'],
    ['too many subsystems', { subsystems: Array.from({ length: PAYLOAD_LIMITS.subsystems + 1 }, (_, i) => ({ name: `s${i}`, ok: true })) }, 'subsystems'],
    ['too many sensors', { sensors: Array.from({ length: PAYLOAD_LIMITS.sensors + 1 }, (_, i) => ({ id: `s${i}`, ok: true })) }, 'sensors'],
    ['a long detail', { subsystems: [{ name: 'a', ok: true, detail: 'x'.repeat(PAYLOAD_LIMITS.textChars + 1) }] }, 'subsystems.0.detail'],
    ['a long bootId', { bootId: 'b'.repeat(PAYLOAD_LIMITS.nameChars + 1) }, 'bootId'],
    ['a ts on Feb 30', { ts: '2027-02-30T10:00:00Z' }, 'ts'],
    ['a ts that is not a date', { ts: 'yesterday' }, 'ts'],
  ];
  it.each(refused)('refuses %s as a schema error naming the field', (_name, over, field) => {
    const result = parsePayload(heartbeatSchema, beat(over));
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.reason).toBe('schema');
    expect(result.message.startsWith(`${field}:`), result.message).toBe(true);
  });
});

describe('patch status bounds', () => {
  it.each([
    ['a long patchId', { patchId: 'p'.repeat(PAYLOAD_LIMITS.idChars + 1), state: 'installed' }],
    ['a long detail', { patchId: 'p', state: 'failed', detail: 'x'.repeat(PAYLOAD_LIMITS.textChars + 1) }],
    ['an empty patchId', { patchId: '', state: 'installed' }],
  ])('refuses %s', (_name, value) => {
    expect(parsePayload(patchStatusSchema, JSON.stringify(value)).ok).toBe(false);
  });
});
