import type { Heartbeat } from '../protocol/types.js';
import type { LiveSoftware } from './eligibility.js';

/**
 * The software each device reported in its latest heartbeat, in memory, set on the ingest hot path (O(1)).
 * `device_state` is written by the ingest worker in batches (`ingest.flushIntervalMs`), so a ticket raised by a
 * device's first heartbeat would otherwise be judged on the row before it: "software version not reported yet"
 * (issue 8, fault 7). Eligibility reads here first, and the store only for devices not heard from since start.
 */
export class LatestSoftware {
  private readonly latest = new Map<string, LiveSoftware>();

  /** An IngestListener input: remember the heartbeat's version and digest. */
  onHeartbeat(deviceId: string, hb: Heartbeat): void {
    const current = this.latest.get(deviceId);
    const integrity = hb.integrity ?? null;
    if (current && current.softwareVersion === hb.softwareVersion && current.integrity === integrity) return;
    this.latest.set(deviceId, { softwareVersion: hb.softwareVersion, integrity });
  }

  get(deviceId: string): LiveSoftware | undefined {
    return this.latest.get(deviceId);
  }

  forget(deviceId: string): void {
    this.latest.delete(deviceId);
  }
}
