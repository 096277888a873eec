import { Cron } from 'croner';

/**
 * Maintenance windows (RULES.md "Remote patching": "a maintenance window (a cron expression and a duration,
 * in a named timezone)"). A window opens at every instant the cron expression matches the wall clock of the
 * timezone and stays open for `durationMs` of elapsed time.
 *
 * Next openings come from croner (issue 8 fault 4: the hand-written day walk took 2-4 s on a DST transition
 * day and stalled the daemon; croner computes one in well under a millisecond on any day, test
 * test/unit/rollout-window.test.ts measures it across DST weeks in both hemispheres). croner takes an
 * explicit reference instant, so the injected Clock drives it.
 *
 * Semantics:
 * - 5 fields (minute hour day month weekday) or 6 (with seconds first).
 * - Day of month AND day of week must both match (`domAndDow`), as before (node-cron's rule, not Vixie's OR).
 * - A wall-clock start that does not exist (inside a spring-forward gap, e.g. 02:30 on 2026-03-29 in
 *   Europe/Berlin) opens the window at the same wall time read with the offset before the gap, i.e. shifted
 *   forward by the gap (03:30 CEST); the window is never skipped. A wall-clock start that exists twice
 *   (fall-back) opens once, at the earlier instant.
 * - The duration is elapsed time: a 4 h window from 00:00 on a spring-forward day closes at 05:00 wall clock.
 * - The L, W and # tokens are refused (kept out so that both the old and the new implementation agree).
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

const DAY_MS = 86_400_000;

const formatters = new Map<string, Intl.DateTimeFormat>();
const crons = new Map<string, Cron>();

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

/** Returns an error message naming the bad part, or undefined when the expression is fine. */
export function cronError(expression: string): string | undefined {
  try {
    cronFor(expression, 'UTC');
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/** A paused croner job for (expression, timezone), parsed once and cached (bounded). */
function cronFor(expression: string, timezone: string): Cron {
  const key = `${timezone}\u0000${expression}`;
  const cached = crons.get(key);
  if (cached) return cached;
  if (typeof expression !== 'string' || expression.trim() === '') throw new Error('empty cron expression');
  const fields = expression.trim().split(/\s+/);
  if (fields.length !== 5 && fields.length !== 6) throw new Error(`expected 5 or 6 fields, got ${fields.length}`);
  if (/[LW#]/i.test(expression.replace(/\b(MON|TUE|WED|THU|FRI|SAT|SUN|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)\b/gi, ''))) {
    throw new Error('L, W and # tokens are not supported in maintenance windows');
  }
  const cron = new Cron(expression.trim(), { timezone, paused: true, domAndDow: true });
  if (crons.size > 1000) crons.clear();
  crons.set(key, cron);
  return cron;
}

/** Is the window open at `now`, and since/until when (or when does it open next)? */
export function windowStateAt(window: MaintenanceWindow, now: number): WindowState {
  // The latest start in (now - duration, now] is the open window, if any: search from just after now - duration.
  const start = nextCronMatch(window.cron, window.timezone, now - window.durationMs + 1);
  if (start !== undefined && start <= now) return { open: true, openedAt: start, closesAt: start + window.durationMs };
  return { open: false, opensAt: start };
}

/**
 * Why a window can never open from `now` on, or undefined when it is open or opens again: the expression has
 * no future occurrence in the timezone (e.g. `0 0 30 2 *`, 30 February; croner answers no next run).
 * A rollout with such a window would stay `scheduled` and hold its devices forever, so it is refused at
 * creation (400) and a stored one fails at run time (issue 9 follow-up fault 1).
 */
export function windowNeverOpens(window: MaintenanceWindow, now: number): string | undefined {
  const state = windowStateAt(window, now);
  if (state.open || state.opensAt !== undefined) return undefined;
  return `window.cron: "${window.cron}" never opens in ${window.timezone} (no date from now on matches it)`;
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
  if (!Number.isFinite(from) || Math.abs(from) > 8.64e15 - DAY_MS) throw new RangeError(`Invalid time value: ${from}`);
  // croner's nextRun(prev) is the first match strictly after prev's whole second: ask from 1 ms earlier.
  const next = cronFor(expression, timezone).nextRun(new Date(from - 1));
  return next ? next.getTime() : undefined;
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
