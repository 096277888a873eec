import { Counter, Gauge, type Registry } from 'prom-client';
import type { Database } from '../db/database.js';
import type { Clock } from '../clock.js';
import { DEVICE_STATES } from '../rollouts/rollout-states.js';

export interface RolloutMetrics {
  /** Pass `(n) => offers.inc(n)` as the scheduler's `onOffered`. */
  offers: Counter;
}

/** Ended rollouts stay on the dashboards this long, then drop out so label sets do not grow forever. */
const ENDED_VISIBLE_MS = 24 * 3_600_000;

/**
 * Rollout gauges computed from SQLite at scrape time (STYLE.md: gauges that mirror the database compute in
 * collect()), so they can never drift from the store:
 * - `fleet_rollout_devices{rollout,state}`: devices per rollout and state (every state exported, 0 included);
 * - `fleet_rollout_wave{rollout}`: the wave being gated, 1-based (0 while scheduled, before its first window).
 * Covers active rollouts and those ended within the last 24 h.
 * `fleet_patch_results_total{result}` belongs to the patch repository.
 */
export function registerRolloutMetrics(registry: Registry, deps: { db: Database; clock: Clock }): RolloutMetrics {
  const { db, clock } = deps;
  const visible = () =>
    db
      .prepare(
        `SELECT id, state, current_wave FROM rollouts
         WHERE state IN ('scheduled','running','paused') OR ended_at >= ?`,
      )
      .all(clock.now() - ENDED_VISIBLE_MS) as { id: string; state: string; current_wave: number }[];

  new Gauge({
    name: 'fleet_rollout_devices',
    help: 'Devices per rollout by rollout device state (pending, offered, downloading, installing, installed, done, failed, excluded)',
    labelNames: ['rollout', 'state'] as const,
    registers: [registry],
    collect() {
      this.reset();
      if (!db.open) return;
      const rollouts = visible();
      if (rollouts.length === 0) return;
      const counts = db.prepare('SELECT state, COUNT(*) AS n FROM rollout_devices WHERE rollout_id = ? GROUP BY state');
      for (const r of rollouts) {
        for (const state of DEVICE_STATES) this.set({ rollout: r.id, state }, 0);
        for (const row of counts.all(r.id) as { state: string; n: number }[]) this.set({ rollout: r.id, state: row.state }, row.n);
      }
    },
  });

  new Gauge({
    name: 'fleet_rollout_wave',
    help: 'The wave a rollout is gating, 1-based (0 while scheduled)',
    labelNames: ['rollout'] as const,
    registers: [registry],
    collect() {
      this.reset();
      if (!db.open) return;
      for (const r of visible()) this.set({ rollout: r.id }, r.state === 'scheduled' ? 0 : r.current_wave + 1);
    },
  });

  return {
    offers: new Counter({ name: 'fleet_rollout_offers_total', help: 'Patch offers handed to the broker by the rollout scheduler', registers: [registry] }),
  };
}
