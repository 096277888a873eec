import { Registry } from 'prom-client';
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import { createIngestMetrics } from '../metrics/metrics.js';
import type { DeviceDirectory } from '../registry/types.js';
import { DeviceMessageIngest } from './device-message-ingest.js';
import type { DeviceStateWriter } from './device-state-writer.js';
import type { IngestListener } from './ingest-listener.js';

export interface LivenessIngestDeps {
  clock: Clock;
  log: Logger;
  directory: DeviceDirectory;
  maxHeartbeatBytes: number;
  /** The leader-only listeners: the health evaluator and the rollout scheduler. */
  listeners: IngestListener[];
}

/**
 * The same validation as the storing ingest, for the liveness feed of external broker mode: every
 * heartbeat and state of every device reaches the leader's evaluator and scheduler, validated exactly
 * as elsewhere, while storage stays with whichever instance got the message's shared-subscription copy.
 * So nothing is written here, and its counters live in a registry of their own: the storing copy
 * already counts each message once in `fleet_heartbeats_total` / `fleet_heartbeat_rejected_total`.
 */
export function createLivenessIngest(deps: LivenessIngestDeps): DeviceMessageIngest {
  const metrics = createIngestMetrics(new Registry());
  // The storing copy writes device_state; this copy must not write it a second time.
  const noWrites = { heartbeat: () => {}, connected: () => {} } as unknown as DeviceStateWriter;
  return new DeviceMessageIngest({
    clock: deps.clock,
    // Rejections are logged by the storing copy; here they would repeat the same line.
    log: deps.log.child({ feed: 'liveness' }, { level: 'error' }),
    directory: deps.directory,
    writer: noWrites,
    maxHeartbeatBytes: deps.maxHeartbeatBytes,
    heartbeats: metrics.heartbeats,
    rejected: metrics.rejected,
    listeners: deps.listeners,
  });
}
