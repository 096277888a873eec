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
 *
 * Written as a scan over char codes with calendar arithmetic, not a regex match and a `Date` (issue 12:
 * every heartbeat's `ts` comes through here, and the match array, its substrings and the `Date` were a
 * measurable share of the ingest path's garbage). The grammar it accepts is exactly
 * `^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$` (date-time) and
 * `^\d{4}-\d{2}-\d{2}$` (full-date); test/unit/rfc3339-equivalence.test.ts checks it against the
 * regex-and-Date version it replaced.
 */

const DASH = 0x2d;
const COLON = 0x3a;
const DOT = 0x2e;
const PLUS = 0x2b;
const UPPER_T = 0x54;
const UPPER_Z = 0x5a;
const DAY_MS = 86_400_000;
/** `YYYY-MM-DDTHH:MM:SSZ` */
const SHORTEST_DATE_TIME = 20;
/** `YYYY-MM-DDTHH:MM:SS.fffffffff+HH:MM` */
const LONGEST_DATE_TIME = 35;
/** 10^n for the fraction's n digits, as literals: exact, and no Math.pow rounding to wonder about. */
const POWERS_OF_TEN = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000] as const;

/** Days in `month` (1..12) of `year`, Gregorian leap rules. */
export function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

function validDate(year: number, month: number, day: number): boolean {
  return month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth(year, month);
}

/** The value of the `count` ASCII digits of `text` at `at`, or -1 when any of them is not 0-9 (or missing). */
function digitsAt(text: string, at: number, count: number): number {
  let value = 0;
  for (let i = at; i < at + count; i++) {
    const digit = text.charCodeAt(i) - 48; // NaN past the end, which the test below refuses too
    if (!(digit >= 0 && digit <= 9)) return -1;
    value = value * 10 + digit;
  }
  return value;
}

/**
 * Days from 1970-01-01 to a proleptic Gregorian date (valid month and day; any year): H. Hinnant's
 * `days_from_civil`, so no `Date` is needed (and years 0..99 are not mapped to 1900+ as `Date.UTC` does).
 */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400;
  const dayOfYear = Math.floor((153 * (month > 2 ? month - 3 : month + 9) + 2) / 5) + day - 1;
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear;
  return era * 146_097 + dayOfEra - 719_468;
}

/** Days since the epoch of the `YYYY-MM-DD` at the start of `text`, or NaN when it is not a real date. */
function leadingDateDays(text: string): number {
  const year = digitsAt(text, 0, 4);
  const month = digitsAt(text, 5, 2);
  const day = digitsAt(text, 8, 2);
  if (year < 0 || month < 0 || day < 0 || text.charCodeAt(4) !== DASH || text.charCodeAt(7) !== DASH) return NaN;
  return validDate(year, month, day) ? daysFromCivil(year, month, day) : NaN;
}

/** Epoch milliseconds of a strict RFC 3339 date-time, or undefined when it is not one. */
export function parseRfc3339(value: unknown): number | undefined {
  if (typeof value !== 'string') return undefined;
  const length = value.length;
  if (length < SHORTEST_DATE_TIME || length > LONGEST_DATE_TIME) return undefined;
  const days = leadingDateDays(value);
  if (Number.isNaN(days) || value.charCodeAt(10) !== UPPER_T || value.charCodeAt(13) !== COLON || value.charCodeAt(16) !== COLON) return undefined;
  const hour = digitsAt(value, 11, 2);
  const minute = digitsAt(value, 14, 2);
  const second = digitsAt(value, 17, 2);
  if (hour < 0 || minute < 0 || second < 0 || hour > 23 || minute > 59 || second > 59) return undefined;
  let at = 19;
  let fraction = 0;
  if (value.charCodeAt(at) === DOT) {
    let digits = 0;
    let scaled = 0;
    for (at++; at < length; at++, digits++) {
      const digit = value.charCodeAt(at) - 48;
      if (!(digit >= 0 && digit <= 9)) break;
      scaled = scaled * 10 + digit;
    }
    if (digits < 1 || digits > 9) return undefined;
    // n / 10^k is the correctly rounded double of 0.<digits>, the same one Number('0.<digits>') gives,
    // so the milliseconds are floored exactly as before (123456789 ns -> 123 ms).
    fraction = Math.floor((scaled / POWERS_OF_TEN[digits]!) * 1000);
  }
  let offsetMin = 0;
  const zone = value.charCodeAt(at);
  if (zone === UPPER_Z) {
    if (at + 1 !== length) return undefined;
  } else if (zone === PLUS || zone === DASH) {
    if (at + 6 !== length || value.charCodeAt(at + 3) !== COLON) return undefined;
    const oh = digitsAt(value, at + 1, 2);
    const om = digitsAt(value, at + 4, 2);
    if (oh < 0 || om < 0 || oh > 23 || om > 59) return undefined;
    offsetMin = (zone === DASH ? -1 : 1) * (oh * 60 + om);
  } else {
    return undefined;
  }
  return days * DAY_MS + hour * 3_600_000 + minute * 60_000 + second * 1000 + fraction - offsetMin * 60_000;
}

/** UTC midnight (epoch ms) of a strict `YYYY-MM-DD` calendar date, or undefined. */
export function parseCalendarDate(value: unknown): number | undefined {
  if (typeof value !== 'string' || value.length !== 10) return undefined;
  const days = leadingDateDays(value);
  return Number.isNaN(days) ? undefined : days * DAY_MS;
}

export function isRfc3339(value: unknown): value is string {
  return parseRfc3339(value) !== undefined;
}

export function isCalendarDate(value: unknown): value is string {
  return parseCalendarDate(value) !== undefined;
}
