import type { Counter } from 'prom-client';
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import type { DeviceTopicKind } from '../protocol/topics.js';
import { parsePayload, patchStatusSchema, stateSchema } from '../protocol/schemas.js';
import { parseHeartbeat } from '../protocol/heartbeat-check.js';
import type { DeviceDirectory } from '../registry/types.js';
import type { DeviceStateWriter } from './device-state-writer.js';
import type { IngestListener } from './ingest-listener.js';
import { LogThrottle } from '../log-throttle.js';

export type RejectReason = 'json' | 'schema' | 'size' | 'unknown_device';

export interface DeviceMessageIngestDeps {
  clock: Clock;
  log: Logger;
  directory: DeviceDirectory;
  writer: DeviceStateWriter;
  maxHeartbeatBytes: number;
  heartbeats: Counter;
  rejected: Counter<'reason'>;
  listeners: IngestListener[];
  /** At most one 'device message rejected' line per device and reason in this many ms (default 60 s). */
  rejectLogWindowMs?: number;
}

/**
 * Everything a device publishes that passed the broker's ACL comes here: validated against the
 * protocol schema before anything is stored or acted on; a bad payload is dropped and counted, and
 * the device's stored state stays as it was. Liveness uses the daemon's receive time, never `ts`.
 */
export class DeviceMessageIngest {
  private readonly log: Logger;
  private readonly rejectLog: LogThrottle;
  constructor(private readonly deps: DeviceMessageIngestDeps) {
    this.log = deps.log;
    this.rejectLog = new LogThrottle(deps.rejectLogWindowMs ?? 60_000);
  }

  handle(deviceId: string, kind: DeviceTopicKind, payload: Buffer): void {
    const receivedAt = this.deps.clock.now();
    const device = this.deps.directory.get(deviceId);
    if (!device || device.revokedAt !== null) {
      this.reject('unknown_device', deviceId, kind);
      return;
    }
    switch (kind) {
      case 'heartbeat':
        return this.heartbeat(deviceId, payload, receivedAt);
      case 'state':
        return this.state(deviceId, payload, receivedAt);
      case 'patch/status':
        return this.patchStatus(deviceId, payload, receivedAt);
      default:
        // cmd/ topics are daemon -> device; the broker's ACL never lets a device publish there.
        return;
    }
  }

  connected(deviceId: string, connected: boolean): void {
    if (this.deps.directory.get(deviceId)) this.deps.writer.connected(deviceId, connected);
  }

  private heartbeat(deviceId: string, payload: Buffer, receivedAt: number): void {
    if (payload.length > this.deps.maxHeartbeatBytes) {
      this.reject('size', deviceId, 'heartbeat', `${payload.length} bytes`);
      return;
    }
    const parsed = parseHeartbeat(payload);
    if (!parsed.ok) {
      this.reject(parsed.reason, deviceId, 'heartbeat', parsed.message);
      return;
    }
    this.deps.heartbeats.inc();
    this.deps.writer.heartbeat(deviceId, parsed.value, receivedAt);
    for (const l of this.deps.listeners) l.onHeartbeat?.(deviceId, parsed.value, receivedAt);
  }

  private state(deviceId: string, payload: Buffer, receivedAt: number): void {
    const parsed = parsePayload(stateSchema, payload);
    if (!parsed.ok) {
      this.reject(parsed.reason, deviceId, 'state', parsed.message);
      return;
    }
    for (const l of this.deps.listeners) l.onState?.(deviceId, parsed.value.online, receivedAt);
  }

  private patchStatus(deviceId: string, payload: Buffer, receivedAt: number): void {
    const parsed = parsePayload(patchStatusSchema, payload);
    if (!parsed.ok) {
      this.reject(parsed.reason, deviceId, 'patch/status', parsed.message);
      return;
    }
    for (const l of this.deps.listeners) l.onPatchStatus?.(deviceId, parsed.value, receivedAt);
  }

  private reject(reason: RejectReason, deviceId: string, kind: string, detail?: string): void {
    this.deps.rejected.inc({ reason });
    // Counted every time; logged once per device and reason per window, so one device cannot flood the log.
    const suppressed = this.rejectLog.admit(`${deviceId}\u0000${reason}`, this.deps.clock.monotonicNow());
    if (suppressed === undefined) return;
    this.log.warn({ deviceId, topic: kind, reason, detail, suppressed }, 'device message rejected');
  }
}
