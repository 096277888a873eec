import type { Database, Statement } from '../db/database.js';

/**
 * One device's coalesced state update, as plain data so it can cross to a worker thread:
 * [deviceId, lastSeen, seq, bootId, intervalS, agentVersion, softwareVersion, integrity, heartbeatJson, count]
 * for heartbeats, [deviceId, lastSeen, seq, count] for beats that only say "still alive" (issue 12), or
 * [deviceId, connected] for a connection change.
 */
export type HeartbeatRow = [string, number, number, string | null, number, string, string, string | null, string, number];
export type LivenessRow = [string, number, number, number];
export type ConnectedRow = [string, 0 | 1];
export type StateRow = HeartbeatRow | LivenessRow | ConnectedRow;

/** Writes rows to SQLite, one transaction per call. Used in-process and inside the writer worker. */
export class DeviceStateRowWriter {
  private readonly upsertHeartbeat: Statement;
  private readonly upsertConnected: Statement;
  private readonly updateLiveness: Statement;

  constructor(private readonly db: Database) {
    this.upsertHeartbeat = db.prepare(`
      INSERT INTO device_state (device_id, last_seen, seq, boot_id, interval_s, agent_version, software_version, integrity, heartbeat, heartbeats)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT(device_id) DO UPDATE SET last_seen = excluded.last_seen, seq = excluded.seq, boot_id = excluded.boot_id,
        interval_s = excluded.interval_s, agent_version = excluded.agent_version, software_version = excluded.software_version,
        integrity = excluded.integrity, heartbeat = excluded.heartbeat, heartbeats = device_state.heartbeats + excluded.heartbeats`);
    this.upsertConnected = db.prepare(`
      INSERT INTO device_state (device_id, connected) VALUES (?, ?)
      ON CONFLICT(device_id) DO UPDATE SET connected = excluded.connected`);
    // A liveness row follows a whole row of the same device, so the row exists; if that write failed, nothing to do.
    this.updateLiveness = db.prepare('UPDATE device_state SET last_seen = ?, seq = ?, heartbeats = heartbeats + ? WHERE device_id = ?');
  }

  /** Throws on failure (e.g. a device deleted between receive and write); the caller logs. */
  write(rows: readonly StateRow[]): void {
    if (!this.db.open) return;
    // Rows locked in ascending device id, as the health tick writes its states: on PostgreSQL two writers
    // (this worker, the evaluator, other instances) then never wait on each other in a cycle (a deadlock).
    // The sort is stable: a device's rows keep their order.
    const ordered = [...rows].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    this.db.transaction(() => {
      for (const row of ordered) {
        if (row.length === 2) this.upsertConnected.run(row[0], row[1]);
        else if (row.length === 4) this.updateLiveness.run(row[1], row[2], row[3], row[0]);
        else this.upsertHeartbeat.run(...row);
      }
    })();
  }
}
