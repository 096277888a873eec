import type { DeviceRecord } from '../registry/types.js';

/**
 * Concurrency caps (RULES.md "Gentle on the network": a cap limits devices updating at once, fleet-wide and per
 * gateway, so a gateway and its sensors are not all patched together). A device is "updating" from its offer
 * until it is done or failed (IN_FLIGHT in rollout-states.ts).
 */
export interface Caps {
  /** Devices updating at once, fleet-wide (all rollouts together). */
  maxConcurrent: number;
  /** Devices updating at once within one gateway group. */
  maxPerGateway: number;
}

export interface InFlight {
  fleet: number;
  /** Per gateway group. */
  groups: ReadonlyMap<string, number>;
}

export interface CapCandidate {
  deviceId: string;
  group: string;
}

export interface CapPick {
  picked: string[];
  heldBack: { deviceId: string; cap: 'fleet' | 'gateway' }[];
}

/** The group a device counts in: a gateway is its own group, a sensor counts with its parent gateway. */
export function groupOf(device: Pick<DeviceRecord, 'id' | 'type' | 'parent'>): string {
  if (device.type === 'sensor' && device.parent) return device.parent;
  return device.id;
}

/**
 * Take candidates in order while both caps allow; the rest wait for a later tick. `admit`, when given, is asked
 * only for a candidate that fits the caps (so an expensive offer-time check runs for at most the free slots);
 * a candidate it refuses takes no slot.
 */
export function pickWithinCaps(candidates: readonly CapCandidate[], inFlight: InFlight, caps: Caps, admit?: (c: CapCandidate) => boolean): CapPick {
  const picked: string[] = [];
  const heldBack: CapPick['heldBack'] = [];
  let fleet = inFlight.fleet;
  const groups = new Map(inFlight.groups);
  for (const c of candidates) {
    if (fleet >= caps.maxConcurrent) {
      heldBack.push({ deviceId: c.deviceId, cap: 'fleet' });
      continue;
    }
    const inGroup = groups.get(c.group) ?? 0;
    if (inGroup >= caps.maxPerGateway) {
      heldBack.push({ deviceId: c.deviceId, cap: 'gateway' });
      continue;
    }
    if (admit && !admit(c)) continue;
    picked.push(c.deviceId);
    fleet++;
    groups.set(c.group, inGroup + 1);
  }
  return { picked, heldBack };
}
