/**
 * One clock for everything time-dependent (health, tickets, subscriptions, scheduler).
 * Production uses `systemClock`; tests drive a `ManualClock` instead of sleeping.
 *
 * Two readings: `now()` is the wall clock (what is stored, shown and compared with dates such as June 30);
 * `monotonicNow()` never jumps with NTP corrections or VM restores and is what liveness deadlines run on
 * (RULES.md "Our own outages are not the fleet's"). Both are milliseconds.
 */
export type TimerHandle = { readonly id: number };

export interface Clock {
  /** Wall-clock milliseconds since the epoch. May step forward or backward. */
  now(): number;
  /**
   * Monotonic milliseconds: only differences mean anything. Never steps with the wall clock; keeps counting while
   * the process is stopped (SIGSTOP), so a stall shows as a gap. Starts near `now()` so the two are comparable
   * until the first wall-clock step.
   */
  monotonicNow(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle | undefined): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  // performance.now() is CLOCK_MONOTONIC (libuv hrtime); timeOrigin anchors it to the wall clock at process start.
  monotonicNow: () => performance.timeOrigin + performance.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return { id: 0, t } as unknown as TimerHandle;
  },
  clearTimeout(handle) {
    if (handle) clearTimeout((handle as unknown as { t: NodeJS.Timeout }).t);
  },
};

/**
 * A system clock whose wall reading is offset by the milliseconds in `XCARE_WALL_OFFSET_FILE` (re-read when the
 * file changes, checked at most every 100 ms). For end-to-end tests and the detection bench only: it steps the
 * daemon's wall clock the way an NTP correction or a VM restore does, without root; timers and the monotonic
 * reading are untouched, as on a real machine. Without the variable, `systemClock` is used unchanged.
 */
export function wallOffsetClock(readOffset: () => number): Clock {
  let offset = 0;
  let checkedAt = -Infinity;
  const current = (): number => {
    const mono = performance.now();
    if (mono - checkedAt >= 100) {
      checkedAt = mono;
      try {
        offset = readOffset();
      } catch {
        /* keep the last offset */
      }
    }
    return offset;
  };
  return { ...systemClock, now: () => Date.now() + current() };
}

interface PendingTimer {
  id: number;
  at: number;
  fn: () => void;
}

/**
 * A clock that moves only when a test calls `advance` or `set`. Timers fire in time order. `stepWall` moves the
 * wall reading alone (an NTP step): monotonic time and timers do not move.
 */
export class ManualClock implements Clock {
  /** Monotonic time; timers are due against it. */
  private current: number;
  private wallOffset = 0;
  private nextId = 1;
  private timers = new Map<number, PendingTimer>();

  constructor(start: number | string | Date = 0) {
    this.current = typeof start === 'number' ? start : new Date(start).getTime();
  }

  now(): number {
    return this.current + this.wallOffset;
  }

  monotonicNow(): number {
    return this.current;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.nextId++;
    this.timers.set(id, { id, at: this.current + Math.max(0, ms), fn });
    return { id };
  }

  clearTimeout(handle: TimerHandle | undefined): void {
    if (handle) this.timers.delete(handle.id);
  }

  /** Move time forward by `ms`, firing every timer that falls due, in order. */
  advance(ms: number): void {
    this.setMonotonic(this.current + ms);
  }

  /** Move the wall clock to `to` (and monotonic time by the same amount), firing due timers; never backwards. */
  set(to: number | string | Date): void {
    const target = typeof to === 'number' ? to : new Date(to).getTime();
    this.setMonotonic(target - this.wallOffset);
  }

  /**
   * The process stood still for `ms` (SIGSTOP, swap): both clocks move, no timer fires. The next `advance`
   * (even by 0) fires the overdue timers late, at the time they finally run, as Node does after a stall.
   */
  stall(ms: number): void {
    this.current += ms;
  }

  /** Step the wall clock by `ms` (positive: forward) without moving monotonic time or firing timers. */
  stepWall(ms: number): void {
    this.wallOffset += ms;
  }

  private setMonotonic(target: number): void {
    for (;;) {
      let due: PendingTimer | undefined;
      for (const t of this.timers.values()) {
        if (t.at <= target && (!due || t.at < due.at || (t.at === due.at && t.id < due.id))) due = t;
      }
      if (!due) break;
      this.timers.delete(due.id);
      this.current = Math.max(this.current, due.at);
      due.fn();
    }
    this.current = Math.max(this.current, target);
  }

  pendingTimers(): number {
    return this.timers.size;
  }
}
