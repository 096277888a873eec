import { describe, it, expect } from 'vitest';
import { band, compareQueue, priority, type QueueTicket } from '../../src/tickets/priority.js';
import { validateConfig } from '../../src/config/load.js';
import { SEVERITIES } from '../../src/tickets/types.js';

const weights = validateConfig({}).tickets;
const HOUR = 3_600_000;
const now = new Date('2026-11-26T12:00:00Z').getTime();
let nextId = 1;
const ticket = (over: Partial<QueueTicket> = {}): QueueTicket => ({
  id: nextId++,
  severity: 'medium',
  classification: 'problem',
  tier: 'xcare',
  eligible: true,
  waitingSince: now,
  ...over,
});
const sorted = (list: QueueTicket[]) => [...list].sort((a, b) => compareQueue(a, b, now, weights)).map((t) => t.id);

describe('priority score = severityWeight*tierWeight + classWeight + min(agingPerHour*hours, agingCap) (defaults)', () => {
  it.each([
    { t: { severity: 'urgent', tier: 'xcare' }, score: 1025 },
    { t: { severity: 'high', tier: 'xcare' }, score: 425 },
    { t: { severity: 'medium', tier: 'xcare' }, score: 175 },
    { t: { severity: 'low', tier: 'xcare' }, score: 75 },
    { t: { severity: 'urgent', tier: 'xcare_pro' }, score: 1275 },
    { t: { severity: 'low', tier: 'xcare_pro', classification: 'consultative' }, score: 62.5 },
    { t: { severity: 'low', tier: 'none', eligible: false }, score: 75 },
    { t: { severity: 'low', waitingSince: now - 2 * HOUR }, score: 85 },
    { t: { severity: 'low', waitingSince: now - 40 * HOUR }, score: 275 },
    { t: { severity: 'low', waitingSince: now - 400 * HOUR }, score: 275 },
    { t: { severity: 'low', waitingSince: now + HOUR }, score: 75 },
  ] as { t: Partial<QueueTicket>; score: number }[])('$t -> $score', ({ t, score }) => {
    expect(priority(ticket(t), now, weights).score).toBeCloseTo(score, 9);
  });
});

describe('band: eligible paid devices first, discretionary after all of them', () => {
  it.each([
    [{ tier: 'xcare', eligible: true }, 'paid'],
    [{ tier: 'xcare_pro', eligible: true }, 'paid'],
    [{ tier: 'xcare', eligible: false }, 'discretionary'],
    [{ tier: 'none', eligible: false }, 'discretionary'],
    [{ tier: 'none', eligible: true }, 'discretionary'],
  ] as const)('%j -> %s', (t, expected) => {
    expect(band(t)).toBe(expected);
  });
});

describe('queue-order properties (RULES.md "Support queue order")', () => {
  it('a paid ticket always precedes a discretionary one: paid low fresh vs discretionary urgent waiting the aging cap', () => {
    const paidLow = ticket({ severity: 'low', classification: 'consultative', tier: 'xcare' });
    const freeUrgent = ticket({ severity: 'urgent', tier: 'none', eligible: false, waitingSince: now - 1000 * HOUR });
    const ineligiblePro = ticket({ severity: 'urgent', tier: 'xcare_pro', eligible: false, waitingSince: now - 1000 * HOUR });
    expect(sorted([freeUrgent, ineligiblePro, paidLow])[0]).toBe(paidLow.id);
  });

  it('paid before discretionary for every severity pair', () => {
    for (const ps of SEVERITIES) {
      for (const ds of SEVERITIES) {
        const paid = ticket({ severity: ps, classification: 'consultative' });
        const disc = ticket({ severity: ds, tier: 'none', eligible: false, waitingSince: now - 500 * HOUR });
        expect(sorted([disc, paid])).toEqual([paid.id, disc.id]);
      }
    }
  });

  it('at equal wait: urgent > high > medium > low', () => {
    const [u, h, m, l] = SEVERITIES.map((severity) => ticket({ severity }));
    expect(sorted([l!, m!, u!, h!])).toEqual([u!.id, h!.id, m!.id, l!.id]);
  });

  it('at equal wait and severity: xcare_pro > xcare', () => {
    for (const severity of SEVERITIES) {
      const x = ticket({ severity, tier: 'xcare' });
      const pro = ticket({ severity, tier: 'xcare_pro' });
      expect(sorted([x, pro])).toEqual([pro.id, x.id]);
    }
  });

  it('otherwise equal: problem > consultative', () => {
    const c = ticket({ classification: 'consultative' });
    const p = ticket({ classification: 'problem' });
    expect(sorted([c, p])).toEqual([p.id, c.id]);
  });

  it('equal score: oldest first', () => {
    // Both past the aging cap: same score, the one waiting longer goes first.
    const newer = ticket({ severity: 'low', waitingSince: now - 50 * HOUR });
    const older = ticket({ severity: 'low', waitingSince: now - 60 * HOUR });
    expect(sorted([newer, older])).toEqual([older.id, newer.id]);
  });

  it('a ticket priority never falls while it waits (monotonic over 0..100 h, every 59 s)', () => {
    const falls: string[] = [];
    for (const severity of SEVERITIES) {
      for (const tier of ['none', 'xcare', 'xcare_pro'] as const) {
        const t = ticket({ severity, tier, eligible: tier !== 'none', waitingSince: 0 });
        let previous = priority(t, 0, weights);
        for (let ms = 0; ms <= 100 * HOUR; ms += 59_000) {
          const p = priority(t, ms, weights);
          if (p.band !== previous.band || p.score < previous.score) falls.push(`${severity}/${tier} at ${ms} ms`);
          previous = p;
        }
      }
    }
    expect(falls).toEqual([]);
  });

  it('aging stops at the cap (40 h with the defaults)', () => {
    const t = ticket({ severity: 'low', waitingSince: 0 });
    expect(priority(t, 40 * HOUR, weights).score).toBe(275);
    expect(priority(t, 41 * HOUR, weights).score).toBe(275);
    expect(priority(t, 39 * HOUR, weights).score).toBeLessThan(275);
  });

  it('a long-waiting low ticket can pass a fresh medium one in the same band (aging works)', () => {
    const oldLow = ticket({ severity: 'low', waitingSince: now - 30 * HOUR });
    const freshMedium = ticket({ severity: 'medium' });
    expect(sorted([freshMedium, oldLow])).toEqual([oldLow.id, freshMedium.id]);
  });
});
