import { Counter, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The daemon's Prometheus registry, made once in app.ts and passed down. Gauges that mirror the
 * database are registered by their owners and computed in collect() at scrape time.
 */
export function createMetricsRegistry(withProcessMetrics = true): Registry {
  const registry = new Registry();
  if (withProcessMetrics) collectDefaultMetrics({ register: registry });
  return registry;
}

export interface IngestMetrics {
  heartbeats: Counter;
  rejected: Counter<'reason'>;
}

export function createIngestMetrics(registry: Registry): IngestMetrics {
  const rejected = new Counter({
    name: 'fleet_heartbeat_rejected_total',
    help: 'Device messages dropped before storage, by reason (json, schema, size, unknown_device)',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  // Export every reason from the start so rate() works before the first rejection.
  for (const reason of ['json', 'schema', 'size', 'unknown_device']) rejected.inc({ reason }, 0);
  return {
    heartbeats: new Counter({ name: 'fleet_heartbeats_total', help: 'Valid heartbeats received', registers: [registry] }),
    rejected,
  };
}
