import type { Database } from '../db/database.js';

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
}

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
      offer: db.prepare('INSERT INTO patch_offers (device_id, patch_id, rollout_id, offered_at) VALUES (?, ?, ?, ?)'),
      hasOffer: db.prepare('SELECT 1 FROM patch_offers WHERE device_id = ? AND patch_id = ? LIMIT 1'),
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

  recordOffer(deviceId: string, patchId: string, rolloutId: string | null, at: number): void {
    this.stmts.offer.run(deviceId, patchId, rolloutId, at);
  }

  hasOffer(deviceId: string, patchId: string): boolean {
    return this.stmts.hasOffer.get(deviceId, patchId) !== undefined;
  }

  transaction<T>(fn: () => T): T {
    return this.deps.db.transaction(fn)();
  }
}
