import { Worker } from 'node:worker_threads';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DeviceStateRowWriter, type StateRow } from './device-state-rows.js';
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

/** What a device's row last said beyond "still alive" (compared to decide whether a write can wait). */
interface Written {
  at: number;
  softwareVersion: string;
  agentVersion: string;
  integrity: string | undefined;
  bootId: string | undefined;
  intervalS: number;
  patch: string | undefined;
}

function patchKey(hb: Heartbeat): string | undefined {
  return hb.patch ? `${hb.patch.rolloutId ?? ''}/${hb.patch.patchId}/${hb.patch.state}` : undefined;
}

/** A stable share of `refreshMs / 2` for this device id (FNV-1a of the id). */
function spreadMs(id: string, refreshMs: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  return (h >>> 0) % Math.max(1, Math.floor(refreshMs / 2));
}

/** Does this heartbeat change what the stored row says, beyond liveness (seq, ts, last seen, health figures)? */
function changesRow(hb: Heartbeat, w: Written): boolean {
  return (
    hb.softwareVersion !== w.softwareVersion ||
    hb.agentVersion !== w.agentVersion ||
    hb.integrity !== w.integrity ||
    hb.bootId !== w.bootId ||
    hb.intervalS !== w.intervalS ||
    patchKey(hb) !== w.patch
  );
}

export interface DeviceStateWriterDeps {
  db: Database;
  clock: Clock;
  log: Logger;
  flushIntervalMs: number;
  maxBatch: number;
  /** Rows per transaction when a timed flush is large (default 250: a few ms each). */
  chunkRows?: number;
  /**
   * A device whose heartbeats only say it is still alive (same versions, integrity, boot, interval and
   * patch state) has its row rewritten at most this often (default 0: every flush). Issue 12: a chatty
   * device cost one SQLite upsert per flush for nothing the daemon reads back; its last-seen time in the
   * database may then lag by this much (the evaluator keeps its own, in memory).
   */
  refreshMs?: number;
  /**
   * Write from a worker thread with its own connection to this database file (production), so
   * SQLite never blocks the event loop that acknowledges packets. Without it, writes are chunked
   * in-process (tests, `:memory:`).
   */
  workerFile?: string;
}

/**
 * Keeps only the latest heartbeat per device and writes them in one transaction per flush: a device
 * that beats 10 times between flushes costs one row write, and a flush of 10,000 devices is one commit.
 */
export class DeviceStateWriter {
  private pending = new Map<string, Pending>();
  private readonly written = new Map<string, Written>();
  private lastEarlyFlush = Number.NEGATIVE_INFINITY;
  private timer?: TimerHandle;
  private stopped = false;
  private rowWriter?: DeviceStateRowWriter;
  private worker?: Worker;

  constructor(private readonly deps: DeviceStateWriterDeps) {}

  start(): void {
    const workerScript = fileURLToPath(new URL('./device-state-worker.js', import.meta.url));
    // Under a TypeScript test runner only the .ts source exists: write in-process there.
    if (this.deps.workerFile && existsSync(workerScript)) {
      this.worker = new Worker(workerScript, { workerData: { file: this.deps.workerFile, chunkRows: this.deps.chunkRows ?? 250 } });
      this.worker.on('message', (msg: { error?: string; rows?: number }) => {
        if (msg.error) this.deps.log.error({ err: { message: msg.error }, devices: msg.rows }, 'device state write failed');
      });
      this.worker.on('error', (err) => this.deps.log.error({ err }, 'device state writer worker failed'));
      this.worker.unref();
    } else {
      this.rowWriter = new DeviceStateRowWriter(this.deps.db);
    }
    this.stopped = false;
    this.schedule();
  }

  /** Flush what is pending, let the worker write it, and stop (SIGTERM path: nothing received is lost). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.deps.clock.clearTimeout(this.timer);
    this.flush();
    const worker = this.worker;
    if (!worker) return;
    this.worker = undefined;
    await new Promise<void>((resolve) => {
      worker.on('message', (msg: { closed?: boolean }) => {
        if (msg.closed) resolve();
      });
      worker.once('exit', () => resolve());
      worker.postMessage({ close: true });
    });
  }
  heartbeat(deviceId: string, heartbeat: Heartbeat, receivedAt: number): void {
    const p = this.slot(deviceId);
    p.heartbeat = heartbeat;
    p.receivedAt = receivedAt;
    p.count++;
    if (this.pending.size >= this.deps.maxBatch) {
      // Deferred liveness-only entries stay pending, so a large fleet can sit above maxBatch: flush
      // early at most once per flush period, not on every heartbeat.
      const now = this.deps.clock.now();
      if (now - this.lastEarlyFlush >= this.deps.flushIntervalMs) {
        this.lastEarlyFlush = now;
        this.flush(false);
      }
    }
  }

  connected(deviceId: string, connected: boolean): void {
    this.slot(deviceId).connected = connected;
  }

  pendingCount(): number {
    return this.pending.size;
  }

  /**
   * Write everything pending. With a worker the rows are handed over in one message; in-process,
   * large batches are written in chunks of `chunkRows` (one transaction each) with a yield to the
   * event loop in between, unless `sync` (stop).
   */
  flush(sync = true): void {
    if (this.pending.size === 0 || (!this.worker && !this.rowWriter)) return;
    const rows: StateRow[] = [];
    const now = this.deps.clock.now();
    const refreshMs = sync ? 0 : (this.deps.refreshMs ?? 0);
    for (const [id, p] of this.pending) {
      const hb = p.heartbeat;
      if (hb) {
        const w = this.written.get(id);
        // Only "still alive" since the last write, and written recently: let it wait (issue 12).
        if (refreshMs > 0 && p.connected === undefined && w && now - w.at < refreshMs && !changesRow(hb, w)) continue;
        rows.push([id, p.receivedAt!, hb.seq, hb.bootId ?? null, hb.intervalS, hb.agentVersion, hb.softwareVersion, hb.integrity ?? null, JSON.stringify(hb), p.count]);
        if ((this.deps.refreshMs ?? 0) > 0) {
          // Backdated by a per-device share of refreshMs, so a fleet written in one flush does not come
          // due again all in one later flush (one big flush every refreshMs would block the event loop).
          this.written.set(id, { at: now - spreadMs(id, this.deps.refreshMs!), softwareVersion: hb.softwareVersion, agentVersion: hb.agentVersion, integrity: hb.integrity, bootId: hb.bootId, intervalS: hb.intervalS, patch: patchKey(hb) });
        }
      }
      if (p.connected !== undefined) rows.push([id, p.connected ? 1 : 0]);
      this.pending.delete(id);
    }
    if (rows.length === 0) return;
    if (this.worker) {
      this.worker.postMessage({ rows });
      return;
    }
    const chunk = this.deps.chunkRows ?? 250;
    if (sync || rows.length <= chunk) {
      this.writeRows(rows);
      return;
    }
    let offset = 0;
    const step = () => {
      this.writeRows(rows.slice(offset, offset + chunk));
      offset += chunk;
      if (offset < rows.length) setImmediate(step);
    };
    step();
  }

  private writeRows(rows: StateRow[]): void {
    try {
      this.rowWriter!.write(rows);
    } catch (err) {
      // A device deleted between receive and flush violates the foreign key; keep the rest.
      this.deps.log.error({ err, devices: rows.length }, 'device state flush failed');
    }
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
      this.flush(false);
      this.schedule();
    }, this.deps.flushIntervalMs);
  }
}
