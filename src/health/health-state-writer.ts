import type { Statement } from 'better-sqlite3';
import type { Database } from '../db/database.js';
import type { Logger } from '../log.js';

export type HealthEventKind = 'online' | 'offline' | 'lost' | 'back';

/**
 * The evaluator's share of the store: `device_state.online` / `state_changed_at` and the `events` rows of kind
 * online|offline|lost|back. Changes are queued on the hot path and written in one transaction per tick; the
 * UPSERT touches only these two columns because the ingest writer upserts the others with its own statement.
 */
export class HealthStateWriter {
  private states = new Map<string, { online: number; at: number }>();
  private events: { ts: number; deviceId: string; kind: HealthEventKind; data: string }[] = [];
  private upsertState?: Statement;
  private insertEvent?: Statement;

  constructor(private readonly deps: { db: Database; log: Logger }) {}

  start(): void {
    this.upsertState = this.deps.db.prepare(`
      INSERT INTO device_state (device_id, online, state_changed_at) VALUES (?, ?, ?)
      ON CONFLICT(device_id) DO UPDATE SET online = excluded.online, state_changed_at = excluded.state_changed_at`);
    this.insertEvent = this.deps.db.prepare('INSERT INTO events (ts, device_id, kind, data) VALUES (?, ?, ?, ?)');
  }

  change(deviceId: string, online: boolean, at: number, kind: HealthEventKind, data?: Record<string, unknown>): void {
    this.states.set(deviceId, { online: online ? 1 : 0, at });
    this.events.push({ ts: at, deviceId, kind, data: data ? JSON.stringify(data) : '{}' });
  }

  pending(): number {
    return this.events.length;
  }

  flush(): void {
    if (this.events.length === 0 && this.states.size === 0) return;
    const upsert = this.upsertState;
    const insert = this.insertEvent;
    if (!upsert || !insert || !this.deps.db.open) return;
    const states = this.states;
    const events = this.events;
    this.states = new Map();
    this.events = [];
    try {
      this.deps.db.transaction(() => {
        for (const [id, s] of states) {
          try {
            upsert.run(id, s.online, s.at);
          } catch (err) {
            // A device deleted between the change and the flush violates the foreign key; keep the rest.
            this.deps.log.warn({ err, deviceId: id }, 'device state write skipped');
          }
        }
        for (const e of events) insert.run(e.ts, e.deviceId, e.kind, e.data);
      })();
    } catch (err) {
      this.deps.log.error({ err, devices: states.size, events: events.length }, 'health state flush failed');
    }
  }
}
