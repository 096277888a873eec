import { validateDetailed } from 'node-cron';

/**
 * Maintenance windows (RULES.md "Remote patching": "a maintenance window (a cron expression and a duration,
 * in a named timezone)"). A window opens at every instant the cron expression matches the wall clock of the
 * timezone and stays open for `durationMs` of elapsed time.
 *
 * node-cron 4 computes next runs only from the real system time (`getNextRun()` reads `new Date()`), which the
 * injected Clock cannot drive; so node-cron parses and validates the expression (`validateDetailed`) and the
 * matching below walks the parsed fields itself.
 *
 * Semantics, chosen to follow node-cron and Temporal where a choice is needed:
 * - 5 fields (minute hour day month weekday) or 6 (with seconds first), names and ranges as node-cron parses them.
 * - Day of month AND day of week must both match (node-cron's rule, not Vixie cron's OR).
 * - A wall-clock start that does not exist (inside a spring-forward gap, e.g. 02:30 on 2026-03-29 in
 *   Europe/Berlin) opens the window at the same wall time read with the offset before the gap, i.e. shifted
 *   forward by the gap (03:30 CEST) — Temporal's `disambiguation: 'compatible'`. The window is never skipped.
 * - A wall-clock start that exists twice (fall-back, e.g. 02:30 on 2026-10-25 in Berlin) opens once, at the
 *   earlier instant (also 'compatible').
 * - The duration is elapsed time: a 4 h window from 00:00 on a spring-forward day closes at 05:00 wall clock.
 * - The L, W and # tokens node-cron accepts are refused (they would need their own calendar rules here).
 */
export interface MaintenanceWindow {
  cron: string;
  durationMs: number;
  timezone: string;
}

export interface WindowState {
  open: boolean;
  /** When open: the start of the current window. */
  openedAt?: number;
  /** When open: when the current window closes. */
  closesAt?: number;
  /** When closed: the next start, or undefined if the expression never matches again within the search horizon. */
  opensAt?: number;
}

interface CronFields {
  seconds: number[];
  minutes: number[];
  hours: number[];
  days: Set<number>;
  months: Set<number>;
  weekdays: Set<number>;
}

const DAY_MS = 86_400_000;
/** Far enough for `0 0 29 2 *` (leap days) and every 5/6-field expression without L/W/#. */
const HORIZON_DAYS = 8 * 366;

const formatters = new Map<string, Intl.DateTimeFormat>();
const parsedCache = new Map<string, CronFields>();

/** Is this an IANA timezone name the runtime knows? */
export function isValidTimezone(timezone: string): boolean {
  if (typeof timezone !== 'string' || timezone.length === 0) return false;
  try {
    formatter(timezone);
    return true;
  } catch {
    return false;
  }
}

/** Parse with node-cron; returns an error message naming the bad part, or undefined when the expression is fine. */
export function cronError(expression: string): string | undefined {
  try {
    parseCron(expression);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

export function parseCron(expression: string): CronFields {
  const cached = parsedCache.get(expression);
  if (cached) return cached;
  if (typeof expression !== 'string' || expression.trim() === '') throw new Error('empty cron expression');
  const result = validateDetailed(expression);
  if (!result.valid || !result.fields) {
    const first = result.errors[0];
    throw new Error(first ? `${first.field}${first.value !== undefined ? ` "${first.value}"` : ''}: ${first.message}` : 'invalid cron expression');
  }
  const f = result.fields;
  const numbers = (name: string, values: (number | string)[]): number[] => {
    for (const v of values) {
      if (typeof v !== 'number') throw new Error(`${name} "${v}": L, W and # tokens are not supported in maintenance windows`);
    }
    return [...(values as number[])].sort((a, b) => a - b);
  };
  const fields: CronFields = {
    seconds: numbers('second', f.second),
    minutes: numbers('minute', f.minute),
    hours: numbers('hour', f.hour),
    days: new Set(numbers('dayOfMonth', f.dayOfMonth)),
    months: new Set(numbers('month', f.month)),
    weekdays: new Set(numbers('dayOfWeek', f.dayOfWeek).map((d) => d % 7)),
  };
  if (parsedCache.size > 1000) parsedCache.clear();
  parsedCache.set(expression, fields);
  return fields;
}

/** Is the window open at `now`, and since/until when (or when does it open next)? */
export function windowStateAt(window: MaintenanceWindow, now: number): WindowState {
  // The latest start in (now - duration, now] is the open window, if any: search from just after now - duration.
  const start = nextCronMatch(window.cron, window.timezone, now - window.durationMs + 1);
  if (start !== undefined && start <= now) return { open: true, openedAt: start, closesAt: start + window.durationMs };
  return { open: false, opensAt: start };
}

export function windowOpenAt(window: MaintenanceWindow, now: number): boolean {
  return windowStateAt(window, now).open;
}

/** The next instant strictly after `now` at which a window opens (a window open at `now` does not count). */
export function nextWindowOpen(window: MaintenanceWindow, now: number): number | undefined {
  return nextCronMatch(window.cron, window.timezone, now + 1);
}

/** The first instant >= `from` (ms) at which the expression matches the wall clock of `timezone`. */
export function nextCronMatch(expression: string, timezone: string, from: number): number | undefined {
  const fields = parseCron(expression);
  // Start a day early: a gap-shifted start of the previous local day can fall after `from`.
  let { year, month, day } = wallClock(from - DAY_MS, timezone);
  for (let i = 0; i < HORIZON_DAYS; i++) {
    if (fields.months.has(month) && fields.days.has(day) && fields.weekdays.has(new Date(Date.UTC(year, month - 1, day)).getUTCDay())) {
      const found = firstOnDay(fields, timezone, year, month, day, from);
      if (found !== undefined) return found;
    }
    const next = new Date(Date.UTC(year, month - 1, day + 1));
    year = next.getUTCFullYear();
    month = next.getUTCMonth() + 1;
    day = next.getUTCDate();
  }
  return undefined;
}

function firstOnDay(fields: CronFields, timezone: string, year: number, month: number, day: number, from: number): number | undefined {
  const midnight = Date.UTC(year, month - 1, day);
  const offsetBefore = offsetMs(midnight - DAY_MS, timezone);
  const offsetAfter = offsetMs(midnight + 2 * DAY_MS, timezone);
  const steady = offsetBefore === offsetAfter;
  let best: number | undefined;
  for (const hour of fields.hours) {
    for (const minute of fields.minutes) {
      for (const second of fields.seconds) {
        const local = midnight + ((hour * 60 + minute) * 60 + second) * 1000;
        const instant = steady ? local - offsetBefore : resolveLocal(local, offsetBefore, offsetAfter, timezone);
        if (instant < from) continue;
        // Without a transition on this day wall order is instant order: the first hit is the earliest.
        if (steady) return instant;
        if (best === undefined || instant < best) best = instant;
      }
    }
  }
  return best;
}

/** Wall time (as a UTC-based ms number) to an instant, Temporal 'compatible' disambiguation. */
function resolveLocal(local: number, offsetBefore: number, offsetAfter: number, timezone: string): number {
  const candidates = [local - offsetBefore, local - offsetAfter].filter((t) => local - offsetMs(t, timezone) === t);
  if (candidates.length > 0) return Math.min(...candidates); // repeated hour: the earlier instant
  return local - offsetBefore; // gap: read with the offset before the transition, i.e. shifted forward
}

/** Offset of the zone's wall clock from UTC at an instant, in ms (Berlin winter: +3_600_000). */
export function offsetMs(instant: number, timezone: string): number {
  const p = wallClock(instant, timezone);
  const asUtc = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second);
  return asUtc - Math.floor(instant / 1000) * 1000;
}

export interface WallClock {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

export function wallClock(instant: number, timezone: string): WallClock {
  const parts = formatter(timezone).formatToParts(new Date(instant));
  const get = (type: Intl.DateTimeFormatPartTypes): number => Number(parts.find((p) => p.type === type)?.value);
  return { year: get('year'), month: get('month'), day: get('day'), hour: get('hour') % 24, minute: get('minute'), second: get('second') };
}

function formatter(timezone: string): Intl.DateTimeFormat {
  let f = formatters.get(timezone);
  if (!f) {
    // Throws RangeError for an unknown zone: that is how isValidTimezone tells.
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: timezone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(timezone, f);
  }
  return f;
}
