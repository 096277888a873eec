/**
 * The one strict date parser (issue 11 fault 7: `2027-02-30T10:00:00Z` was accepted and rolled over to
 * March 2 by `Date.parse`). Every date the daemon, the agent or xcarectl reads from outside goes through
 * here: manifests (`createdAt`, `expiresAt`), heartbeat `ts`, API bodies and queries (`since`, `start`),
 * CLI flags (`--since`, `--start`). Dependency-free: the agent imports it through patches/manifest.ts.
 *
 * Accepted: RFC 3339 §5.6 `date-time` with an upper-case `T`, seconds, an optional fraction and `Z` or a
 * `±HH:MM` offset; and `full-date` (`YYYY-MM-DD`) where a calendar date is meant. Refused: days a month
 * does not have (Feb 30, Feb 29 outside leap years, Apr 31), hour 24, minute or second 60 (JavaScript
 * time has no leap seconds), offsets beyond ±23:59, a lower-case `t`/`z`, a space instead of `T`, and
 * anything `Date.parse` would guess at.
 */
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
const FULL_DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

/** Days in `month` (1..12) of `year`, Gregorian leap rules. */
export function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

function validDate(year: number, month: number, day: number): boolean {
  return month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth(year, month);
}

/** Epoch milliseconds of a strict RFC 3339 date-time, or undefined when it is not one. */
export function parseRfc3339(value: unknown): number | undefined {
  if (typeof value !== 'string') return undefined;
  const m = DATE_TIME.exec(value);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = [1, 2, 3, 4, 5, 6].map((i) => Number(m[i]));
  if (!validDate(year!, month!, day!) || hour! > 23 || minute! > 59 || second! > 59) return undefined;
  let offsetMin = 0;
  const zone = m[8]!;
  if (zone !== 'Z') {
    const oh = Number(zone.slice(1, 3));
    const om = Number(zone.slice(4, 6));
    if (oh > 23 || om > 59) return undefined;
    offsetMin = (zone[0] === '-' ? -1 : 1) * (oh * 60 + om);
  }
  const fraction = m[7] ? Math.floor(Number(`0${m[7]}`) * 1000) : 0;
  // Date.UTC maps years 0..99 to 1900+; setUTCFullYear does not.
  const d = new Date(Date.UTC(2000, month! - 1, day!, hour!, minute!, second!, fraction));
  d.setUTCFullYear(year!);
  return d.getTime() - offsetMin * 60_000;
}

/** UTC midnight (epoch ms) of a strict `YYYY-MM-DD` calendar date, or undefined. */
export function parseCalendarDate(value: unknown): number | undefined {
  if (typeof value !== 'string') return undefined;
  const m = FULL_DATE.exec(value);
  if (!m) return undefined;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (!validDate(year, month, day)) return undefined;
  const d = new Date(Date.UTC(2000, month - 1, day));
  d.setUTCFullYear(year);
  return d.getTime();
}

export function isRfc3339(value: unknown): value is string {
  return parseRfc3339(value) !== undefined;
}

export function isCalendarDate(value: unknown): value is string {
  return parseCalendarDate(value) !== undefined;
}
