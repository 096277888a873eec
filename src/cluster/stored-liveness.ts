import type { Statement } from '../db/database.js';
import type { Database } from '../db/database.js';

/** A device's liveness as the leader last stored it. `at`: wall ms of that state's start, null when unknown. */
export interface StoredState {
  state: 'online' | 'offline' | 'lost' | 'unknown';
  at: number | null;
}

/**
 * Liveness for a cluster follower's API. The evaluator, and so the live view, runs on the leader only; it
 * writes every change of state in its tick's transaction (`device_state.online` / `state_changed_at`, and
 * an `events` row of kind online|back|offline|lost at that same instant). A follower reads that back: the
 * leader's view as of its last tick (at most `health.tickMs` old, plus a failover while no leader ticks).
 *
 * online = 1 is `online`; online = 0 is `lost` or `offline` (a Last Will still within its grace) by the event
 * of that instant, the same join `HealthStateWriter.storedLosses` makes at start. Never heard of, or written
 * only by ingest (no state change yet): `unknown`. Not stored, so not shown: `restarting` (install grace; the
 * store still says online). One primary-key lookup plus an indexed event lookup (`events(device_id, ts)`).
 */
export class StoredLiveness {
  private query: Statement | undefined;

  constructor(private readonly db: Database) {}

  stateOf(deviceId: string): StoredState {
    this.query ??= this.db.prepare(`
      SELECT s.online, s.state_changed_at AS at,
        (SELECT e.kind FROM events e WHERE e.device_id = s.device_id AND e.ts = s.state_changed_at
           AND e.kind IN ('online', 'back', 'offline', 'lost') ORDER BY e.id DESC LIMIT 1) AS kind
      FROM device_state s WHERE s.device_id = ?`);
    const row = this.query.get(deviceId) as { online: number; at: number | null; kind: string | null } | undefined;
    if (!row || row.at === null || row.kind === null) return { state: 'unknown', at: null };
    if (row.online === 1) return { state: 'online', at: row.at };
    return { state: row.kind === 'offline' ? 'offline' : row.kind === 'lost' ? 'lost' : 'unknown', at: row.at };
  }
}
