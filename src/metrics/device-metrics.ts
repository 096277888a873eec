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
      const counts = new Map<string, { type: string; tier: string; state: string; n: number }>();
      for (const d of devices()) {
        const state = stateOf(d);
        const key = `${d.type}\0${d.tier}\0${state}`;
        const c = counts.get(key);
        if (c) c.n++;
        else counts.set(key, { type: d.type, tier: d.tier, state, n: 1 });
      }
      for (const c of counts.values()) this.set({ type: c.type, tier: c.tier, state: c.state }, c.n);
    },
  });
}
