import type { HealthSettings } from './liveness.js';

/**
 * Our own outages (RULES.md "Our own outages are not the fleet's"): the pure decisions about gaps in the daemon's
 * own service. A stall shows as a tick that fires much later than planned on the monotonic clock; a wall-clock
 * step as a change of the wall-minus-monotonic offset between two ticks.
 */
export interface TickTiming {
  /** Monotonic time the tick was planned for. */
  plannedAt: number;
  /** Monotonic time it runs. */
  monotonicNow: number;
  /** wall - monotonic at the previous tick and now. */
  previousOffset: number;
  offset: number;
}

export interface GapVerdict {
  /** How late the tick is beyond the margin (ms), or 0: the daemon stalled and every device needs a fresh interval. */
  stalledMs: number;
  /** The wall clock moved by this much relative to monotonic time (ms, signed), or 0 when within the margin. */
  wallStepMs: number;
}

export function detectGap(t: TickTiming, settings: Pick<HealthSettings, 'stallMarginMs'>): GapVerdict {
  const late = t.monotonicNow - t.plannedAt;
  const step = t.offset - t.previousOffset;
  return {
    stalledMs: late > settings.stallMarginMs ? late : 0,
    wallStepMs: Math.abs(step) > settings.stallMarginMs ? step : 0,
  };
}

/** How far the reconnect herd after a daemon start has come. Times are monotonic ms. */
export interface HerdProgress {
  startedAt: number;
  /** Devices that were online when the daemon last stopped: the herd we wait for. */
  expected: number;
  /** Of those, how many have been heard from since the start. */
  returned: number;
  /** When the latest device (any) was first heard from since the start, or null. */
  lastReturnAt: number | null;
}

/**
 * When the start-up grace ends, or null when it is over. It runs at least the agents' longest reconnect backoff
 * (`startup.reconnectS`) and on while devices keep coming back (`herdQuietS` after the latest return), never past
 * `startup.maxS`; it ends early once every device that was online before the restart is back, and there is none
 * when no device was online when the daemon stopped.
 */
export function startupGraceUntil(p: HerdProgress, now: number, settings: Pick<HealthSettings, 'startup'>): number | null {
  // No herd to wait for (nothing was online when we stopped), or all of it is back.
  if (p.returned >= p.expected) return null;
  const s = settings.startup;
  const base = p.startedAt + s.reconnectS * 1000;
  const herd = p.lastReturnAt === null ? base : p.lastReturnAt + s.herdQuietS * 1000;
  const until = Math.min(Math.max(base, herd), p.startedAt + s.maxS * 1000);
  return now < until ? until : null;
}
