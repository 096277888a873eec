import { describe, it, expect } from 'vitest';
import { assignWaves, selectTargets, staticMismatch, waveSizes } from '../../src/rollouts/plan.js';
import { jitterOffset } from '../../src/rollouts/jitter.js';
import { groupOf, pickWithinCaps } from '../../src/rollouts/caps.js';
import type { DeviceRecord } from '../../src/registry/types.js';
import type { PublishedPatch } from '../../src/rollouts/ports.js';
import type { TargetSpec, WaveSize } from '../../src/rollouts/rollout-spec.js';

const c = (count: number): WaveSize => ({ count });
const p = (percent: number): WaveSize => ({ percent });

describe('waveSizes', () => {
  const rows: [string, number, WaveSize[], number[]][] = [
    ['canary 5, 10 % of the rest, the rest', 100, [c(5), p(10), p(100)], [5, 10, 85]],
    ['percent rounds up so a wave is never 0 while devices remain', 7, [c(5), p(10), p(100)], [5, 1, 1]],
    ['fewer devices than the canary: later waves empty', 3, [c(5), p(10), p(100)], [3, 0, 0]],
    ['no devices', 0, [c(5), p(100)], [0, 0]],
    ['single wave takes everything', 42, [p(100)], [42]],
    ['last wave takes the remainder even when written as a count', 50, [c(5), c(10)], [5, 45]],
    ['last wave takes the remainder even when written as a percent below 100', 50, [p(10), p(50)], [5, 45]],
    ['percent of the remaining, not of the total', 1000, [p(10), p(10), p(100)], [100, 90, 810]],
    ['exact percentage stays exact', 200, [p(25), p(100)], [50, 150]],
    ['count larger than what remains is capped', 8, [c(5), c(5), p(100)], [5, 3, 0]],
  ];
  for (const [name, n, waves, expected] of rows) {
    it(name, () => {
      const sizes = waveSizes(n, waves);
      expect(sizes).toEqual(expected);
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(n);
    });
  }
});

const dev = (id: string, over: Partial<DeviceRecord> = {}): DeviceRecord => ({
  id, type: 'gateway', parent: null, customer: 'acme', installer: 'minnovation', tier: 'xcare',
  subscriptionStart: '2026-01-01', subscriptionEnd: '2027-06-30', tags: [], createdAt: 0, revokedAt: null, ...over,
});
const patch: PublishedPatch = { id: 'gw-2.3.2', version: '2.3.2', types: ['gateway'], appliesTo: '>=2.0.0 <2.3.2', expiresAt: '2027-02-24T10:00:00Z' };
const target = (over: Partial<TargetSpec> = {}): TargetSpec => ({ types: [], customers: [], tags: [], software: null, ...over });

describe('selectTargets', () => {
  const versions: Record<string, string> = { 'gw-1': '2.3.1', 'gw-2': '2.3.1', 'gw-3': '1.9.0', 'gw-4': '2.3.2', 'gw-5': '2.1.0', 'gw-6': '2.3.1', 'sen-1': '2.3.1', 'gw-7': '2.3.1' };
  const ports = {
    eligibility: (id: string) => (id === 'gw-6' ? { eligible: false, reasons: ['no subscription (tier none)'] } : { eligible: true, reasons: [] }),
    softwareVersion: (id: string) => versions[id],
  };
  const fleet = [
    dev('gw-1', { tags: ['eu', 'pilot'] }), dev('gw-2', { customer: 'globex' }), dev('gw-3'), dev('gw-4'), dev('gw-5', { tags: ['eu'] }),
    dev('gw-6'), dev('sen-1', { type: 'sensor', parent: 'gw-1' }), dev('gw-7', { revokedAt: 5 }), dev('gw-8'),
  ];
  const reasonOf = (sel: ReturnType<typeof selectTargets>, id: string) => sel.excluded.find((e) => e.deviceId === id)?.reason;
  const now = Date.parse('2026-11-26T12:00:00Z');

  it('includes eligible gateways in range and names every exclusion', () => {
    const sel = selectTargets(fleet, target(), patch, ports, now);
    expect(sel.included.map((d) => d.id).sort()).toEqual(['gw-1', 'gw-2', 'gw-5']);
    expect(reasonOf(sel, 'gw-3')).toMatch(/outside patch range/);
    expect(reasonOf(sel, 'gw-4')).toMatch(/already runs 2.3.2/);
    expect(reasonOf(sel, 'gw-6')).toMatch(/ineligible: no subscription/);
    expect(reasonOf(sel, 'sen-1')).toMatch(/patch does not apply to type sensor/);
    expect(reasonOf(sel, 'gw-7')).toBe('revoked');
    expect(reasonOf(sel, 'gw-8')).toMatch(/software version unknown/);
  });
  it('filters by customer', () => {
    const sel = selectTargets(fleet, target({ customers: ['globex'] }), patch, ports, now);
    expect(sel.included.map((d) => d.id)).toEqual(['gw-2']);
    expect(reasonOf(sel, 'gw-1')).toMatch(/customer acme not in target/);
  });
  it('filters by tags (all must be present)', () => {
    const sel = selectTargets(fleet, target({ tags: ['eu', 'pilot'] }), patch, ports, now);
    expect(sel.included.map((d) => d.id)).toEqual(['gw-1']);
    expect(reasonOf(sel, 'gw-5')).toMatch(/missing tag pilot/);
  });
  it('filters by the semver range of the current software', () => {
    const sel = selectTargets(fleet, target({ software: '>=2.3.0' }), patch, ports, now);
    expect(sel.included.map((d) => d.id).sort()).toEqual(['gw-1', 'gw-2']);
    expect(reasonOf(sel, 'gw-5')).toMatch(/outside target >=2.3.0/);
  });
  it('filters by type', () => {
    const sel = selectTargets(fleet, target({ types: ['sensor'] }), patch, ports, now);
    expect(sel.included).toEqual([]);
    expect(reasonOf(sel, 'gw-1')).toMatch(/type gateway not in target/);
  });
  it('leaves out busy devices with the reason given', () => {
    const sel = selectTargets(fleet, target(), patch, ports, now, new Map([['gw-1', 'in active rollout r-20261126-1']]));
    expect(reasonOf(sel, 'gw-1')).toBe('in active rollout r-20261126-1');
  });
  it('staticMismatch accepts a matching device before it has heartbeated', () => {
    expect(staticMismatch(dev('gw-9'), target({ types: ['gateway'] }), patch)).toBeUndefined();
  });
});

describe('assignWaves', () => {
  it('puts connected devices first and is stable for a rollout id', () => {
    const ids = Array.from({ length: 20 }, (_, i) => `gw-${i}`);
    const online = new Set(['gw-3', 'gw-17', 'gw-9']);
    const a = assignWaves(ids, [c(3), p(100)], 'r-20261126-1', (id) => online.has(id));
    expect(new Set(a[0])).toEqual(online);
    expect(a[1]).toHaveLength(17);
    expect(assignWaves(ids, [c(3), p(100)], 'r-20261126-1', (id) => online.has(id))).toEqual(a);
  });
});

describe('jitterOffset', () => {
  const rows: [string, number][] = [['no spread', 0], ['negative spread', -5], ['1 ms', 1], ['10 minutes', 600_000], ['a day', 86_400_000]];
  for (const [name, spread] of rows) {
    it(`stays within [0, spread) for ${name}`, () => {
      for (let i = 0; i < 500; i++) {
        const j = jitterOffset(`dev-${i}`, 'r-20261126-1', spread);
        expect(j).toBeGreaterThanOrEqual(0);
        expect(j).toBeLessThan(Math.max(1, spread));
        expect(Number.isInteger(j)).toBe(true);
      }
    });
  }
  it('is deterministic and differs between rollouts', () => {
    expect(jitterOffset('gw-1', 'r-1', 600_000)).toBe(jitterOffset('gw-1', 'r-1', 600_000));
    const a = Array.from({ length: 50 }, (_, i) => jitterOffset(`gw-${i}`, 'r-1', 600_000));
    const b = Array.from({ length: 50 }, (_, i) => jitterOffset(`gw-${i}`, 'r-2', 600_000));
    expect(a).not.toEqual(b);
  });
  it('spreads across the range', () => {
    const offsets = Array.from({ length: 1000 }, (_, i) => jitterOffset(`gw-${i}`, 'r-1', 600_000));
    expect(Math.min(...offsets)).toBeLessThan(60_000);
    expect(Math.max(...offsets)).toBeGreaterThan(540_000);
  });
});

describe('caps', () => {
  it('groups a sensor with its gateway', () => {
    expect(groupOf({ id: 'gw-1', type: 'gateway', parent: null })).toBe('gw-1');
    expect(groupOf({ id: 'sen-1', type: 'sensor', parent: 'gw-1' })).toBe('gw-1');
    expect(groupOf({ id: 'sen-2', type: 'sensor', parent: null })).toBe('sen-2');
  });
  const cand = (deviceId: string, group: string) => ({ deviceId, group });
  const rows: [string, { deviceId: string; group: string }[], number, [string, number][], number, number, string[]][] = [
    // name, candidates, fleet in flight, groups in flight, maxConcurrent, maxPerGateway, picked
    ['one per gateway group: a gateway and its sensors not together', [cand('gw-1', 'gw-1'), cand('sen-1', 'gw-1'), cand('sen-2', 'gw-1'), cand('gw-2', 'gw-2')], 0, [], 10, 1, ['gw-1', 'gw-2']],
    ['two per gateway group', [cand('gw-1', 'gw-1'), cand('sen-1', 'gw-1'), cand('sen-2', 'gw-1')], 0, [], 10, 2, ['gw-1', 'sen-1']],
    ['a group already updating takes no more', [cand('sen-1', 'gw-1'), cand('gw-2', 'gw-2')], 1, [['gw-1', 1]], 10, 1, ['gw-2']],
    ['fleet cap counts devices already in flight', [cand('gw-1', 'gw-1'), cand('gw-2', 'gw-2'), cand('gw-3', 'gw-3')], 8, [], 10, 1, ['gw-1', 'gw-2']],
    ['fleet cap reached: nothing', [cand('gw-1', 'gw-1')], 10, [], 10, 1, []],
  ];
  for (const [name, candidates, fleet, groups, maxConcurrent, maxPerGateway, picked] of rows) {
    it(name, () => {
      const res = pickWithinCaps(candidates, { fleet, groups: new Map(groups) }, { maxConcurrent, maxPerGateway });
      expect(res.picked).toEqual(picked);
      expect(res.picked.length + res.heldBack.length).toBe(candidates.length);
    });
  }
  it('asks the offer-time check only for candidates that fit the caps; a refused one takes no slot', () => {
    const asked: string[] = [];
    const res = pickWithinCaps(
      [cand('gw-1', 'gw-1'), cand('gw-2', 'gw-2'), cand('gw-3', 'gw-3'), cand('gw-4', 'gw-4')],
      { fleet: 0, groups: new Map() },
      { maxConcurrent: 2, maxPerGateway: 1 },
      (c) => {
        asked.push(c.deviceId);
        return c.deviceId !== 'gw-2';
      },
    );
    expect(res.picked).toEqual(['gw-1', 'gw-3']);
    expect(asked).toEqual(['gw-1', 'gw-2', 'gw-3']);
  });
});
