import { writeRows } from '../db/database.js';
import type { Database } from '../db/database.js';
import type { Logger } from '../log.js';

export type HealthEventKind = 'online' | 'offline' | 'lost' | 'back';

/** Changes queued since the last write. */
export interface PendingHealthWrites {
  states: Map<string, { online: number; at: number }>;
  events: { ts: number; deviceId: string; kind: HealthEventKind; data: string }[];
}

/**
 * The evaluator's share of the store: `device_state.online` / `state_changed_at` and the `events` rows of kind
 * online|offline|lost|back. Changes are queued on the hot path and written inside the tick's one transaction; the
 * UPSERT touches only these two columns because the ingest writer upserts the others with its own statement.
 * A write that fails is put back in front of the queue (issue 8, fault 3: nothing is lost, the next tick retries).
 */
export class HealthStateWriter {
  private pending: PendingHealthWrites = { states: new Map(), events: [] };
  private started = false;

  constructor(private readonly deps: { db: Database; log: Logger }) {}

  start(): void {
    this.started = true;
  }

  /**
   * Devices whose stored state is a loss: offline since `state_changed_at`, with the `lost` event of that moment
   * (its reason). `at` is wall ms. Read at start so a loss survives our restart (RULES.md "Our own outages...").
   */
  storedLosses(): { deviceId: string; at: number; reason: 'silence' | 'will' }[] {
    const rows = this.deps.db
      .prepare(
        `SELECT s.device_id, e.ts, e.data FROM device_state s
         JOIN events e ON e.device_id = s.device_id AND e.ts = s.state_changed_at AND e.kind = 'lost'
         WHERE s.online = 0`,
      )
      .all() as { device_id: string; ts: number; data: string }[];
    return rows.map((r) => ({ deviceId: r.device_id, at: r.ts, reason: lostReasonOf(r.data) }));
  }

  /** Queue a state change; `at` is wall-clock ms (what is stored and shown). */
  change(deviceId: string, online: boolean, at: number, kind: HealthEventKind, data?: Record<string, unknown>): void {
    this.pending.states.set(deviceId, { online: online ? 1 : 0, at });
    this.pending.events.push({ ts: at, deviceId, kind, data: data ? JSON.stringify(data) : '{}' });
  }

  pendingCount(): number {
    return this.pending.events.length;
  }

  /** Take everything queued (to write inside the caller's transaction). */
  take(): PendingHealthWrites {
    const taken = this.pending;
    this.pending = { states: new Map(), events: [] };
    return taken;
  }

  /** Put writes whose transaction failed back in front of what was queued since, in their order. */
  restore(taken: PendingHealthWrites): void {
    for (const [id, s] of this.pending.states) taken.states.set(id, s);
    taken.events.push(...this.pending.events);
    this.pending = taken;
  }

  /**
   * Write inside the caller's transaction; throws on a storage failure (the caller restores and retries).
   * Multi-row statements (writeRows): a tick that changes a thousand devices is a few statements, not two
   * thousand (on PostgreSQL each statement is work on the daemon's thread or the server's, issue 13).
   */
  write(w: PendingHealthWrites): void {
    if (!this.started) return;
    const db = this.deps.db;
    // Ascending device id: the lock order the ingest writer uses too (no deadlock between them on PostgreSQL).
    // A device deleted between the change and the write would violate the foreign key: the WHERE skips only
    // that one, in the same statement (no read per device). VALUES columns are column1.. on both engines.
    const ids = [...w.states.keys()].sort();
    writeRows(
      db,
      'INSERT INTO device_state (device_id, online, state_changed_at) SELECT column1, column2, column3 FROM (VALUES',
      '(?, CAST(? AS INTEGER), CAST(? AS BIGINT))',
      ids.map((id) => {
        const s = w.states.get(id)!;
        return [id, s.online, s.at];
      }),
      `) AS v WHERE EXISTS (SELECT 1 FROM devices d WHERE d.id = v.column1)
       ON CONFLICT(device_id) DO UPDATE SET online = excluded.online, state_changed_at = excluded.state_changed_at`,
    );
    writeRows(db, 'INSERT INTO events (ts, device_id, kind, data) VALUES', '(?, ?, ?, ?)', w.events.map((e) => [e.ts, e.deviceId, e.kind, e.data]));
  }

  /** Write what is queued in a transaction of its own (shutdown); on failure it stays queued and is logged. */
  flush(): void {
    if (this.pending.events.length === 0 && this.pending.states.size === 0) return;
    if (!this.deps.db.open) return;
    const taken = this.take();
    try {
      this.deps.db.transaction(() => this.write(taken))();
    } catch (err) {
      this.restore(taken);
      this.deps.log.error({ err, devices: taken.states.size, events: taken.events.length }, 'health state flush failed');
    }
  }
}

/** The reason stored with a `lost` event (`{"reason": ...}`); silence when unreadable. */
function lostReasonOf(data: string): 'silence' | 'will' {
  try {
    return (JSON.parse(data) as { reason?: unknown }).reason === 'will' ? 'will' : 'silence';
  } catch {
    return 'silence';
  }
}
