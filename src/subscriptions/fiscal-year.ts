import { ValidationError } from '../errors.js';
import { parseCalendarDate } from '../protocol/rfc3339.js';
import type { Tier } from '../protocol/names.js';
import type { DeviceRecord } from '../registry/types.js';

/**
 * The fiscal-year rules of RULES.md "Subscriptions": every subscription expires on June 30; a start on or before
 * June 30 ends that June 30, a start on July 1 or later ends the next June 30. Dates are calendar dates
 * (YYYY-MM-DD) and are judged against the daemon's clock in UTC.
 */
const DAY_MS = 86_400_000;

/** Parse a strict YYYY-MM-DD calendar date (2027-02-29 is refused) to its UTC midnight in ms. */
export function parseDate(value: string, field = 'date'): number {
  // The one strict parser (src/protocol/rfc3339.ts) decides; this names the field.
  if (!/^\d{4}-\d{2}-\d{2}$/.test(value)) throw new ValidationError(`${field}: expected a date YYYY-MM-DD, got ${JSON.stringify(value)}`);
  const ms = parseCalendarDate(value);
  if (ms === undefined) throw new ValidationError(`${field}: ${value} is not a calendar date`);
  return ms;
}

/** The UTC calendar date of an instant. */
export function utcDate(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** The June 30 a subscription starting on `startDate` ends on. */
export function fiscalYearEnd(startDate: string): string {
  const ms = parseDate(startDate, 'start');
  const d = new Date(ms);
  const year = d.getUTCMonth() <= 5 ? d.getUTCFullYear() : d.getUTCFullYear() + 1; // months 0..5 = Jan..Jun
  return `${String(year).padStart(4, '0')}-06-30`;
}

/** Days of the fiscal year (July 1 - June 30) that contains `date`: 366 when it holds a Feb 29. */
export function daysInFiscalYear(date: string): number {
  const endYear = Number(fiscalYearEnd(date).slice(0, 4));
  return Math.round((julyFirst(endYear) - julyFirst(endYear - 1)) / DAY_MS);
}

/** July 1 00:00 UTC of `year`, for every year: Date.UTC would read years 0-99 as 1900-1999. */
function julyFirst(year: number): number {
  const d = new Date(0);
  d.setUTCFullYear(year, 6, 1);
  return d.getTime();
}

/** Days from `start` through its June 30, both inclusive. */
export function daysCovered(start: string): number {
  return Math.round((parseDate(fiscalYearEnd(start)) - parseDate(start, 'start')) / DAY_MS) + 1;
}

export type PaidTier = Exclude<Tier, 'none'>;

export interface QuoteInput {
  tier: string;
  start: string;
  devices?: number;
  prices: Readonly<Record<PaidTier, number>>;
  currency?: string;
}

export interface Quote {
  tier: PaidTier;
  start: string;
  end: string;
  devices: number;
  daysCovered: number;
  daysInFiscalYear: number;
  annualPrice: number;
  /** The total for all devices, rounded to cents once, at the end. */
  amount: number;
  currency?: string;
}

/** Pro-rata price to June 30: annualPrice * daysCovered / daysInFiscalYear per device (RULES.md "Subscriptions"). */
export function proRataQuote(input: QuoteInput): Quote {
  if (input.tier !== 'xcare' && input.tier !== 'xcare_pro') {
    throw new ValidationError(`tier: expected xcare or xcare_pro, got ${JSON.stringify(input.tier)}`);
  }
  const devices = input.devices ?? 1;
  if (!Number.isInteger(devices) || devices < 1) throw new ValidationError('devices: expected a positive integer');
  const covered = daysCovered(input.start);
  const yearDays = daysInFiscalYear(input.start);
  const annualPrice = input.prices[input.tier];
  // Integer cents times days, one rounding at the end: no float drift from rounding per device or per day.
  const amountCents = Math.round((Math.round(annualPrice * 100) * devices * covered) / yearDays);
  return {
    tier: input.tier,
    start: input.start,
    end: fiscalYearEnd(input.start),
    devices,
    daysCovered: covered,
    daysInFiscalYear: yearDays,
    annualPrice,
    amount: amountCents / 100,
    ...(input.currency ? { currency: input.currency } : {}),
  };
}

export type SubscriptionState = 'active' | 'expiring' | 'expired' | 'none';

type SubscriptionFields = Pick<DeviceRecord, 'tier' | 'subscriptionEnd'>;

/** The instant a subscription stops: July 1 00:00 UTC after its June 30 (June 30 23:59:59.999 is still covered). */
export function expiresAt(subscriptionEnd: string): number {
  return parseDate(subscriptionEnd, 'subscriptionEnd') + DAY_MS;
}

export function subscriptionState(device: SubscriptionFields, now: number, expiringWithinDays: number): SubscriptionState {
  if (device.tier === 'none' || !device.subscriptionEnd) return 'none';
  const end = expiresAt(device.subscriptionEnd);
  if (now >= end) return 'expired';
  return end - now <= expiringWithinDays * DAY_MS ? 'expiring' : 'active';
}

/** The tier support is given at now: an expired subscription counts as `none` until renewed. */
export function effectiveTier(device: SubscriptionFields, now: number): Tier {
  if (device.tier === 'none' || !device.subscriptionEnd) return 'none';
  return now >= expiresAt(device.subscriptionEnd) ? 'none' : device.tier;
}

export interface Renewal {
  tier: PaidTier;
  subscriptionStart: string;
  subscriptionEnd: string;
  /** True when the running subscription is extended by a fiscal year; false when a lapsed or new one restarts today. */
  extended: boolean;
  /** First day the renewal pays for (the next July 1 when extended, today otherwise). */
  billedFrom: string;
}

/**
 * Renewal extends to the next June 30: a running subscription gains the following fiscal year; a lapsed one
 * (or tier none) starts today and ends on today's fiscal-year end.
 */
export function renewal(device: Pick<DeviceRecord, 'tier' | 'subscriptionStart' | 'subscriptionEnd'>, now: number, tier?: string): Renewal {
  const newTier = tier ?? device.tier;
  if (newTier !== 'xcare' && newTier !== 'xcare_pro') {
    throw new ValidationError(`tier: a renewal needs tier xcare or xcare_pro, got ${JSON.stringify(newTier)}`);
  }
  const running = device.tier !== 'none' && device.subscriptionEnd !== null && now < expiresAt(device.subscriptionEnd);
  if (running) {
    const nextStart = utcDate(expiresAt(device.subscriptionEnd!));
    return {
      tier: newTier,
      subscriptionStart: device.subscriptionStart ?? utcDate(now),
      subscriptionEnd: fiscalYearEnd(nextStart),
      extended: true,
      billedFrom: nextStart,
    };
  }
  const today = utcDate(now);
  return { tier: newTier, subscriptionStart: today, subscriptionEnd: fiscalYearEnd(today), extended: false, billedFrom: today };
}
