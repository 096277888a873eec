import type { Database } from '../db/database.js';

/** One entry of a device's event log (`events`: provisioned, revoked, online, offline, lost, back, renewed...). */
export interface DeviceEvent {
  id: number;
  ts: string;
  kind: string;
  data: Record<string, unknown>;
}

/** The newest `limit` events of a device, newest first (read side of the `events` table, for the console). */
export function deviceEvents(db: Database, deviceId: string, limit = 100): DeviceEvent[] {
  const rows = db.prepare('SELECT id, ts, kind, data FROM events WHERE device_id = ? ORDER BY ts DESC, id DESC LIMIT ?').all(deviceId, limit) as {
    id: number;
    ts: number;
    kind: string;
    data: string;
  }[];
  return rows.map((r) => ({ id: r.id, ts: new Date(r.ts).toISOString(), kind: r.kind, data: safeJson(r.data) }));
}

function safeJson(text: string): Record<string, unknown> {
  try {
    const v = JSON.parse(text) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : { value: v };
  } catch {
    return { raw: text };
  }
}
