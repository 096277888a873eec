import { Gauge, type Registry } from 'prom-client';
import type { Database } from '../db/database.js';

/**
 * `fleet_devices{type,tier,state}` computed at scrape time from SQLite (one grouped query), so it can
 * never drift from the store. state: online, offline, lost, unknown (never heard from), revoked.
 */
export function registerDeviceMetrics(registry: Registry, db: Database): void {
  let query: ReturnType<Database['prepare']> | undefined;
  new Gauge({
    name: 'fleet_devices',
    help: 'Registered devices by type, subscription tier and liveness state',
    labelNames: ['type', 'tier', 'state'] as const,
    registers: [registry],
    collect() {
      this.reset();
      if (!db.open) return;
      query ??= db.prepare(`
        SELECT d.type AS type, d.tier AS tier,
          CASE WHEN d.revoked_at IS NOT NULL THEN 'revoked'
               WHEN s.online = 1 THEN 'online'
               WHEN s.state_changed_at IS NOT NULL AND s.online = 0 THEN 'lost'
               WHEN s.last_seen IS NOT NULL THEN 'offline'
               ELSE 'unknown' END AS state,
          COUNT(*) AS n
        FROM devices d LEFT JOIN device_state s ON s.device_id = d.id
        GROUP BY 1, 2, 3`);
      for (const row of query.all() as { type: string; tier: string; state: string; n: number }[]) {
        this.set({ type: row.type, tier: row.tier, state: row.state }, row.n);
      }
    },
  });
}
