/**
 * Issue 12: parseRfc3339 and parseCalendarDate were rewritten as char-code scans with calendar arithmetic
 * (no regex match array, no `Date`) because every heartbeat's `ts` goes through them. The version they
 * replaced is kept below, verbatim, as the oracle: over random valid and invalid strings both must return
 * the same epoch milliseconds (Object.is, so -0 and NaN would show) or both undefined.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseCalendarDate, parseRfc3339 } from '../../src/protocol/rfc3339.js';

// ---- the oracle: src/protocol/rfc3339.ts before issue 12 ----
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
const FULL_DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

function oldDaysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

function oldValidDate(year: number, month: number, day: number): boolean {
  return month >= 1 && month <= 12 && day >= 1 && day <= oldDaysInMonth(year, month);
}

function oldParseRfc3339(value: unknown): number | undefined {
  if (typeof value !== 'string') return undefined;
  const m = DATE_TIME.exec(value);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = [1, 2, 3, 4, 5, 6].map((i) => Number(m[i]));
  if (!oldValidDate(year!, month!, day!) || hour! > 23 || minute! > 59 || second! > 59) return undefined;
  let offsetMin = 0;
  const zone = m[8]!;
  if (zone !== 'Z') {
    const oh = Number(zone.slice(1, 3));
    const om = Number(zone.slice(4, 6));
    if (oh > 23 || om > 59) return undefined;
    offsetMin = (zone[0] === '-' ? -1 : 1) * (oh * 60 + om);
  }
  const fraction = m[7] ? Math.floor(Number(`0${m[7]}`) * 1000) : 0;
  const d = new Date(Date.UTC(2000, month! - 1, day!, hour!, minute!, second!, fraction));
  d.setUTCFullYear(year!);
  return d.getTime() - offsetMin * 60_000;
}

function oldParseCalendarDate(value: unknown): number | undefined {
  if (typeof value !== 'string') return undefined;
  const m = FULL_DATE.exec(value);
  if (!m) return undefined;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (!oldValidDate(year, month, day)) return undefined;
  const d = new Date(Date.UTC(2000, month - 1, day));
  d.setUTCFullYear(year);
  return d.getTime();
}
// ---- end of the oracle ----

const pad = (n: number, width: number) => String(n).padStart(width, '0');
/** Two digits, mostly in range, sometimes just past it (24, 60, 32, 13...) or far past it. */
const twoDigits = (max: number) =>
  fc
    .oneof({ arbitrary: fc.integer({ min: 0, max }), weight: 12 }, { arbitrary: fc.integer({ min: max + 1, max: Math.min(max + 2, 99) }), weight: 1 }, { arbitrary: fc.integer({ min: 0, max: 99 }), weight: 1 })
    .map((n) => pad(n, 2));
const year = fc.oneof(fc.integer({ min: 1960, max: 2100 }), fc.integer({ min: 0, max: 9999 }), fc.constantFrom(0, 1, 99, 100, 1900, 2000, 2100, 2400, 9999)).map((n) => pad(n, 4));
const fraction = fc.oneof({ arbitrary: fc.constant(''), weight: 3 }, { arbitrary: fc.stringMatching(/^\.[0-9]{1,9}$/), weight: 3 }, fc.constantFrom('.', '.0', '.5', '.999', '.0089', '.1234567891', '.57', '.29'));
const zone = fc.oneof(fc.constantFrom('Z', 'z', '', '+00:00', '-00:00', '+23:59', '-23:59', '+24:00', '+01:60', '+0100', '+1:00'), { arbitrary: fc.tuple(fc.constantFrom('+', '-'), twoDigits(23), twoDigits(59)).map(([s, h, m]) => `${s}${h}:${m}`), weight: 2 });

/** A date-time built field by field: most are valid, many are off by one somewhere. */
const dateTimeLike = fc
  .record({
    year,
    month: twoDigits(12),
    day: fc.oneof({ arbitrary: twoDigits(28), weight: 3 }, fc.constantFrom('29', '30', '31', '00', '32')),
    sep: fc.constantFrom('T', 'T', 'T', 'T', 'T', 'T', 't', ' '),
    hour: twoDigits(23),
    minute: twoDigits(59),
    second: twoDigits(59),
    fraction,
    zone,
  })
  .map((p) => `${p.year}-${p.month}-${p.day}${p.sep}${p.hour}:${p.minute}:${p.second}${p.fraction}${p.zone}`);

/** A valid-looking string with one character replaced, inserted or removed. */
const mutated = fc.tuple(dateTimeLike, fc.nat(), fc.constantFrom('replace', 'insert', 'delete'), fc.constantFrom('0', '9', '-', ':', 'T', 'Z', '+', '.', ' ', '\n', 'a', '٣', '\u0000')).map(([text, at, how, ch]) => {
  const i = at % (text.length + 1);
  if (how === 'insert') return text.slice(0, i) + ch + text.slice(i);
  if (how === 'delete') return text.slice(0, i) + text.slice(i + 1);
  return text.slice(0, i) + ch + text.slice(i + 1);
});

const anyText = fc.oneof(dateTimeLike, dateTimeLike, mutated, fc.string({ maxLength: 40 }), fc.stringMatching(/^[0-9T:.Z+-]{0,36}$/));

const sameAs = (actual: number | undefined, expected: number | undefined) => Object.is(actual, expected);

describe('parseRfc3339 equals the regex-and-Date version it replaced', () => {
  it('on generated date-times, valid and invalid, and on their one-character mutations', () => {
    fc.assert(
      fc.property(anyText, (text) => {
        expect(sameAs(parseRfc3339(text), oldParseRfc3339(text)), text).toBe(true);
      }),
      { numRuns: 20_000 },
    );
  });

  it('accepts most generated date-times (so the property above is not only about refusals)', () => {
    const sample = fc.sample(dateTimeLike, { numRuns: 2_000, seed: 12 });
    const accepted = sample.filter((text) => oldParseRfc3339(text) !== undefined).length;
    expect(accepted).toBeGreaterThan(200);
  });

  it('on every day of years around the epoch, every leap rule and the edges of the range', () => {
    for (const y of [0, 1, 99, 100, 400, 1600, 1899, 1900, 1969, 1970, 1972, 2000, 2024, 2100, 9999]) {
      for (let m = 1; m <= 12; m++) {
        for (let d = 28; d <= 32; d++) {
          const text = `${pad(y, 4)}-${pad(m, 2)}-${pad(d, 2)}T23:59:59.999-23:59`;
          expect(sameAs(parseRfc3339(text), oldParseRfc3339(text)), text).toBe(true);
          const date = text.slice(0, 10);
          expect(sameAs(parseCalendarDate(date), oldParseCalendarDate(date)), date).toBe(true);
        }
      }
    }
  });

  it('on every fraction of one to three digits (the milliseconds are floored as before)', () => {
    for (let digits = 1; digits <= 3; digits++) {
      for (let n = 0; n < 10 ** digits; n++) {
        const text = `2026-11-26T17:00:00.${pad(n, digits)}Z`;
        expect(sameAs(parseRfc3339(text), oldParseRfc3339(text)), text).toBe(true);
      }
    }
  });

  it('on non-strings', () => {
    fc.assert(fc.property(fc.anything(), (value) => sameAs(parseRfc3339(value), oldParseRfc3339(value)) && sameAs(parseCalendarDate(value), oldParseCalendarDate(value))));
  });
});

describe('parseCalendarDate equals the regex-and-Date version it replaced', () => {
  it('on generated calendar dates and their mutations', () => {
    const dates = fc.oneof(dateTimeLike.map((t) => t.slice(0, 10)), mutated.map((t) => t.slice(0, 11)), mutated.map((t) => t.slice(0, 10)), fc.string({ maxLength: 12 }));
    fc.assert(
      fc.property(dates, (text) => {
        expect(sameAs(parseCalendarDate(text), oldParseCalendarDate(text)), text).toBe(true);
      }),
      { numRuns: 20_000 },
    );
  });
});
