import { describe, it, expect } from 'vitest';
import {
  daysCovered,
  daysInFiscalYear,
  effectiveTier,
  fiscalYearEnd,
  proRataQuote,
  renewal,
  subscriptionState,
} from '../../src/subscriptions/fiscal-year.js';
import { ValidationError } from '../../src/errors.js';

const prices = { xcare: 120, xcare_pro: 300 };
const at = (iso: string) => new Date(iso).getTime();

describe('fiscalYearEnd (RULES.md "Subscriptions": every subscription expires on June 30)', () => {
  it.each([
    ['2026-01-01', '2026-06-30', 'a start in January ends that June 30'],
    ['2026-06-29', '2026-06-30', 'the day before June 30'],
    ['2026-06-30', '2026-06-30', 'a start on June 30 ends the same day'],
    ['2026-07-01', '2027-06-30', 'a start on July 1 ends the next June 30'],
    ['2026-11-26', '2027-06-30', 'a mid-year start'],
    ['2026-12-31', '2027-06-30', 'December 31'],
    ['2028-02-29', '2028-06-30', 'a leap day'],
  ])('%s -> %s (%s)', (start, end) => {
    expect(fiscalYearEnd(start)).toBe(end);
  });

  it('rejects Feb 29 of a non-leap year', () => {
    expect(() => fiscalYearEnd('2027-02-29')).toThrow(ValidationError);
  });
  it('rejects month 13', () => {
    expect(() => fiscalYearEnd('2026-13-01')).toThrow(/not a calendar date/);
  });
  it('rejects a two-digit year', () => {
    expect(() => fiscalYearEnd('26-01-01')).toThrow(/YYYY-MM-DD/);
  });
  it('rejects a timestamp instead of a date', () => {
    expect(() => fiscalYearEnd('2026-01-01T00:00:00Z')).toThrow(/YYYY-MM-DD/);
  });
  it('rejects an empty string', () => {
    expect(() => fiscalYearEnd('')).toThrow(ValidationError);
  });
});

describe('daysInFiscalYear (July 1 - June 30, 365 or 366 days)', () => {
  it.each([
    ['2026-07-01', 365, 'FY 2026-07..2027-06 has no Feb 29'],
    ['2027-06-30', 365, 'the last day of that fiscal year'],
    ['2027-07-01', 366, 'FY 2027-07-01..2028-06-30 holds Feb 29 2028'],
    ['2028-02-29', 366, 'the leap day itself'],
    ['2028-06-30', 366, 'last day of the leap fiscal year'],
    ['2028-07-01', 365, 'the fiscal year after'],
    ['2024-01-15', 366, 'FY 2023-07..2024-06 holds Feb 29 2024'],
    ['2100-01-01', 365, '2100 is not a leap year'],
  ])('%s -> %i days (%s)', (date, days) => {
    expect(daysInFiscalYear(date)).toBe(days);
  });
});

describe('daysCovered (start day through June 30 inclusive)', () => {
  it.each([
    ['2026-06-30', 1],
    ['2026-07-01', 365],
    ['2027-07-01', 366],
    ['2028-02-29', 123],
    ['2026-11-27', 216],
  ])('%s covers %i days', (start, days) => {
    expect(daysCovered(start)).toBe(days);
  });
});

describe('proRataQuote: annualPrice * daysCovered / daysInFiscalYear, rounded to cents at the end', () => {
  it.each([
    { tier: 'xcare', start: '2026-07-01', devices: 1, amount: 120, why: 'a full fiscal year costs the annual price' },
    { tier: 'xcare', start: '2027-07-01', devices: 1, amount: 120, why: 'a full leap fiscal year also costs the annual price' },
    { tier: 'xcare', start: '2026-06-30', devices: 1, amount: 0.33, why: 'one day of 365: 120/365' },
    { tier: 'xcare_pro', start: '2028-02-29', devices: 1, amount: 100.82, why: '300 * 123 / 366' },
    { tier: 'xcare', start: '2026-11-27', devices: 3, amount: 213.04, why: '120*3*216/365 = 213.041 (rounding per device would give 213.03)' },
    { tier: 'xcare_pro', start: '2027-01-01', devices: 10, amount: 1487.67, why: '300*10*181/365' },
  ])('$tier from $start x$devices = $amount ($why)', ({ tier, start, devices, amount }) => {
    const q = proRataQuote({ tier, start, devices, prices });
    expect(q.amount).toBe(amount);
    expect(q.end).toBe(fiscalYearEnd(start));
  });

  it('defaults to one device', () => {
    expect(proRataQuote({ tier: 'xcare', start: '2026-07-01', prices }).devices).toBe(1);
  });
  it('rejects tier none (nothing to bill)', () => {
    expect(() => proRataQuote({ tier: 'none', start: '2026-07-01', prices })).toThrow(/tier/);
  });
  it('rejects an unknown tier', () => {
    expect(() => proRataQuote({ tier: 'gold', start: '2026-07-01', prices })).toThrow(/tier/);
  });
  it('rejects zero devices', () => {
    expect(() => proRataQuote({ tier: 'xcare', start: '2026-07-01', devices: 0, prices })).toThrow(/devices/);
  });
  it('rejects a fractional device count', () => {
    expect(() => proRataQuote({ tier: 'xcare', start: '2026-07-01', devices: 1.5, prices })).toThrow(/devices/);
  });
  it('rejects an invalid start date', () => {
    expect(() => proRataQuote({ tier: 'xcare', start: '2026-02-30', prices })).toThrow(/calendar date/);
  });
});

describe('subscriptionState and effectiveTier against the daemon clock (UTC)', () => {
  const device = { tier: 'xcare' as const, subscriptionEnd: '2026-06-30' };
  it.each([
    ['2026-05-31T23:59:59.999Z', 'active', 'xcare', 'one ms more than 30 days before expiry'],
    ['2026-06-01T00:00:00.000Z', 'expiring', 'xcare', 'exactly 30 days left'],
    ['2026-06-30T23:59:00.000Z', 'expiring', 'xcare', 'June 30 23:59 is still covered'],
    ['2026-06-30T23:59:59.999Z', 'expiring', 'xcare', 'the last millisecond of June 30'],
    ['2026-07-01T00:00:00.000Z', 'expired', 'none', 'July 1 00:00: expired, treated as none'],
    ['2027-01-01T00:00:00.000Z', 'expired', 'none', 'long expired'],
  ])('%s -> %s, tier %s (%s)', (now, state, tier) => {
    expect(subscriptionState(device, at(now), 30)).toBe(state);
    expect(effectiveTier(device, at(now))).toBe(tier);
  });

  it('tier none is state none', () => {
    expect(subscriptionState({ tier: 'none', subscriptionEnd: null }, at('2026-01-01T00:00:00Z'), 30)).toBe('none');
    expect(effectiveTier({ tier: 'none', subscriptionEnd: null }, at('2026-01-01T00:00:00Z'))).toBe('none');
  });
});

describe('renewal extends to the next June 30', () => {
  it('a running subscription renewed on June 30 23:59 gains the next fiscal year', () => {
    const r = renewal({ tier: 'xcare', subscriptionStart: '2025-11-01', subscriptionEnd: '2026-06-30' }, at('2026-06-30T23:59:00Z'));
    expect(r).toEqual({ tier: 'xcare', subscriptionStart: '2025-11-01', subscriptionEnd: '2027-06-30', extended: true, billedFrom: '2026-07-01' });
  });
  it('a subscription renewed July 1 00:00 has lapsed and restarts that day', () => {
    const r = renewal({ tier: 'xcare', subscriptionStart: '2025-11-01', subscriptionEnd: '2026-06-30' }, at('2026-07-01T00:00:00Z'));
    expect(r).toEqual({ tier: 'xcare', subscriptionStart: '2026-07-01', subscriptionEnd: '2027-06-30', extended: false, billedFrom: '2026-07-01' });
  });
  it('renewing early in the year extends by one fiscal year from the current end', () => {
    const r = renewal({ tier: 'xcare_pro', subscriptionStart: '2026-07-01', subscriptionEnd: '2027-06-30' }, at('2026-11-26T12:00:00Z'));
    expect(r.subscriptionEnd).toBe('2028-06-30');
    expect(r.billedFrom).toBe('2027-07-01');
  });
  it('a tier none device renewed with a tier starts today', () => {
    const r = renewal({ tier: 'none', subscriptionStart: null, subscriptionEnd: null }, at('2027-03-15T08:00:00Z'), 'xcare');
    expect(r).toMatchObject({ tier: 'xcare', subscriptionStart: '2027-03-15', subscriptionEnd: '2027-06-30', extended: false });
  });
  it('a tier none device cannot renew without a tier', () => {
    expect(() => renewal({ tier: 'none', subscriptionStart: null, subscriptionEnd: null }, at('2027-03-15T08:00:00Z'))).toThrow(/tier/);
  });
  it('a renewal can change the tier', () => {
    expect(renewal({ tier: 'xcare', subscriptionStart: '2026-07-01', subscriptionEnd: '2027-06-30' }, at('2027-06-01T00:00:00Z'), 'xcare_pro').tier).toBe('xcare_pro');
  });
});
