import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { LiveState } from './device-conditions.js';
import { TICKET_KINDS } from '../tickets/types.js';

export interface HealthMetrics {
  dropped: Counter<'reason'>;
  conditions: Counter<'kind' | 'action'>;
  tick: Histogram;
  /** Gaps in our own service: `start`, `stall` (a late tick), `wall_step` (the wall clock moved). */
  gaps: Counter<'cause'>;
  /** Ticks whose transaction failed (rolled back, retried next tick). */
  tickFailures: Counter;
}

const LIVE_STATES: readonly LiveState[] = ['unknown', 'online', 'offline', 'restarting', 'lost'];
export const DROP_REASONS = ['unknown_device', 'sensor_not_child', 'bad_security_event'] as const;
export type DropReason = (typeof DROP_REASONS)[number];

/**
 * The evaluator's metrics. `fleet_health_devices{state}` reads the evaluator's in-memory counts at scrape time
 * (collect()), so it costs nothing between scrapes and never drifts from what the evaluator decides.
 */
export function createHealthMetrics(registry: Registry, counts: () => Readonly<Record<LiveState, number>>): HealthMetrics {
  new Gauge({
    name: 'fleet_health_devices',
    help: 'Devices by liveness state as the health evaluator judges them',
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      const now = counts();
      for (const state of LIVE_STATES) this.set({ state }, now[state]);
    },
  });
  const dropped = new Counter({
    name: 'fleet_health_dropped_total',
    help: 'Health evaluator inputs dropped, by reason',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  for (const reason of DROP_REASONS) dropped.inc({ reason }, 0);
  const gaps = new Counter({
    name: 'fleet_health_own_gaps_total',
    help: 'Gaps in the daemon own service seen by the health evaluator (start, stall, wall_step); each gives devices a fresh interval or is logged',
    labelNames: ['cause'] as const,
    registers: [registry],
  });
  for (const cause of ['start', 'stall', 'wall_step']) gaps.inc({ cause }, 0);
  const conditions = new Counter({
    name: 'fleet_health_conditions_total',
    help: 'Conditions reported to the ticket service, by kind and action (raise, clear)',
    labelNames: ['kind', 'action'] as const,
    registers: [registry],
  });
  // Every pair the evaluator reports exported from the start, so increase() sees each kind's first condition
  // (issue 10). rollout_aborted and manual tickets do not come from the evaluator.
  for (const kind of TICKET_KINDS) if (kind !== 'manual' && kind !== 'rollout_aborted') for (const action of ['raise', 'clear']) conditions.inc({ kind, action }, 0);
  return {
    gaps,
    tickFailures: new Counter({
      name: 'fleet_health_tick_failures_total',
      help: 'Health evaluator ticks not committed (storage fault); their changes are retried next tick',
      registers: [registry],
    }),
    dropped,
    conditions,
    tick: new Histogram({
      name: 'fleet_health_tick_seconds',
      help: 'Duration of one health evaluator tick',
      buckets: [0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
  };
}
