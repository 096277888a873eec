import type { Clock } from '../clock.js';
import { XcareError } from '../errors.js';
import type { Logger } from '../log.js';
import { LEADER_LEASE } from './leader-elector.js';
import type { LeaseStore } from './lease-store.js';

/**
 * The lease tells holders apart by instance id only. Two processes configured with the same
 * `cluster.instanceId` would both "hold" it: both run the evaluator, scheduler and dispatcher. At start, a
 * lease held under our own id that has not expired is either this instance before a crash (it stops being
 * renewed) or another process with our id (it keeps being renewed). Wait, one renewal at a time, until it
 * expires; a renewal seen meanwhile proves another live process and fails the start (INSTANCE_ID_IN_USE).
 * Default ids (`<hostname>-<pid>`) are unique per process and pass at once.
 */
export async function refuseDuplicateInstance(deps: { store: LeaseStore; clock: Clock; log: Logger; instanceId: string; renewMs: number }): Promise<void> {
  const { store, clock, instanceId, renewMs, log } = deps;
  let seen = await store.read(LEADER_LEASE);
  if (!seen || seen.holder !== instanceId || seen.expiresAt <= clock.now()) return;
  log.warn({ instance: instanceId, expiresAt: new Date(seen.expiresAt).toISOString() }, 'the store lease is held under this instance id: waiting to see whether another process renews it');
  while (seen && seen.holder === instanceId && seen.expiresAt > clock.now()) {
    await new Promise<void>((resolve) => clock.setTimeout(resolve, renewMs));
    const now = await store.read(LEADER_LEASE);
    if (now && now.holder === instanceId && now.expiresAt > seen.expiresAt) {
      throw new XcareError(
        'INSTANCE_ID_IN_USE',
        `another xcared runs with the instance id ${instanceId} (it renewed the store's lease while this one started): give each instance its own cluster.instanceId`,
      );
    }
    seen = now;
  }
}
