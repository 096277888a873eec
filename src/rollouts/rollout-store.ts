import { writeRows, type Database } from '../db/database.js';
import type { RolloutSpec } from './rollout-spec.js';
import type { DeviceRolloutState, RolloutState } from './rollout-states.js';

/** SQLite access for rollouts (migration 004). Synchronous (better-sqlite3): a committed write is on disk in WAL. */
export interface RolloutRow {
  id: string;
  patchId: string;
  spec: RolloutSpec;
  state: RolloutState;
  currentWave: number;
  waveStartedAt: number | null;
  createdAt: number;
  updatedAt: number;
  startedAt: number | null;
  endedAt: number | null;
  reason: string | null;
}

export interface RolloutDeviceRow {
  deviceId: string;
  wave: number | null;
  state: DeviceRolloutState;
  offeredAt: number | null;
  installedAt: number | null;
  doneAt: number | null;
  progressAt: number | null;
  joinedAt: number | null;
  detail: string | null;
  /** Offers sent to this device in this rollout (first offer + retries). */
  attempts: number;
  /** Pending for a retry: not offered again before this. */
  retryAt: number | null;
  /** `abort --force` asked this device to cancel (the PatchCancel itself is owed by the patch service). */
  cancelRequestedAt: number | null;
}

export interface RolloutEventRow {
  id: number;
  ts: number;
  kind: string;
  deviceId: string | null;
  data: Record<string, unknown>;
}

interface RawRollout {
  id: string;
  patch_id: string;
  spec: string;
  state: RolloutState;
  current_wave: number;
  wave_started_at: number | null;
  created_at: number;
  updated_at: number;
  started_at: number | null;
  ended_at: number | null;
  reason: string | null;
}

interface RawDevice {
  device_id: string;
  wave: number | null;
  state: DeviceRolloutState;
  offered_at: number | null;
  installed_at: number | null;
  done_at: number | null;
  progress_at: number | null;
  joined_at: number | null;
  detail: string | null;
  attempts: number;
  retry_at: number | null;
  cancel_requested_at: number | null;
}

const ACTIVE = "('scheduled','running','paused')";

function toRollout(r: RawRollout): RolloutRow {
  return {
    id: r.id,
    patchId: r.patch_id,
    spec: JSON.parse(r.spec) as RolloutSpec,
    state: r.state,
    currentWave: r.current_wave,
    waveStartedAt: r.wave_started_at,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    startedAt: r.started_at,
    endedAt: r.ended_at,
    reason: r.reason,
  };
}

function toDevice(r: RawDevice): RolloutDeviceRow {
  return {
    deviceId: r.device_id,
    wave: r.wave,
    state: r.state,
    offeredAt: r.offered_at,
    installedAt: r.installed_at,
    doneAt: r.done_at,
    progressAt: r.progress_at,
    joinedAt: r.joined_at,
    detail: r.detail,
    attempts: r.attempts,
    retryAt: r.retry_at,
    cancelRequestedAt: r.cancel_requested_at,
  };
}

export class RolloutStore {
  constructor(private readonly db: Database) {}

  /** r-YYYYMMDD-N: the UTC day of creation and a per-day sequence. */
  nextId(now: number): string {
    const day = new Date(now).toISOString().slice(0, 10).replaceAll('-', '');
    const prefix = `r-${day}-`;
    const rows = this.db.prepare('SELECT id FROM rollouts WHERE id LIKE ?').all(`${prefix}%`) as { id: string }[];
    const max = rows.reduce((m, r) => Math.max(m, Number(r.id.slice(prefix.length)) || 0), 0);
    return `${prefix}${max + 1}`;
  }

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  insertRollout(row: RolloutRow, devices: readonly RolloutDeviceRow[]): void {
    this.db
      .prepare(
        `INSERT INTO rollouts (id, patch_id, spec, state, current_wave, wave_started_at, created_at, updated_at, started_at, ended_at, reason)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(row.id, row.patchId, JSON.stringify(row.spec), row.state, row.currentWave, row.waveStartedAt, row.createdAt, row.updatedAt, row.startedAt, row.endedAt, row.reason);
    // One statement per 250 devices: a rollout of 10,000 is 40 statements, not 10,000 (PostgreSQL).
    writeRows(
      this.db,
      'INSERT INTO rollout_devices (rollout_id, device_id, wave, state, offered_at, installed_at, done_at, progress_at, joined_at, detail, attempts, retry_at, cancel_requested_at) VALUES',
      '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      devices.map((d) => [row.id, d.deviceId, d.wave, d.state, d.offeredAt, d.installedAt, d.doneAt, d.progressAt, d.joinedAt, d.detail, d.attempts, d.retryAt, d.cancelRequestedAt]),
    );
  }

  insertDevice(rolloutId: string, d: RolloutDeviceRow): void {
    this.db
      .prepare(
        `INSERT INTO rollout_devices (rollout_id, device_id, wave, state, offered_at, installed_at, done_at, progress_at, joined_at, detail, attempts, retry_at, cancel_requested_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(rolloutId, d.deviceId, d.wave, d.state, d.offeredAt, d.installedAt, d.doneAt, d.progressAt, d.joinedAt, d.detail, d.attempts, d.retryAt, d.cancelRequestedAt);
  }

  updateRollout(row: RolloutRow): void {
    this.db
      .prepare(
        `UPDATE rollouts SET state = ?, current_wave = ?, wave_started_at = ?, updated_at = ?, started_at = ?, ended_at = ?, reason = ? WHERE id = ?`,
      )
      .run(row.state, row.currentWave, row.waveStartedAt, row.updatedAt, row.startedAt, row.endedAt, row.reason, row.id);
  }

  updateDevice(rolloutId: string, d: RolloutDeviceRow): void {
    this.db
      .prepare(
        `UPDATE rollout_devices SET wave = ?, state = ?, offered_at = ?, installed_at = ?, done_at = ?, progress_at = ?, detail = ?,
           attempts = ?, retry_at = ?, cancel_requested_at = ?
         WHERE rollout_id = ? AND device_id = ?`,
      )
      .run(d.wave, d.state, d.offeredAt, d.installedAt, d.doneAt, d.progressAt, d.detail, d.attempts, d.retryAt, d.cancelRequestedAt, rolloutId, d.deviceId);
  }

  event(rolloutId: string, ts: number, kind: string, deviceId: string | null = null, data: Record<string, unknown> = {}): void {
    this.db.prepare('INSERT INTO rollout_events (rollout_id, ts, kind, device_id, data) VALUES (?, ?, ?, ?, ?)').run(rolloutId, ts, kind, deviceId, JSON.stringify(data));
  }

  get(id: string): RolloutRow | undefined {
    const r = this.db.prepare('SELECT * FROM rollouts WHERE id = ?').get(id) as RawRollout | undefined;
    return r && toRollout(r);
  }

  list(): RolloutRow[] {
    return (this.db.prepare('SELECT * FROM rollouts ORDER BY created_at DESC, id DESC').all() as RawRollout[]).map(toRollout);
  }

  active(): RolloutRow[] {
    return (this.db.prepare(`SELECT * FROM rollouts WHERE state IN ${ACTIVE} ORDER BY created_at, id`).all() as RawRollout[]).map(toRollout);
  }

  devices(rolloutId: string): RolloutDeviceRow[] {
    return (this.db.prepare('SELECT * FROM rollout_devices WHERE rollout_id = ? ORDER BY device_id').all(rolloutId) as RawDevice[]).map(toDevice);
  }

  device(rolloutId: string, deviceId: string): RolloutDeviceRow | undefined {
    const r = this.db.prepare('SELECT * FROM rollout_devices WHERE rollout_id = ? AND device_id = ?').get(rolloutId, deviceId) as RawDevice | undefined;
    return r && toDevice(r);
  }

  /** State counts per wave (wave null = excluded at planning). */
  waveCounts(rolloutId: string): { wave: number | null; state: DeviceRolloutState; n: number }[] {
    return this.db
      .prepare('SELECT wave, state, COUNT(*) AS n FROM rollout_devices WHERE rollout_id = ? GROUP BY wave, state')
      .all(rolloutId) as { wave: number | null; state: DeviceRolloutState; n: number }[];
  }

  excluded(rolloutId: string, limit: number): { deviceId: string; wave: number | null; reason: string }[] {
    return (
      this.db
        .prepare(`SELECT device_id, wave, detail FROM rollout_devices WHERE rollout_id = ? AND state = 'excluded' ORDER BY device_id LIMIT ?`)
        .all(rolloutId, limit) as { device_id: string; wave: number | null; detail: string | null }[]
    ).map((r) => ({ deviceId: r.device_id, wave: r.wave, reason: r.detail ?? '' }));
  }

  events(rolloutId: string, limit: number): RolloutEventRow[] {
    return (
      this.db
        .prepare('SELECT id, ts, kind, device_id, data FROM rollout_events WHERE rollout_id = ? ORDER BY id DESC LIMIT ?')
        .all(rolloutId, limit) as { id: number; ts: number; kind: string; device_id: string | null; data: string }[]
    )
      .reverse()
      .map((r) => ({ id: r.id, ts: r.ts, kind: r.kind, deviceId: r.device_id, data: JSON.parse(r.data) as Record<string, unknown> }));
  }

  /** Devices in an active rollout (any patch): a device takes part in at most one at a time. */
  busyDevices(): Map<string, string> {
    const busy = new Map<string, string>();
    const active = this.db
      .prepare(
        `SELECT d.device_id, d.rollout_id FROM rollout_devices d JOIN rollouts r ON r.id = d.rollout_id
         WHERE r.state IN ${ACTIVE} AND d.state != 'excluded'`,
      )
      .all() as { device_id: string; rollout_id: string }[];
    for (const r of active) if (!busy.has(r.device_id)) busy.set(r.device_id, `in active rollout ${r.rollout_id}`);
    return busy;
  }

  /** Failed devices of a rollout with their reasons (the detail holds the tail of the failing command's output). */
  failed(rolloutId: string, limit: number): { deviceId: string; wave: number | null; reason: string; attempts: number }[] {
    return (
      this.db
        .prepare(`SELECT device_id, wave, detail, attempts FROM rollout_devices WHERE rollout_id = ? AND state = 'failed' ORDER BY device_id LIMIT ?`)
        .all(rolloutId, limit) as { device_id: string; wave: number | null; detail: string | null; attempts: number }[]
    ).map((r) => ({ deviceId: r.device_id, wave: r.wave, reason: r.detail ?? '', attempts: r.attempts }));
  }

  /** The latest rollout row of a device whose rollout has ended but which is still in flight (status after abort). */
  endedInFlight(deviceId: string, rolloutId: string): RolloutDeviceRow | undefined {
    const r = this.db
      .prepare(
        `SELECT d.* FROM rollout_devices d JOIN rollouts r ON r.id = d.rollout_id
         WHERE d.device_id = ? AND d.rollout_id = ? AND r.state NOT IN ${ACTIVE}`,
      )
      .get(deviceId, rolloutId) as RawDevice | undefined;
    return r && toDevice(r);
  }
}
