import { Counter, type Registry } from 'prom-client';

export const PATCH_RESULTS = ['installed', 'failed', 'rolled_back', 'rejected', 'cancelled'] as const;

/** `fleet_patch_results_total{result}` (PROTOCOL.md "HTTP" metric families). */
export function createPatchMetrics(registry: Registry): { results: Counter<'result'>; dropped: Counter } {
  const results = new Counter({
    name: 'fleet_patch_results_total',
    help: 'Terminal patch states reported by devices, once per (device, patch, state)',
    labelNames: ['result'] as const,
    registers: [registry],
  });
  for (const result of PATCH_RESULTS) results.inc({ result }, 0);
  const dropped = new Counter({
    name: 'fleet_patch_status_dropped_total',
    help: 'Patch states (patch/status or the heartbeat patch field) for a patch the device was never offered, dropped',
    registers: [registry],
  });
  return { results, dropped };
}
