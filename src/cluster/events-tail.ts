import type { Clock, TimerHandle } from '../clock.js';
import type { Database } from '../db/database.js';
import type { Logger } from '../log.js';

/**
 * The loop shared by the cluster's readers of the `events` change feed (RegistryFollower, SecurityRelay): the
 * feed's ids only grow, so a reader starts after the newest row at `start()` and runs `pass` every `intervalMs`
 * on the injected clock until `stop()`. A pass that throws is logged (`failure` names it) and the next one runs
 * on time: a broken pass must not stop the follow-up for good.
 */
export class EventsTail {
  private timer: TimerHandle | undefined;
  private stopped = true;

  constructor(
    private readonly deps: { db: Database; clock: Clock; log: Logger; intervalMs: number; failure: string; pass(): void },
  ) {}

  /** Starts the periodic passes; returns the id of the newest `events` row now (0 when empty): read after it. */
  start(): number {
    const newest = (this.deps.db.prepare('SELECT COALESCE(MAX(id), 0) AS id FROM events').get() as { id: number }).id;
    this.stopped = false;
    this.schedule();
    return newest;
  }

  stop(): void {
    this.stopped = true;
    this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = this.deps.clock.setTimeout(() => {
      try {
        this.deps.pass();
      } catch (err) {
        this.deps.log.error({ err }, this.deps.failure);
      }
      this.schedule();
    }, this.deps.intervalMs);
  }
}
