import type { Statement } from 'better-sqlite3';
import type { Database } from '../db/database.js';
import type { Clock, TimerHandle } from '../clock.js';
import type { Logger } from '../log.js';
import type { Heartbeat } from '../protocol/types.js';

interface Pending {
  heartbeat?: Heartbeat;
  receivedAt?: number;
  count: number;
  connected?: boolean;
}

export interface DeviceStateWriterDeps {
  db: Database;
  clock: Clock;
  log: Logger;
  flushIntervalMs: number;
  maxBatch: number;
  onFlush?(devices: number, ms: number): void;
}

/**
 * Keeps only the latest heartbeat per device and writes them in one transaction per flush: a device
 * that beats 10 times between flushes costs one row write, and a flush of 10,000 devices is one commit.
 */
export class DeviceStateWriter {
  private pending = new Map<string, Pending>();
  private timer?: TimerHandle;
  private stopped = false;
  private upsertHeartbeat?: Statement;
  private upsertConnected?: Statement;

  constructor(private readonly deps: DeviceStateWriterDeps) {}

  start(): void {
    const db = this.deps.db;
    this.upsertHeartbeat = db.prepare(`
      INSERT INTO device_state (device_id, last_seen, seq, boot_id, interval_s, agent_version, software_version, integrity, heartbeat, heartbeats)
      VALUES (@id, @lastSeen, @seq, @bootId, @intervalS, @agentVersion, @softwareVersion, @integrity, @heartbeat, @count)
      ON CONFLICT(device_id) DO UPDATE SET last_seen = excluded.last_seen, seq = excluded.seq, boot_id = excluded.boot_id,
        interval_s = excluded.interval_s, agent_version = excluded.agent_version, software_version = excluded.software_version,
        integrity = excluded.integrity, heartbeat = excluded.heartbeat, heartbeats = device_state.heartbeats + excluded.heartbeats`);
    this.upsertConnected = db.prepare(`
      INSERT INTO device_state (device_id, connected) VALUES (?, ?)
      ON CONFLICT(device_id) DO UPDATE SET connected = excluded.connected`);
    this.stopped = false;
    this.schedule();
  }

  /** Flush what is pending and stop the timer (SIGTERM path: nothing received is lost). */
  stop(): void {
    this.stopped = true;
    this.deps.clock.clearTimeout(this.timer);
    this.flush();
  }

  heartbeat(deviceId: string, heartbeat: Heartbeat, receivedAt: number): void {
    const p = this.slot(deviceId);
    p.heartbeat = heartbeat;
    p.receivedAt = receivedAt;
    p.count++;
    if (this.pending.size >= this.deps.maxBatch) this.flush();
  }

  connected(deviceId: string, connected: boolean): void {
    this.slot(deviceId).connected = connected;
  }

  pendingCount(): number {
    return this.pending.size;
  }

  flush(): void {
    if (this.pending.size === 0 || !this.upsertHeartbeat) return;
    const batch = this.pending;
    this.pending = new Map();
    const started = performance.now();
    const upsertHeartbeat = this.upsertHeartbeat;
    const upsertConnected = this.upsertConnected!;
    try {
      this.deps.db.transaction(() => {
        for (const [id, p] of batch) {
          if (p.heartbeat) {
            const hb = p.heartbeat;
            upsertHeartbeat.run({
              id,
              lastSeen: p.receivedAt,
              seq: hb.seq,
              bootId: hb.bootId ?? null,
              intervalS: hb.intervalS,
              agentVersion: hb.agentVersion,
              softwareVersion: hb.softwareVersion,
              integrity: hb.integrity ?? null,
              heartbeat: JSON.stringify(hb),
              count: p.count,
            });
          }
          if (p.connected !== undefined) upsertConnected.run(id, p.connected ? 1 : 0);
        }
      })();
    } catch (err) {
      // A device deleted between receive and flush violates the foreign key; keep the rest.
      this.deps.log.error({ err, devices: batch.size }, 'device state flush failed');
    }
    this.deps.onFlush?.(batch.size, performance.now() - started);
  }

  private slot(deviceId: string): Pending {
    let p = this.pending.get(deviceId);
    if (!p) {
      p = { count: 0 };
      this.pending.set(deviceId, p);
    }
    return p;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = this.deps.clock.setTimeout(() => {
      this.flush();
      this.schedule();
    }, this.deps.flushIntervalMs);
  }
}
