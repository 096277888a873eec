import { readdir } from 'node:fs/promises';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { registerBuildInfo } from './build-info.js';

/**
 * prom-client's default metrics include three gauges named like counters (`nodejs_active_handles_total`,
 * `nodejs_active_requests_total`, `nodejs_active_resources_total`), which `promtool check metrics` rejects and which
 * `rate()` would misread. Each is the sum of the labelled gauge beside it (`sum(nodejs_active_handles)`), so they go.
 */
export const MISNAMED_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'] as const;

/**
 * prom-client default metrics whose collect() walks every handle or descriptor of the process on the event loop
 * at each scrape: with 5,500 devices connected, ~40 ms of a ~50 ms scrape (issue 12: no step blocks the loop over
 * 50 ms; with 100,000 connections a scrape would stall the broker for most of a second). The two handle gauges go
 * (`fleet_mqtt_clients_connected` and the HTTP metrics say what is open); `process_open_fds` is kept, read off the loop.
 */
export const PER_CONNECTION_DEFAULT_METRICS = ['nodejs_active_handles', 'nodejs_active_resources', 'process_open_fds'] as const;

/** `process_open_fds` as prom-client defines it, counted by an asynchronous readdir of /proc/self/fd (Linux). */
function registerOpenFds(registry: Registry): void {
  new Gauge({
    name: 'process_open_fds',
    help: 'Number of open file descriptors.',
    registers: [registry],
    async collect() {
      try {
        this.set((await readdir('/proc/self/fd')).length);
      } catch {
        // Not Linux: no /proc. The gauge stays absent of a value rather than wrong.
      }
    },
  });
}

/**
 * The daemon's Prometheus registry, made once in app.ts and passed down. Gauges that mirror the
 * database are registered by their owners and computed in collect() at scrape time. Always carries
 * `xcare_build_info{version}`; `withProcessMetrics` adds prom-client's process and Node.js metrics.
 */
export function createMetricsRegistry(withProcessMetrics = true): Registry {
  const registry = new Registry();
  if (withProcessMetrics) {
    collectDefaultMetrics({ register: registry });
    for (const name of [...MISNAMED_DEFAULT_METRICS, ...PER_CONNECTION_DEFAULT_METRICS]) registry.removeSingleMetric(name);
    registerOpenFds(registry);
  }
  registerBuildInfo(registry);
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
