import { describe, it, expect } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import {
  classifyLosses,
  customerCondition,
  flappingCondition,
  flappingVerdict,
  fleetCondition,
  gatewayCondition,
  gatewayIsFine,
  isSignatureOrHashFailure,
  livenessVerdict,
  securityConditions,
  sensorCondition,
  type DeviceView,
  type HealthSettings,
  type LivenessInput,
  type LostGateway,
} from '../../src/health/rules.js';
import { gatewayInDoubt } from '../../src/health/condition-evaluation.js';
import { newTracked, type Tracked } from '../../src/health/tracked-device.js';
import type { DeviceRecord } from '../../src/registry/types.js';

/** RULES.md defaults: missedHeartbeats 3, grace 30 s, window 120 s, minCorrelated 3, shares 0.3 / 0.5 / 0.5, flapping 4 in 600 s. */
const settings: HealthSettings = configSchema.parse({}).health;
const T = (iso: string) => Date.parse(iso);
const START = T('2026-11-26T16:00:00.000Z');

describe('livenessVerdict', () => {
  const base: LivenessInput = { lastSeen: T('2026-11-26T17:00:00.000Z'), intervalS: 30, willAt: null, watchFrom: START };
  const rows: { name: string; input: Partial<LivenessInput>; now: string; expected: unknown }[] = [
    { name: 'alive right after a heartbeat', input: {}, now: '2026-11-26T17:00:00.000Z', expected: { state: 'alive', deadline: T('2026-11-26T17:01:30.000Z') } },
    { name: 'alive 1 ms before 3 x 30 s of silence', input: {}, now: '2026-11-26T17:01:29.999Z', expected: { state: 'alive', deadline: T('2026-11-26T17:01:30.000Z') } },
    { name: 'lost exactly at 3 x 30 s of silence', input: {}, now: '2026-11-26T17:01:30.000Z', expected: { state: 'lost', reason: 'silence', since: T('2026-11-26T17:01:30.000Z') } },
    { name: 'uses the announced interval (60 s -> 180 s)', input: { intervalS: 60 }, now: '2026-11-26T17:02:59.999Z', expected: { state: 'alive', deadline: T('2026-11-26T17:03:00.000Z') } },
    { name: 'never heard from is unknown, never lost', input: { lastSeen: null, intervalS: null }, now: '2026-12-26T17:00:00.000Z', expected: { state: 'unknown' } },
    {
      name: 'Last Will: offline during the grace',
      input: { willAt: T('2026-11-26T17:00:10.000Z') },
      now: '2026-11-26T17:00:39.999Z',
      expected: { state: 'offline', deadline: T('2026-11-26T17:00:40.000Z') },
    },
    {
      name: 'Last Will: lost exactly at will + 30 s grace',
      input: { willAt: T('2026-11-26T17:00:10.000Z') },
      now: '2026-11-26T17:00:40.000Z',
      expected: { state: 'lost', reason: 'will', since: T('2026-11-26T17:00:40.000Z') },
    },
    {
      name: 'a heartbeat after the will cancels it (back within the grace)',
      input: { willAt: T('2026-11-26T17:00:10.000Z'), lastSeen: T('2026-11-26T17:00:20.000Z') },
      now: '2026-11-26T17:00:45.000Z',
      expected: { state: 'alive', deadline: T('2026-11-26T17:01:50.000Z') },
    },
    {
      name: 'silence deadline before the will deadline wins',
      input: { intervalS: 5, willAt: T('2026-11-26T17:00:10.000Z') },
      now: '2026-11-26T17:00:15.000Z',
      expected: { state: 'lost', reason: 'silence', since: T('2026-11-26T17:00:15.000Z') },
    },
    {
      name: 'after a restart: fresh interval from the start, not lost 1 ms before',
      input: { lastSeen: T('2026-11-26T10:00:00.000Z'), watchFrom: T('2026-11-26T17:00:00.000Z') },
      now: '2026-11-26T17:01:29.999Z',
      expected: { state: 'alive', deadline: T('2026-11-26T17:01:30.000Z') },
    },
    {
      name: 'after a restart: a still-silent device is lost at start + 3 x interval',
      input: { lastSeen: T('2026-11-26T10:00:00.000Z'), watchFrom: T('2026-11-26T17:00:00.000Z') },
      now: '2026-11-26T17:01:30.000Z',
      expected: { state: 'lost', reason: 'silence', since: T('2026-11-26T17:01:30.000Z') },
    },
  ];
  for (const row of rows) {
    it(row.name, () => {
      expect(livenessVerdict({ ...base, ...row.input }, T(row.now), settings)).toEqual(row.expected);
    });
  }

  it('missedHeartbeats and the grace come from config', () => {
    const custom = { ...settings, missedHeartbeats: 2, lastWillGraceS: 5 };
    expect(livenessVerdict(base, T('2026-11-26T17:01:00.000Z'), custom)).toMatchObject({ state: 'lost' });
    expect(livenessVerdict({ ...base, willAt: T('2026-11-26T17:00:01.000Z') }, T('2026-11-26T17:00:06.000Z'), custom)).toMatchObject({
      state: 'lost',
      reason: 'will',
    });
  });
});

function lost(ids: string[], customer: string, at: string, stepMs = 0): LostGateway[] {
  return ids.map((id, i) => ({ id, customer, lostSince: T(at) + i * stepMs }));
}

describe('major_outage (fleet share)', () => {
  const rows: { name: string; lost: LostGateway[]; fleet: number; expected: string | null }[] = [
    { name: '3 of 10 (30 %, min 3) within the window: urgent', lost: lost(['g1', 'g2', 'g3'], 'a', '2026-11-26T17:00:00Z', 1000), fleet: 10, expected: 'major_outage' },
    { name: '3 of 11 (27 %) is below the share', lost: lost(['g1', 'g2', 'g3'], 'a', '2026-11-26T17:00:00Z', 1000), fleet: 11, expected: null },
    { name: '2 of 4 (50 %) is below minCorrelated 3', lost: lost(['g1', 'g2'], 'a', '2026-11-26T17:00:00Z'), fleet: 4, expected: null },
    { name: '3 lost exactly 120 s apart are within the window', lost: lost(['g1', 'g2', 'g3'], 'a', '2026-11-26T17:00:00Z', 60_000), fleet: 10, expected: 'major_outage' },
    { name: '3 lost over 120.001 s are not correlated', lost: lost(['g1', 'g2', 'g3'], 'a', '2026-11-26T17:00:00Z', 60_000.5), fleet: 10, expected: null },
  ];
  for (const row of rows) {
    it(row.name, () => {
      const r = fleetCondition(row.lost, row.fleet, settings);
      expect(r?.kind ?? null).toBe(row.expected);
      if (r) {
        expect(r).toMatchObject({ subject: 'fleet', severity: 'urgent', classification: 'problem' });
        expect(r.covers).toEqual(row.lost.map((g) => g.id).sort());
      }
    });
  }

  it('an old unrelated loss is not covered by a later outage', () => {
    const old = { id: 'g0', customer: 'a', lostSince: T('2026-11-20T00:00:00Z') };
    const r = fleetCondition([old, ...lost(['g1', 'g2', 'g3'], 'b', '2026-11-26T17:00:00Z')], 10, settings);
    expect(r?.covers).toEqual(['g1', 'g2', 'g3']);
  });
});

describe('cloud_loss_complete / cloud_loss_partial (per customer)', () => {
  const rows: { name: string; lost: LostGateway[]; total: number; expected: { kind: string; severity: string } | null }[] = [
    { name: 'both gateways of a 2-gateway customer: complete, high', lost: lost(['g1', 'g2'], 'acme', '2026-11-26T17:00:00Z', 5000), total: 2, expected: { kind: 'cloud_loss_complete', severity: 'high' } },
    { name: 'the only gateway of a 1-gateway customer: no customer ticket', lost: lost(['g1'], 'acme', '2026-11-26T17:00:00Z'), total: 1, expected: null },
    { name: 'all gateways but spread beyond the window: not complete', lost: lost(['g1', 'g2'], 'acme', '2026-11-26T17:00:00Z', 121_000), total: 2, expected: null },
    { name: '3 of 6 (50 %, min 3): partial, medium', lost: lost(['g1', 'g2', 'g3'], 'acme', '2026-11-26T17:00:00Z'), total: 6, expected: { kind: 'cloud_loss_partial', severity: 'medium' } },
    { name: '3 of 7 (43 %) is below the share', lost: lost(['g1', 'g2', 'g3'], 'acme', '2026-11-26T17:00:00Z'), total: 7, expected: null },
    { name: '2 of 4 (50 %) is below minCorrelated', lost: lost(['g1', 'g2'], 'acme', '2026-11-26T17:00:00Z'), total: 4, expected: null },
    { name: '3 of 3: complete wins over partial', lost: lost(['g1', 'g2', 'g3'], 'acme', '2026-11-26T17:00:00Z'), total: 3, expected: { kind: 'cloud_loss_complete', severity: 'high' } },
  ];
  for (const row of rows) {
    it(row.name, () => {
      const r = customerCondition('acme', row.lost, row.total, settings);
      if (!row.expected) return expect(r).toBeNull();
      expect(r).toMatchObject({ ...row.expected, subject: 'customer:acme', classification: 'problem' });
      expect(r!.covers).toEqual(row.lost.map((g) => g.id).sort());
    });
  }

  it('classifyLosses gives the fleet and every affected customer', () => {
    const input = {
      lost: [...lost(['a1', 'a2'], 'a', '2026-11-26T17:00:00Z'), ...lost(['b1'], 'b', '2026-11-26T17:00:30Z')],
      fleetGateways: 10,
      customerGateways: new Map([
        ['a', 2],
        ['b', 3],
      ]),
    };
    const kinds = classifyLosses(input, settings).map((r) => `${r.kind}:${r.subject}`);
    expect(kinds).toEqual(['major_outage:fleet', 'cloud_loss_complete:customer:a']);
  });
});

const dv = (id: string, state: DeviceView['state'], faults: DeviceView['faults'] = []): DeviceView => ({ id, state, faults });

describe('gateway_loss / gateway_partial', () => {
  const sensors4 = (lostCount: number) => ['s1', 's2', 's3', 's4'].map((id, i) => dv(id, i < lostCount ? 'lost' : 'online'));
  const rows: { name: string; gw: DeviceView; sensors: DeviceView[]; expected: { kind: string; severity: string; covers: string[] } | null }[] = [
    { name: 'lost gateway: gateway_loss medium covering all its sensors', gw: { ...dv('gw', 'lost'), lostReason: 'will' }, sensors: sensors4(0), expected: { kind: 'gateway_loss', severity: 'medium', covers: ['s1', 's2', 's3', 's4'] } },
    { name: 'healthy gateway: nothing', gw: dv('gw', 'online'), sensors: sensors4(0), expected: null },
    { name: 'subsystem ok:false: gateway_partial low', gw: dv('gw', 'online', [{ source: 'subsystem:uplink', detail: 'lte down' }]), sensors: sensors4(0), expected: { kind: 'gateway_partial', severity: 'low', covers: [] } },
    { name: '2 of 4 sensors lost (50 %, min 2): gateway_partial', gw: dv('gw', 'online'), sensors: sensors4(2), expected: { kind: 'gateway_partial', severity: 'low', covers: ['s1', 's2'] } },
    { name: '1 of 4 sensors lost: below the share and the minimum', gw: dv('gw', 'online'), sensors: sensors4(1), expected: null },
    { name: '1 of 2 sensors lost (50 %) is below minSensorsLost 2', gw: dv('gw', 'online'), sensors: [dv('s1', 'lost'), dv('s2', 'online')], expected: null },
    { name: '2 of 5 sensors lost (40 %) is below the share', gw: dv('gw', 'online'), sensors: [...sensors4(2), dv('s5', 'online')], expected: null },
    { name: 'gateway in its will grace still reports partial', gw: dv('gw', 'offline', [{ source: 'subsystem:disk', detail: '' }]), sensors: [], expected: { kind: 'gateway_partial', severity: 'low', covers: [] } },
    { name: 'restarting gateway (installing): nothing', gw: dv('gw', 'restarting'), sensors: sensors4(4), expected: null },
    { name: 'unknown gateway: nothing', gw: dv('gw', 'unknown'), sensors: sensors4(0), expected: null },
  ];
  for (const row of rows) {
    it(row.name, () => {
      const r = gatewayCondition(row.gw, row.sensors, settings);
      if (!row.expected) return expect(r).toBeNull();
      expect(r).toMatchObject({ kind: row.expected.kind, severity: row.expected.severity, subject: 'gw', classification: 'problem' });
      expect(r!.covers).toEqual(row.expected.covers);
    });
  }
});

describe('sensor_issue and inhibition', () => {
  const rows: { name: string; sensor: DeviceView; gatewayFine: boolean; expected: boolean }[] = [
    { name: 'lost sensor, gateway fine: sensor_issue', sensor: dv('s1', 'lost'), gatewayFine: true, expected: true },
    { name: 'sensor reported ok:false by its gateway: sensor_issue', sensor: dv('s1', 'online', [{ source: 'gateway-report', detail: 'no reading' }]), gatewayFine: true, expected: true },
    { name: 'sensor own subsystem ok:false: sensor_issue', sensor: dv('s1', 'online', [{ source: 'subsystem:probe', detail: 'stuck' }]), gatewayFine: true, expected: true },
    { name: 'healthy sensor: nothing', sensor: dv('s1', 'online'), gatewayFine: true, expected: false },
    { name: 'lost sensor behind a gateway that is not fine: nothing (listed on the gateway ticket)', sensor: dv('s1', 'lost'), gatewayFine: false, expected: false },
    { name: 'unknown sensor: nothing', sensor: dv('s1', 'unknown'), gatewayFine: true, expected: false },
  ];
  for (const row of rows) {
    it(row.name, () => {
      const r = sensorCondition(row.sensor, row.gatewayFine);
      expect(r !== null).toBe(row.expected);
      if (r) expect(r).toMatchObject({ kind: 'sensor_issue', severity: 'low', subject: 's1', classification: 'problem' });
    });
  }

  const fine: { name: string; gw: Parameters<typeof gatewayIsFine>[0]; expected: boolean }[] = [
    { name: 'no gateway', gw: null, expected: true },
    { name: 'online, no condition, no ticket', gw: { state: 'online', hasCondition: false, ticketOpen: false }, expected: true },
    { name: 'lost', gw: { state: 'lost', hasCondition: true, ticketOpen: true }, expected: false },
    { name: 'restarting', gw: { state: 'restarting', hasCondition: false, ticketOpen: false }, expected: false },
    { name: 'partial', gw: { state: 'online', hasCondition: true, ticketOpen: true }, expected: false },
    { name: 'condition cleared but ticket still open (inhibition until it resolves)', gw: { state: 'online', hasCondition: false, ticketOpen: true }, expected: false },
  ];
  for (const row of fine) it(`gatewayIsFine: ${row.name}`, () => expect(gatewayIsFine(row.gw)).toBe(row.expected));
});

describe('flapping', () => {
  const at = (...isos: string[]) => isos.map(T);
  const rows: { name: string; changes: number[]; now: string; expected: boolean }[] = [
    { name: '3 changes in 10 min: not flapping', changes: at('2026-11-26T17:00:00Z', '2026-11-26T17:01:00Z', '2026-11-26T17:02:00Z'), now: '2026-11-26T17:03:00Z', expected: false },
    {
      name: '4 changes in 10 min: flapping',
      changes: at('2026-11-26T17:00:00Z', '2026-11-26T17:01:00Z', '2026-11-26T17:02:00Z', '2026-11-26T17:03:00Z'),
      now: '2026-11-26T17:03:00Z',
      expected: true,
    },
    {
      name: '4 changes, the first one exactly 600 s ago has left the window',
      changes: at('2026-11-26T17:00:00Z', '2026-11-26T17:01:00Z', '2026-11-26T17:02:00Z', '2026-11-26T17:03:00Z'),
      now: '2026-11-26T17:10:00Z',
      expected: false,
    },
    {
      name: '4 changes, the first one 599.999 s ago still counts',
      changes: at('2026-11-26T17:00:00Z', '2026-11-26T17:01:00Z', '2026-11-26T17:02:00Z', '2026-11-26T17:03:00Z'),
      now: '2026-11-26T17:09:59.999Z',
      expected: true,
    },
  ];
  for (const row of rows) {
    it(row.name, () => {
      const v = flappingVerdict(row.changes, T(row.now), settings);
      expect(v.flapping).toBe(row.expected);
      const r = flappingCondition('gw', v, settings);
      if (row.expected) expect(r).toMatchObject({ kind: 'flapping', subject: 'gw', severity: 'low', classification: 'problem' });
      else expect(r).toBeNull();
    });
  }

  it('tells when the verdict must be re-checked (oldest counted change + window)', () => {
    const v = flappingVerdict(at('2026-11-26T17:00:00Z', '2026-11-26T17:05:00Z'), T('2026-11-26T17:06:00Z'), settings);
    expect(v.recheckAt).toBe(T('2026-11-26T17:10:00Z'));
  });
});

describe('security_incident', () => {
  const empty = { authFailures: 0, aclViolations: new Map<string, number>(), patchFailures: new Map<string, number>(), integrityMismatchDevices: [] as string[] };
  const rows: { name: string; window: Partial<typeof empty>; expected: string[] }[] = [
    { name: '20 failed CONNECTs in the window: fleet incident', window: { authFailures: 20 }, expected: ['fleet'] },
    { name: '19 failed CONNECTs: nothing', window: { authFailures: 19 }, expected: [] },
    { name: '5 ACL violations by one device: incident on that device', window: { aclViolations: new Map([['gw-1', 5]]) }, expected: ['gw-1'] },
    { name: '4 ACL violations by one device: nothing', window: { aclViolations: new Map([['gw-1', 4]]) }, expected: [] },
    { name: '5 unattributed ACL violations: fleet incident', window: { aclViolations: new Map([['', 5]]) }, expected: ['fleet'] },
    { name: '1 patch signature failure reported by a device: incident on that device', window: { patchFailures: new Map([['gw-2', 1]]) }, expected: ['gw-2'] },
    { name: 'integrity mismatch on 3 devices at once: fleet incident', window: { integrityMismatchDevices: ['a', 'b', 'c'] }, expected: ['fleet'] },
    { name: 'integrity mismatch on 2 devices: nothing', window: { integrityMismatchDevices: ['a', 'b'] }, expected: [] },
    { name: 'several fleet signals make one fleet report', window: { authFailures: 25, integrityMismatchDevices: ['a', 'b', 'c'] }, expected: ['fleet'] },
  ];
  for (const row of rows) {
    it(row.name, () => {
      const reports = securityConditions({ ...empty, ...row.window }, settings);
      expect(reports.map((r) => r.subject)).toEqual(row.expected);
      for (const r of reports) expect(r).toMatchObject({ kind: 'security_incident', severity: 'urgent', classification: 'problem' });
    });
  }

  it('integrity incident covers the mismatching devices', () => {
    const [r] = securityConditions({ ...empty, integrityMismatchDevices: ['c', 'a', 'b'] }, settings);
    expect(r!.covers).toEqual(['a', 'b', 'c']);
  });

  const details: [string | undefined, boolean][] = [
    ['signature verification failed', true],
    ['artifact sha256 mismatch', true],
    ['hash mismatch', true],
    ['manifest expired', false],
    ['version not greater than current', false],
    [undefined, false],
  ];
  for (const [detail, expected] of details) {
    it(`a rejected patch with detail ${JSON.stringify(detail)} ${expected ? 'is' : 'is not'} a signature/hash failure`, () => {
      expect(isSignatureOrHashFailure(detail)).toBe(expected);
    });
  }
});

describe('gatewayInDoubt (issue 8 fault 6: a lost sensor waits for its gateway when the gateway has gone quiet too)', () => {
  const tracked = (type: 'gateway' | 'sensor', state: Tracked['state'], ownLastSeen: number | null, reportedAt: number | null = null): Tracked => ({
    ...newTracked({ id: type === 'gateway' ? 'gw' : 'sn', type, parent: type === 'sensor' ? 'gw' : null, customer: 'c', revokedAt: null } as DeviceRecord, 0),
    state,
    ownLastSeen,
    reportedAt,
  });
  it.each([
    ['gateway online, not heard since the sensor went quiet', 'online', 100, 200, true],
    ['gateway online, heard at the same instant as the sensor', 'online', 200, 200, true],
    ['gateway online, heard after the sensor went quiet: the sensor died alone', 'online', 300, 200, false],
    ['gateway lost: its ticket covers the sensor', 'lost', 100, 200, false],
    ['gateway offline: held by its Last Will grace instead', 'offline', 100, 200, false],
    ['gateway never heard from: holds nothing', 'unknown', null, 200, false],
  ] as const)('%s -> %s', (_what, state, gatewaySeen, sensorSeen, held) => {
    expect(gatewayInDoubt(tracked('gateway', state, gatewaySeen), tracked('sensor', 'lost', sensorSeen))).toBe(held);
  });
  it('a sensor last vouched for by its gateway listing it counts from that listing', () => {
    expect(gatewayInDoubt(tracked('gateway', 'online', 150), tracked('sensor', 'lost', 100, 150))).toBe(true);
    expect(gatewayInDoubt(tracked('gateway', 'online', 160), tracked('sensor', 'lost', 100, 150))).toBe(false);
  });
});
