import { writeRows, type Database } from '../db/database.js';

export interface PatchRow {
  id: string;
  version: string;
  manifest: Buffer;
  signatures: string;
  sha256: string;
  size: number;
  integrity: string | null;
  created_at: number;
  expires_at: number;
}

export interface DevicePatchRow {
  device_id: string;
  patch_id: string;
  rollout_id: string | null;
  state: string;
  detail: string;
  counted: string;
  updated_at: number;
  /** A PatchCancel owed to the device (migration 006), null when none. */
  cancel_requested_at?: number | null;
}

/** The one record that a device was offered a patch (migration 006: unique per device and patch). */
export interface OfferRecord {
  device_id: string;
  patch_id: string;
  rollout_id: string | null;
  offered_at: number;
}

/** Devices per offer statement: 4 parameters each, far below either engine's limit on bound parameters. */
const OFFER_CHUNK = 500;

/** SQL for patches, device_patches and patch_offers (migration 003). Statements prepared once. */
export class PatchRepository {
  private readonly stmts;

  constructor(private readonly deps: { db: Database }) {
    const db = deps.db;
    this.stmts = {
      insert: db.prepare(
        'INSERT INTO patches (id, version, manifest, signatures, sha256, size, integrity, created_at, expires_at) VALUES (@id, @version, @manifest, @signatures, @sha256, @size, @integrity, @created_at, @expires_at)',
      ),
      get: db.prepare('SELECT * FROM patches WHERE id = ?'),
      exists: db.prepare('SELECT 1 FROM patches WHERE id = ?'),
      list: db.prepare('SELECT * FROM patches ORDER BY created_at DESC, id'),
      counts: db.prepare('SELECT patch_id, state, COUNT(*) AS n FROM device_patches GROUP BY patch_id, state'),
      devicePatch: db.prepare('SELECT * FROM device_patches WHERE device_id = ? AND patch_id = ?'),
      devicesOf: db.prepare('SELECT * FROM device_patches WHERE patch_id = ? ORDER BY device_id'),
      patchesOfDevice: db.prepare('SELECT * FROM device_patches WHERE device_id = ? ORDER BY updated_at DESC'),
      upsert: db.prepare(
        `INSERT INTO device_patches (device_id, patch_id, rollout_id, state, detail, counted, updated_at)
         VALUES (@device_id, @patch_id, @rollout_id, @state, @detail, @counted, @updated_at)
         ON CONFLICT (device_id, patch_id) DO UPDATE SET rollout_id = excluded.rollout_id, state = excluded.state,
           detail = excluded.detail, counted = excluded.counted, updated_at = excluded.updated_at`,
      ),
      hasOffer: db.prepare('SELECT 1 FROM patch_offers WHERE device_id = ? AND patch_id = ? LIMIT 1'),
      offerOf: db.prepare('SELECT * FROM patch_offers WHERE device_id = ? AND patch_id = ?'),
      offersOfPatch: db.prepare('SELECT * FROM patch_offers WHERE patch_id = ?'),
      owed: db.prepare(
        `SELECT * FROM device_patches WHERE device_id = ? AND (state = 'offered' OR (cancel_requested_at IS NOT NULL AND state NOT IN ('installed','failed','rolled_back','rejected','cancelled')))`,
      ),
      installing: db.prepare(`SELECT device_id, updated_at FROM device_patches WHERE state IN ('verifying','installing')`),
      // installed / rolled_back always followed an install; no heartbeat stored since the status means the
      // device had not come back yet (the writer stores a changed patch state at its next flush).
      restarting: db.prepare(
        `SELECT p.device_id, p.updated_at FROM device_patches p LEFT JOIN device_state s ON s.device_id = p.device_id
         WHERE p.state IN ('installed','rolled_back') AND p.updated_at >= ? AND (s.last_seen IS NULL OR s.last_seen < p.updated_at)`,
      ),
      requestCancel: db.prepare('UPDATE device_patches SET cancel_requested_at = ? WHERE device_id = ? AND patch_id = ?'),
    };
  }

  insert(row: PatchRow): void {
    this.stmts.insert.run(row);
  }

  get(id: string): PatchRow | undefined {
    return this.stmts.get.get(id) as PatchRow | undefined;
  }

  exists(id: string): boolean {
    return this.stmts.exists.get(id) !== undefined;
  }

  list(): PatchRow[] {
    return this.stmts.list.all() as PatchRow[];
  }

  /** patch id -> state -> device count. */
  stateCounts(): Map<string, Record<string, number>> {
    const out = new Map<string, Record<string, number>>();
    for (const r of this.stmts.counts.all() as { patch_id: string; state: string; n: number }[]) {
      const m = out.get(r.patch_id) ?? {};
      m[r.state] = r.n;
      out.set(r.patch_id, m);
    }
    return out;
  }

  devicePatch(deviceId: string, patchId: string): DevicePatchRow | undefined {
    return this.stmts.devicePatch.get(deviceId, patchId) as DevicePatchRow | undefined;
  }

  devicesOf(patchId: string): DevicePatchRow[] {
    return this.stmts.devicesOf.all(patchId) as DevicePatchRow[];
  }

  patchesOfDevice(deviceId: string): DevicePatchRow[] {
    return this.stmts.patchesOfDevice.all(deviceId) as DevicePatchRow[];
  }

  upsertDevicePatch(row: DevicePatchRow): void {
    this.stmts.upsert.run(row);
  }

  /**
   * Record offers of `patchId` to `deviceIds` (the one record per device and patch, issue 9 fault 6): one
   * statement per OFFER_CHUNK devices, each `INSERT .. ON CONFLICT DO NOTHING RETURNING`, so a wave of 10,000
   * costs 20 round trips on PostgreSQL, not 10,000. Returns the ids whose record is new; the others had one.
   */
  recordOffers(deviceIds: readonly string[], patchId: string, rolloutId: string | null, at: number): Set<string> {
    const rows = writeRows(
      this.deps.db,
      'INSERT INTO patch_offers (device_id, patch_id, rollout_id, offered_at) VALUES',
      '(?, ?, ?, ?)',
      deviceIds.map((id) => [id, patchId, rolloutId, at]),
      'ON CONFLICT (device_id, patch_id) DO NOTHING RETURNING device_id',
      OFFER_CHUNK,
    ) as { device_id: string }[];
    return new Set(rows.map((r) => r.device_id));
  }

  /** These devices' patch state back to `offered` (a first offer or a retry), keeping `counted`; OFFER_CHUNK per statement. */
  markOffered(deviceIds: readonly string[], patchId: string, rolloutId: string | null, at: number): void {
    writeRows(
      this.deps.db,
      'INSERT INTO device_patches (device_id, patch_id, rollout_id, state, detail, counted, updated_at) VALUES',
      `(?, ?, ?, 'offered', '', '', ?)`,
      deviceIds.map((id) => [id, patchId, rolloutId, at]),
      `ON CONFLICT (device_id, patch_id) DO UPDATE SET rollout_id = excluded.rollout_id, state = 'offered', detail = '', updated_at = excluded.updated_at`,
      OFFER_CHUNK,
    );
  }

  offerOf(deviceId: string, patchId: string): OfferRecord | undefined {
    return this.stmts.offerOf.get(deviceId, patchId) as OfferRecord | undefined;
  }

  /** Every device offered this patch, whoever offered it. */
  offersOfPatch(patchId: string): OfferRecord[] {
    return this.stmts.offersOfPatch.all(patchId) as OfferRecord[];
  }

  /** Commands the daemon still owes a device: offers it has not acted on, cancels of jobs not ended. */
  owedTo(deviceId: string): DevicePatchRow[] {
    return this.stmts.owed.all(deviceId) as DevicePatchRow[];
  }

  /** Devices whose stored patch state is an install in progress (restored into the install grace at start). */
  installing(): { device_id: string; updated_at: number }[] {
    return this.stmts.installing.all() as { device_id: string; updated_at: number }[];
  }

  /** Devices whose install ended (installed, rolled back) at or after `since` (wall ms) and not heard from since. */
  restarting(since: number): { device_id: string; updated_at: number }[] {
    return this.stmts.restarting.all(since) as { device_id: string; updated_at: number }[];
  }

  requestCancel(deviceId: string, patchId: string, at: number): boolean {
    return this.stmts.requestCancel.run(at, deviceId, patchId).changes === 1;
  }

  hasOffer(deviceId: string, patchId: string): boolean {
    return this.stmts.hasOffer.get(deviceId, patchId) !== undefined;
  }

  transaction<T>(fn: () => T): T {
    return this.deps.db.transaction(fn)();
  }
}
