import type { Clock } from '../clock.js';
import { EventsTail } from './events-tail.js';
import type { Database } from '../db/database.js';
import type { Logger } from '../log.js';

/**
 * Every `events` kind written in the same transaction as a change to a `devices` row, i.e. everything the
 * in-memory registry copies: provisioning, revocation, renewal (tier, subscription start and end) and token
 * rotation (the token hash, and `revoked_at` cleared when it re-enables a device). A kind missing here leaves
 * the other instances on the old row until their restart: a follower answering EMQX's `/mqtt/auth` would
 * refuse a rotated device's new token and accept its old one.
 */
export const REGISTRY_KINDS = ['provisioned', 'revoked', 'renewed', 'token_rotated'] as const;

export interface RegistryFollowerDeps {
  db: Database;
  clock: Clock;
  log: Logger;
  intervalMs: number;
  /** Re-read one device from the store into the in-memory registry (DeviceRegistry.reload). */
  reload(deviceId: string): void;
}

/**
 * Cluster mode: each instance keeps its registry in memory (O(1) CONNECT auth, ingest, evaluator), so a
 * device provisioned, revoked or renewed through another instance must reach it. The `events` log is the
 * change feed, read by EventsTail every `intervalMs`: each change once, on every engine (late commits
 * included), without relying on the instances' clocks agreeing.
 */
export class RegistryFollower {
  private readonly tail: EventsTail;

  constructor(private readonly deps: RegistryFollowerDeps) {
    this.tail = new EventsTail({ ...deps, failure: 'registry follow-up failed', kinds: REGISTRY_KINDS, pass: () => this.sync() });
  }

  /** Call before the registry loads: a change committed between the two is then re-read, never missed. */
  start(): void {
    this.tail.start();
  }

  stop(): void {
    this.tail.stop();
  }

  /** One pass: reload every device with a registry event since the last pass. Returns how many. */
  sync(): number {
    const ids = new Set<string>();
    for (const r of this.tail.read()) if (r.device_id !== null) ids.add(r.device_id);
    for (const id of ids) {
      try {
        this.deps.reload(id);
      } catch (err) {
        this.deps.log.error({ err, deviceId: id }, 'registry follow-up failed');
      }
    }
    if (ids.size > 0) this.deps.log.debug({ devices: ids.size }, 'registry changes from other instances applied');
    return ids.size;
  }

}
