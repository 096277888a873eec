/**
 * Issue 12: `parseHeartbeat`, the ingest path's heartbeat check, one row per bound (PROTOCOL.md "Heartbeat",
 * README "Limits"). Every refused row is also refused by `heartbeatSchema` (the specification) with the same
 * path; heartbeat-check-equivalence.test.ts covers the rest of the space with generated input.
 */
import { describe, expect, it } from 'vitest';
import { checkHeartbeat, parseHeartbeat } from '../../src/protocol/heartbeat-check.js';
import { MAX_INTERVAL_S, MIN_INTERVAL_S, PATCH_STATES } from '../../src/protocol/names.js';
import { heartbeatSchema, parsePayload, PAYLOAD_LIMITS as L } from '../../src/protocol/schemas.js';
import type { Heartbeat } from '../../src/protocol/types.js';

const good: Heartbeat = {
  seq: 7,
  ts: '2026-11-26T17:00:00.000Z',
  bootId: 'boot-1',
  intervalS: 30,
  uptimeS: 3600,
  agentVersion: '1.0.0',
  softwareVersion: '2.3.1',
  integrity: `sha256:${'ab'.repeat(32)}`,
  health: { cpu: 0.12, memUsed: 0.5, diskUsed: 0.4, load1: 0.3 },
  subsystems: [{ name: 'uplink', ok: true, detail: 'lte' }],
  sensors: [{ id: 'temp-1', ok: false }],
  patch: { rolloutId: 'r-1', patchId: 'p-1', state: 'installing' },
};

/** `good` with `over` merged in; a key set to undefined is removed (JSON drops it). */
const beat = (over: Record<string, unknown>) => JSON.stringify({ ...good, ...over });
const many = <T>(n: number, make: (i: number) => T) => Array.from({ length: n }, (_, i) => make(i));
const x = (n: number) => 'x'.repeat(n);

describe('parseHeartbeat accepts every edge heartbeatSchema accepts', () => {
  it.each<[string, Record<string, unknown>]>([
    ['seq 0', { seq: 0 }],
    ['seq MAX_SAFE_INTEGER', { seq: Number.MAX_SAFE_INTEGER }],
    ['intervalS MIN_INTERVAL_S', { intervalS: MIN_INTERVAL_S }],
    ['intervalS MAX_INTERVAL_S', { intervalS: MAX_INTERVAL_S }],
    ['uptimeS 0', { uptimeS: 0 }],
    ['uptimeS at its limit', { uptimeS: L.uptimeS }],
    ['ratios 0 and 1, load1 at its limit', { health: { cpu: 0, memUsed: 1, diskUsed: 1, load1: L.load1 } }],
    ['an empty health', { health: {} }],
    ['names and versions at their limit', { bootId: x(L.nameChars), agentVersion: x(L.nameChars), softwareVersion: x(L.nameChars) }],
    ['names counted in code points (64 emoji are 128 UTF-16 units)', { agentVersion: '😀'.repeat(L.nameChars) }],
    ['an empty bootId', { bootId: '' }],
    ['a ts with an offset and nanoseconds', { ts: '2026-11-26T18:30:00.123456789+01:30' }],
    ['a ts on Feb 29 of a leap year', { ts: '2028-02-29T00:00:00Z' }],
    ['as many subsystems as allowed', { subsystems: many(L.subsystems, (i) => ({ name: `s${i}`, ok: true })) }],
    ['as many sensors as allowed', { sensors: many(L.sensors, (i) => ({ id: `n${i}`, ok: true })) }],
    ['a detail at its limit', { subsystems: [{ name: 'a', ok: true, detail: x(L.textChars) }] }],
    ['ids at their limit', { patch: { rolloutId: x(L.idChars), patchId: x(L.idChars), state: 'installed' } }],
    ['a sensor id of 64 characters', { sensors: [{ id: x(64), ok: true }] }],
    ...PATCH_STATES.map((state): [string, Record<string, unknown>] => [`patch state ${state}`, { patch: { patchId: 'p', state } }]),
    ['only the required fields', { bootId: undefined, uptimeS: undefined, integrity: undefined, health: undefined, subsystems: undefined, sensors: undefined, patch: undefined }],
  ])('%s', (_name, over) => {
    const payload = beat(over);
    const result = parseHeartbeat(payload);
    expect(result).toStrictEqual(parsePayload(heartbeatSchema, payload));
    expect(result.ok).toBe(true);
  });
});

describe('parseHeartbeat refuses, naming the field', () => {
  const refused: Array<[string, string, string]> = [
    ['an array', '[]', '(root)'],
    ['a string', '"heartbeat"', '(root)'],
    ['null', 'null', '(root)'],
    ['a number', '42', '(root)'],
    ['seq missing', beat({ seq: undefined }), 'seq'],
    ['seq a string', beat({ seq: '1' }), 'seq'],
    ['seq negative', beat({ seq: -1 }), 'seq'],
    ['seq fractional', beat({ seq: 1.5 }), 'seq'],
    ['seq MAX_SAFE_INTEGER + 1', beat({ seq: Number.MAX_SAFE_INTEGER + 1 }), 'seq'],
    ['ts missing', beat({ ts: undefined }), 'ts'],
    ['ts a number', beat({ ts: 1764176400000 }), 'ts'],
    ['ts longer than its limit', beat({ ts: `2026-11-26T17:00:00.${'0'.repeat(L.tsChars)}Z` }), 'ts'],
    ['ts on Feb 30', beat({ ts: '2027-02-30T10:00:00Z' }), 'ts'],
    ['ts with a lower-case t', beat({ ts: '2026-11-26t17:00:00Z' }), 'ts'],
    ['ts without a zone', beat({ ts: '2026-11-26T17:00:00' }), 'ts'],
    ['bootId over its limit', beat({ bootId: x(L.nameChars + 1) }), 'bootId'],
    ['bootId a number', beat({ bootId: 1 }), 'bootId'],
    ['intervalS missing', beat({ intervalS: undefined }), 'intervalS'],
    ['intervalS below MIN_INTERVAL_S', beat({ intervalS: MIN_INTERVAL_S - 0.5 }), 'intervalS'],
    ['intervalS above MAX_INTERVAL_S', beat({ intervalS: MAX_INTERVAL_S + 1 }), 'intervalS'],
    ['intervalS a string', beat({ intervalS: '30' }), 'intervalS'],
    ['uptimeS negative', beat({ uptimeS: -1 }), 'uptimeS'],
    ['uptimeS over its limit', beat({ uptimeS: L.uptimeS + 1 }), 'uptimeS'],
    ['agentVersion empty', beat({ agentVersion: '' }), 'agentVersion'],
    ['agentVersion over its limit', beat({ agentVersion: x(L.nameChars + 1) }), 'agentVersion'],
    ['agentVersion of 65 emoji', beat({ agentVersion: '😀'.repeat(L.nameChars + 1) }), 'agentVersion'],
    ['softwareVersion missing', beat({ softwareVersion: undefined }), 'softwareVersion'],
    ['softwareVersion over its limit', beat({ softwareVersion: x(L.nameChars + 1) }), 'softwareVersion'],
    ['integrity in upper-case hex', beat({ integrity: `sha256:${'AB'.repeat(32)}` }), 'integrity'],
    ['integrity one hex digit short', beat({ integrity: `sha256:${'a'.repeat(63)}` }), 'integrity'],
    ['integrity a number', beat({ integrity: 1 }), 'integrity'],
    ['health an array', beat({ health: [] }), 'health'],
    ['health a string', beat({ health: 'ok' }), 'health'],
    ['cpu above 1', beat({ health: { cpu: 1.01 } }), 'health.cpu'],
    ['cpu negative', beat({ health: { cpu: -0.01 } }), 'health.cpu'],
    ['cpu a string', beat({ health: { cpu: '0.5' } }), 'health.cpu'],
    ['memUsed above 1', beat({ health: { memUsed: 2 } }), 'health.memUsed'],
    ['diskUsed negative', beat({ health: { diskUsed: -1 } }), 'health.diskUsed'],
    ['load1 over its limit', beat({ health: { load1: L.load1 + 1 } }), 'health.load1'],
    ['subsystems an object', beat({ subsystems: { name: 'a', ok: true } }), 'subsystems'],
    ['one subsystem too many', beat({ subsystems: many(L.subsystems + 1, (i) => ({ name: `s${i}`, ok: true })) }), 'subsystems'],
    ['one subsystem too many, one of them bad (the length is checked first)', beat({ subsystems: [{ name: '' }, ...many(L.subsystems, (i) => ({ name: `s${i}`, ok: true }))] }), 'subsystems'],
    ['a subsystem that is not an object', beat({ subsystems: ['uplink'] }), 'subsystems.0'],
    ['a subsystem with an empty name', beat({ subsystems: [{ name: '', ok: true }] }), 'subsystems.0.name'],
    ['a subsystem name over its limit', beat({ subsystems: [{ name: x(L.nameChars + 1), ok: true }] }), 'subsystems.0.name'],
    ['a subsystem without ok', beat({ subsystems: [{ name: 'a', ok: true }, { name: 'b' }] }), 'subsystems.1.ok'],
    ['a subsystem ok as a string', beat({ subsystems: [{ name: 'a', ok: 'true' }] }), 'subsystems.0.ok'],
    ['a subsystem detail over its limit', beat({ subsystems: [{ name: 'a', ok: true, detail: x(L.textChars + 1) }] }), 'subsystems.0.detail'],
    ['one sensor too many', beat({ sensors: many(L.sensors + 1, (i) => ({ id: `n${i}`, ok: true })) }), 'sensors'],
    ['a sensor id with a space', beat({ sensors: [{ id: 'temp 1', ok: true }] }), 'sensors.0.id'],
    ['a sensor id starting with a dash', beat({ sensors: [{ id: '-t', ok: true }] }), 'sensors.0.id'],
    ['a sensor id of 65 characters', beat({ sensors: [{ id: x(65), ok: true }] }), 'sensors.0.id'],
    ['a sensor id a number', beat({ sensors: [{ id: 1, ok: true }] }), 'sensors.0.id'],
    ['a sensor detail over its limit', beat({ sensors: [{ id: 'n', ok: true, detail: x(L.textChars + 1) }] }), 'sensors.0.detail'],
    ['patch null', beat({ patch: null }), 'patch'],
    ['patch with an empty patchId', beat({ patch: { patchId: '', state: 'installed' } }), 'patch.patchId'],
    ['patch with a patchId over its limit', beat({ patch: { patchId: x(L.idChars + 1), state: 'installed' } }), 'patch.patchId'],
    ['patch with a rolloutId over its limit', beat({ patch: { rolloutId: x(L.idChars + 1), patchId: 'p', state: 'installed' } }), 'patch.rolloutId'],
    ['patch with an unknown state', beat({ patch: { patchId: 'p', state: 'done' } }), 'patch.state'],
    ['patch without a state', beat({ patch: { patchId: 'p' } }), 'patch.state'],
  ];
  it.each(refused)('%s', (_name, payload, path) => {
    const result = parseHeartbeat(payload);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.reason).toBe('schema');
    expect(result.message.startsWith(`${path}: `), result.message).toBe(true);
    const spec = parsePayload(heartbeatSchema, payload);
    expect(spec.ok ? '' : spec.message.split(': ')[0]).toBe(path);
  });

  it('a payload that is not JSON as reason json, as parsePayload does', () => {
    const result = parseHeartbeat('{"seq":');
    expect(result).toMatchObject({ ok: false, reason: 'json' });
    expect(result).toStrictEqual(parsePayload(heartbeatSchema, '{"seq":'));
  });
});

describe('checkHeartbeat on values JSON cannot carry', () => {
  const value = (over: Record<string, unknown>) => ({ ...good, ...over });
  it.each<[string, Record<string, unknown>, string]>([
    ['seq NaN', { seq: NaN }, 'seq'],
    ['intervalS Infinity', { intervalS: Infinity }, 'intervalS'],
    ['uptimeS -Infinity', { uptimeS: -Infinity }, 'uptimeS'],
    ['cpu NaN', { health: { cpu: NaN } }, 'health.cpu'],
    ['intervalS -0', { intervalS: -0 }, 'intervalS'],
  ])('refuses %s', (_name, over, path) => {
    const result = checkHeartbeat(value(over));
    expect(result.ok ? '' : result.message.split(': ')[0]).toBe(path);
    expect(heartbeatSchema.safeParse(value(over)).success).toBe(false);
  });

  it('keeps -0 as zod does', () => {
    const result = checkHeartbeat(value({ seq: -0, uptimeS: -0 }));
    expect(result).toStrictEqual({ ok: true, value: heartbeatSchema.parse(value({ seq: -0, uptimeS: -0 })) });
    expect(result.ok && Object.is(result.value.seq, -0)).toBe(true);
  });
});

describe('parseHeartbeat strips what the schema does not name', () => {
  it('at every level, and hands on only the schema keys', () => {
    const payload = JSON.stringify({
      ...good,
      extra: 1,
      __proto__: { polluted: true },
      health: { cpu: 0.5, gpu: 0.9 },
      subsystems: [{ name: 'a', ok: true, colour: 'red' }],
      sensors: [{ id: 's', ok: true, raw: [1, 2] }],
      patch: { patchId: 'p', state: 'installed', secret: 'x' },
    }).replace('"extra":1', '"extra":1,"__proto__":{"polluted":true}');
    const result = parseHeartbeat(payload);
    expect(result).toStrictEqual(parsePayload(heartbeatSchema, payload));
    if (!result.ok) throw new Error(result.message);
    expect(Object.keys(result.value)).toEqual(Object.keys(good));
    expect(result.value.health).toStrictEqual({ cpu: 0.5 });
    expect(result.value.subsystems).toStrictEqual([{ name: 'a', ok: true }]);
    expect(result.value.sensors).toStrictEqual([{ id: 's', ok: true }]);
    expect(result.value.patch).toStrictEqual({ patchId: 'p', state: 'installed' });
    expect(Object.getPrototypeOf(result.value)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
