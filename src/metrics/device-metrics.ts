import { Gauge, type Registry } from 'prom-client';
import type { DeviceRecord } from '../registry/types.js';

/**
 * `fleet_devices{type,tier,state}` computed at scrape time from the registry and the health
 * evaluator's in-memory view (no timer, no drift). state: online, offline, restarting, lost,
 * unknown (never heard from), revoked.
 */
export function registerDeviceMetrics(registry: Registry, devices: () => Iterable<DeviceRecord>, stateOf: (device: DeviceRecord) => string): void {
  new Gauge({
    name: 'fleet_devices',
    help: 'Registered devices by type, subscription tier and liveness state',
    labelNames: ['type', 'tier', 'state'] as const,
    registers: [registry],
    collect() {
      this.reset();
      // type -> tier -> state -> count: a scrape walks the fleet once and allocates per label set, not per device.
      const counts = new Map<string, Map<string, Map<string, number>>>();
      for (const d of devices()) {
        const state = stateOf(d);
        let byTier = counts.get(d.type);
        if (!byTier) counts.set(d.type, (byTier = new Map()));
        let byState = byTier.get(d.tier);
        if (!byState) byTier.set(d.tier, (byState = new Map()));
        byState.set(state, (byState.get(state) ?? 0) + 1);
      }
      for (const [type, byTier] of counts) for (const [tier, byState] of byTier) for (const [state, n] of byState) this.set({ type, tier, state }, n);
    },
  });
}
