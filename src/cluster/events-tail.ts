import type { Clock, TimerHandle } from '../clock.js';
import type { Database, Statement } from '../db/database.js';
import type { Logger } from '../log.js';

/** One `events` row as a tail reader sees it. */
export interface TailRow {
  id: number;
  kind: string;
  device_id: string | null;
  data: string | null;
}

/** How long an id skipped by the feed is waited for (ms): far beyond any transaction (statement timeout 5 s). */
const GAP_WAIT_MS = 60_000;
/** At most this many skipped ids are waited for at once; a larger jump is ids burned by rollbacks. */
const MAX_GAPS = 10_000;
const PAGE = 10_000;
/** At start, this many ids below the newest are checked for ones not committed yet (far more than run at once). */
const START_WINDOW = 1000;

/** The kinds as SQL literals (our own constants: letters and underscores only). */
function kindList(kinds: readonly string[]): string {
  for (const k of kinds) if (!/^[a-z_]+$/.test(k)) throw new Error(`not an event kind: ${k}`);
  return kinds.map((k) => `'${k}'`).join(', ');
}

/**
 * The loop shared by the cluster's readers of the `events` change feed (RegistryFollower, SecurityRelay): a
 * reader starts after the newest row at `start()` and runs `pass` every `intervalMs` on the injected clock
 * until `stop()`. A pass that throws is logged (`failure` names it) and the next one runs on time.
 *
 * Ids are handed out at INSERT but become visible at COMMIT, so on PostgreSQL two instances writing events
 * at once can commit id 11 before id 10: a reader that moved past 11 would never see 10 (on SQLite writers
 * are serialised and this cannot happen). `read()` therefore remembers every id it skipped and asks for
 * them again on each pass for GAP_WAIT_MS (an id burned by a rolled-back transaction never appears and is
 * forgotten then), so each row of `kinds` is returned exactly once, whatever the commit order.
 */
export class EventsTail {
  private timer: TimerHandle | undefined;
  private stopped = true;
  private last = 0;
  /** Skipped ids and when (monotonic ms) they were first skipped. */
  private readonly gaps = new Map<number, number>();
  private readonly kinds: ReadonlySet<string>;
  private readonly fresh: Statement;
  private readonly rowsIn: Statement;

  constructor(
    private readonly deps: {
      db: Database;
      clock: Clock;
      log: Logger;
      intervalMs: number;
      failure: string;
      /** The event kinds `read()` returns. */
      kinds: readonly string[];
      pass(): void;
    },
  ) {
    this.kinds = new Set(deps.kinds);
    // Ids of every kind (cheap: the primary key only) to see what was skipped; rows of our kinds in full.
    this.fresh = deps.db.prepare(`SELECT id FROM events WHERE id > ? ORDER BY id LIMIT ${PAGE}`);
    this.rowsIn = deps.db.prepare(`SELECT id, kind, device_id, data FROM events WHERE id > ? AND id <= ? AND kind IN (${kindList(deps.kinds)}) ORDER BY id`);
  }

  /**
   * Starts the periodic passes after the newest `events` row now: only later rows are read, and the ids below
   * it not visible yet (the last START_WINDOW), which may belong to transactions still open: on PostgreSQL
   * one that commits after this start would otherwise never be read (a revocation missed until restart).
   */
  start(): void {
    this.last = (this.deps.db.prepare('SELECT COALESCE(MAX(id), 0) AS id FROM events').get() as { id: number }).id;
    this.gaps.clear();
    const from = Math.max(0, this.last - START_WINDOW);
    const seen = new Set((this.deps.db.prepare('SELECT id FROM events WHERE id > ? AND id <= ?').all(from, this.last) as { id: number }[]).map((r) => r.id));
    const now = this.deps.clock.monotonicNow();
    for (let m = from + 1; m < this.last; m++) if (!seen.has(m)) this.gaps.set(m, now);
    this.stopped = false;
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Every row of `kinds` committed since the last read (late commits of skipped ids included), in id order. */
  read(): TailRow[] {
    const out: TailRow[] = [];
    const now = this.deps.clock.monotonicNow();
    if (this.gaps.size > 0) {
      const wanted = [...this.gaps.keys()];
      for (let i = 0; i < wanted.length; i += 500) {
        const chunk = wanted.slice(i, i + 500);
        const rows = this.deps.db
          .prepare(`SELECT id, kind, device_id, data FROM events WHERE id IN (${chunk.map(() => '?').join(', ')})`)
          .all(...chunk) as TailRow[];
        for (const r of rows) {
          this.gaps.delete(r.id);
          if (this.kinds.has(r.kind)) out.push(r);
        }
      }
      for (const [id, since] of this.gaps) if (now - since >= GAP_WAIT_MS) this.gaps.delete(id);
    }
    for (;;) {
      const ids = this.fresh.all(this.last) as { id: number }[];
      if (ids.length === 0) break;
      const from = this.last;
      const seen = new Set<number>();
      for (const { id } of ids) {
        for (let m = this.last + 1; m < id && this.gaps.size < MAX_GAPS; m++) this.gaps.set(m, now);
        this.last = id;
        seen.add(id);
      }
      // Only ids the first read saw: one that committed in between is still a gap, and is read as one (once).
      for (const r of this.rowsIn.all(from, this.last) as TailRow[]) if (seen.has(r.id)) out.push(r);
      if (ids.length < PAGE) break;
    }
    return out.sort((a, b) => a.id - b.id);
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
