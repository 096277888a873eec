import { Worker } from 'node:worker_threads';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DeviceStateRowWriter, type StateRow } from './device-state-rows.js';
import type { Database } from '../db/database.js';
import type { Clock, TimerHandle } from '../clock.js';
import type { Logger } from '../log.js';
import type { Heartbeat } from '../protocol/types.js';

/**
 * One device's slot, allocated at its first heartbeat and updated in place ever after. Issue 12: the hot path
 * allocates nothing per beat for the store but the JSON of a row that must be rewritten, and keeps no parsed
 * heartbeat; every device's latest heartbeat held until its refresh survived
 * the young generation at fleet rates and was promoted, and old-generation garbage at heartbeat rate is what
 * made the long mark-compact pauses.
 */
interface Slot {
  readonly id: string;
  /** This device's stable share of refreshMs/2 (spreadMs), so a fleet written at once is not due at once again. */
  readonly spread: number;
  /** The latest heartbeat's liveness figures (wall ms, its seq), and how many beats since the last write. */
  receivedAt: number;
  seq: number;
  count: number;
  /** What the row says once `row` is written: compared to decide whether a beat can wait. */
  softwareVersion: string;
  agentVersion: string;
  integrity: string | undefined;
  bootId: string | undefined;
  intervalS: number;
  patchRolloutId: string | undefined;
  patchId: string | undefined;
  patchState: string | undefined;
  /**
   * The JSON of the beat that made the row due, serialized at once: the next flush writes the whole row with it.
   * A flat string until then, never the parsed heartbeat (a few dozen objects that would survive a scavenge at
   * fleet rates and be promoted). Later beats before that flush update only the liveness figures, unless they
   * change the row again.
   */
  rowJson: string | undefined;
  /** Liveness figures newer than the stored row (written as a liveness row when due). */
  alive: boolean;
  /** A connection change waiting for the next flush. */
  connected: boolean | undefined;
  /** Wall ms from which a beat that changes nothing is written again (a whole row at arrival, or a liveness row). */
  dueAt: number;
}

/** A stable share of `refreshMs / 2` for this device id (FNV-1a of the id). */
function spreadMs(id: string, refreshMs: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  return (h >>> 0) % Math.max(1, Math.floor(refreshMs / 2));
}

/** Does this heartbeat change what the stored row says, beyond liveness (seq, ts, last seen, health figures)? */
function changesRow(hb: Heartbeat, w: Slot): boolean {
  return (
    hb.softwareVersion !== w.softwareVersion ||
    hb.agentVersion !== w.agentVersion ||
    hb.integrity !== w.integrity ||
    hb.bootId !== w.bootId ||
    hb.intervalS !== w.intervalS ||
    hb.patch?.rolloutId !== w.patchRolloutId ||
    hb.patch?.patchId !== w.patchId ||
    hb.patch?.state !== w.patchState
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
   * Write from a worker thread with its own connection (production): to this SQLite file, or to this
   * PostgreSQL URL (`store.url`), so the store never blocks the event loop that acknowledges packets.
   * Without it, writes are chunked in-process (tests, `:memory:`).
   */
  worker?: { file: string } | { url: string };
}

/**
 * Keeps only the latest state per device and writes them in one transaction per flush: a device
 * that beats 10 times between flushes costs one row write, and a flush of 10,000 devices is one commit.
 * A beat that says only "still alive" is written as its figures (last seen, seq, count) when the device's
 * refresh is due; the row's JSON is rewritten by the first beat after that, so it is at most refreshMs plus
 * one interval old.
 */
export class DeviceStateWriter {
  private readonly slots = new Map<string, Slot>();
  /** Slots with something unwritten: a whole row, liveness figures, or a connection change. */
  private readonly dirty = new Set<Slot>();
  private lastEarlyFlush = Number.NEGATIVE_INFINITY;
  private timer?: TimerHandle;
  private stopped = false;
  private rowWriter?: DeviceStateRowWriter;
  private worker?: Worker;

  constructor(private readonly deps: DeviceStateWriterDeps) {}

  start(): void {
    const workerScript = fileURLToPath(new URL('./device-state-worker.js', import.meta.url));
    // Under a TypeScript test runner only the .ts source exists: write in-process there.
    if (this.deps.worker && existsSync(workerScript)) {
      this.worker = new Worker(workerScript, { workerData: { ...this.deps.worker, chunkRows: this.deps.chunkRows ?? 250 } });
      this.worker.on('message', (msg: { error?: string; failed?: StateRow[] }) => {
        if (!msg.error) return;
        this.deps.log.error({ err: { message: msg.error }, devices: msg.failed?.length }, 'device state write failed; retried at the next flush');
        if (msg.failed) this.restore(msg.failed);
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
  /**
   * Hot path, O(1) and allocation-free unless the row must be rewritten: a beat that changes what the row says
   * (versions, digest, boot, interval, patch state), the first one, or one after the device's refresh is due
   * is serialized for a whole row at the next flush; any other only updates the liveness figures in place.
   */
  heartbeat(deviceId: string, heartbeat: Heartbeat, receivedAt: number): void {
    const slot = this.slot(deviceId);
    slot.receivedAt = receivedAt;
    slot.seq = heartbeat.seq;
    slot.count++;
    // A whole row already waiting is rebuilt from this beat, so the stored JSON and columns agree.
    if (changesRow(heartbeat, slot) || (slot.rowJson === undefined && this.deps.clock.now() >= slot.dueAt)) this.noteRow(slot, heartbeat);
    else slot.alive = true;
    this.dirty.add(slot);
    if (this.dirty.size >= this.deps.maxBatch) {
      // Deferred liveness-only entries stay dirty, so a large fleet can sit above maxBatch: flush
      // early at most once per flush period, not on every heartbeat.
      const now = this.deps.clock.now();
      if (now - this.lastEarlyFlush >= this.deps.flushIntervalMs) {
        this.lastEarlyFlush = now;
        this.flush(false);
      }
    }
  }

  connected(deviceId: string, connected: boolean): void {
    const slot = this.slot(deviceId);
    slot.connected = connected;
    this.dirty.add(slot);
  }

  /** Devices with something not yet handed to the store. */
  pendingCount(): number {
    return this.dirty.size;
  }

  /**
   * Write everything due. With a worker the rows are handed over in one message; in-process, large batches are
   * written in chunks of `chunkRows` (one transaction each) with a yield to the event loop in between, unless
   * `sync` (stop), which also writes every liveness figure not yet due. The cost follows the devices heard from
   * since their last write, not the fleet.
   */
  flush(sync = true): void {
    if (this.dirty.size === 0 || (!this.worker && !this.rowWriter)) return;
    const rows: StateRow[] = [];
    const now = this.deps.clock.now();
    for (const slot of this.dirty) {
      let written = false;
      const json = slot.rowJson;
      if (json !== undefined) {
        rows.push([slot.id, slot.receivedAt, slot.seq, slot.bootId ?? null, slot.intervalS, slot.agentVersion, slot.softwareVersion, slot.integrity ?? null, json, slot.count]);
        slot.rowJson = undefined;
        written = true;
      } else if (slot.alive && (sync || now >= slot.dueAt || slot.connected !== undefined)) {
        // Only "still alive" since the last write: its figures, not the JSON again (issue 12).
        rows.push([slot.id, slot.receivedAt, slot.seq, slot.count]);
        written = true;
      }
      if (written) {
        slot.alive = false;
        slot.count = 0;
        slot.dueAt = this.nextDue(slot, now);
      }
      if (slot.connected !== undefined) {
        rows.push([slot.id, slot.connected ? 1 : 0]);
        slot.connected = undefined;
      }
      if (!slot.alive) this.dirty.delete(slot);
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

  /** This beat's row is to be written whole at the next flush: remember what it says. */
  private noteRow(slot: Slot, hb: Heartbeat): void {
    slot.softwareVersion = hb.softwareVersion;
    slot.agentVersion = hb.agentVersion;
    slot.integrity = hb.integrity;
    slot.bootId = hb.bootId;
    slot.intervalS = hb.intervalS;
    slot.patchRolloutId = hb.patch?.rolloutId;
    slot.patchId = hb.patch?.patchId;
    slot.patchState = hb.patch?.state;
    slot.alive = false;
    slot.rowJson = JSON.stringify(hb);
  }

  /** When a beat that changes nothing is written again: refreshMs after this write, less the device's spread. */
  private nextDue(slot: Slot, now: number): number {
    const refreshMs = this.deps.refreshMs ?? 0;
    return refreshMs > 0 ? now + refreshMs - slot.spread : now;
  }

  private writeRows(rows: StateRow[]): void {
    try {
      this.rowWriter!.write(rows);
    } catch (err) {
      this.deps.log.error({ err, devices: rows.length }, 'device state flush failed; retried at the next flush');
      this.restore(rows);
    }
  }

  /**
   * Rows whose write failed (a lock or statement timeout, the store unreachable) go back into their slots, so
   * the next flush writes them again (durability: a failed step is retried, never dropped). What arrived since
   * wins: a newer whole row stays, the failed beats' count is added, a newer connection state stays. A device
   * no longer known (revoked and gone) is dropped.
   */
  private restore(rows: readonly StateRow[]): void {
    for (const row of rows) {
      const slot = this.slots.get(row[0]);
      if (!slot) continue;
      if (row.length === 2) {
        slot.connected ??= row[1] === 1;
      } else {
        const [, receivedAt, seq] = row;
        if (receivedAt > slot.receivedAt) {
          slot.receivedAt = receivedAt;
          slot.seq = seq;
        }
        if (row.length === 4) {
          slot.count += row[3];
          if (slot.rowJson === undefined) slot.alive = true;
        } else {
          slot.count += row[9];
          // No newer whole row since: the slot's fields are still the failed row's; write it again.
          if (slot.rowJson === undefined) {
            slot.rowJson = row[8];
            slot.alive = false;
          }
        }
      }
      this.dirty.add(slot);
    }
  }

  private slot(deviceId: string): Slot {
    let slot = this.slots.get(deviceId);
    if (!slot) {
      slot = {
        id: deviceId,
        spread: (this.deps.refreshMs ?? 0) > 0 ? spreadMs(deviceId, this.deps.refreshMs!) : 0,
        receivedAt: 0,
        seq: 0,
        count: 0,
        softwareVersion: '',
        agentVersion: '',
        integrity: undefined,
        bootId: undefined,
        intervalS: 0,
        patchRolloutId: undefined,
        patchId: undefined,
        patchState: undefined,
        rowJson: undefined,
        alive: false,
        connected: undefined,
        // The first beat is always written whole.
        dueAt: Number.NEGATIVE_INFINITY,
      };
      this.slots.set(deviceId, slot);
    }
    return slot;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = this.deps.clock.setTimeout(() => {
      this.flush(false);
      this.schedule();
    }, this.deps.flushIntervalMs);
  }
}
