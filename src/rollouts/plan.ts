import { compareVersions, parseVersion, versionSatisfies } from '../../patches/version-match.js';
import type { DeviceRecord } from '../registry/types.js';
import type { PublishedPatch, RolloutPorts } from './ports.js';
import type { TargetSpec, WaveSize } from './rollout-spec.js';
import { hash32 } from './jitter.js';

/**
 * Pure planning: which devices a rollout targets (and why the others are left out), and how they are split
 * into waves. RULES.md "Remote patching": only eligible devices with an active xcare/xcare_pro subscription
 * receive patches; the plan records who was left out and why (issue 5 "Targeting").
 */
export interface Exclusion {
  deviceId: string;
  reason: string;
}

export interface TargetSelection {
  included: DeviceRecord[];
  excluded: Exclusion[];
}

export type TargetPorts = Pick<RolloutPorts, 'eligibility' | 'softwareVersion'>;

/**
 * The static part of the target, which a device registered later can be checked against before it has
 * heartbeated (type, customer, tags, not revoked, a type the patch applies to). Returns why not, or undefined.
 */
export function staticMismatch(device: DeviceRecord, target: TargetSpec, patch: Pick<PublishedPatch, 'types'>): string | undefined {
  if (device.revokedAt !== null) return 'revoked';
  if (target.types.length > 0 && !target.types.includes(device.type)) return `type ${device.type} not in target`;
  if (patch.types.length > 0 && !patch.types.includes(device.type)) return `patch does not apply to type ${device.type}`;
  if (target.customers.length > 0 && !target.customers.includes(device.customer)) return `customer ${device.customer} not in target`;
  const missing = target.tags.filter((t) => !device.tags.includes(t));
  if (missing.length > 0) return `missing tag${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`;
  return undefined;
}

/**
 * The part that depends on the live device: eligibility and the software it runs now. Checked at planning
 * and again right before each offer (things change between the two). Returns why not, or undefined.
 */
export function liveMismatch(deviceId: string, target: TargetSpec, patch: PublishedPatch, ports: TargetPorts, now: number): string | undefined {
  const elig = ports.eligibility(deviceId, now);
  if (!elig.eligible) return `ineligible: ${elig.reasons.join('; ') || 'no reason given'}`;
  const version = ports.softwareVersion(deviceId);
  if (!version) return 'software version unknown (no heartbeat yet)';
  // One definition of version matching with the agent (patches/version-match.ts, issue 9 fault 4): a version
  // the agent could not parse would be rejected there, so it is left out here with that reason.
  const current = parseVersion(version);
  if (!current) return `software version "${version}" does not parse as semver`;
  // The agent never installs a version lower than or equal to the one it runs (RULES.md), so do not offer it.
  if (compareVersions(patch.version, current) <= 0) return `already runs ${version} (patch is ${patch.version})`;
  if (target.software && !versionSatisfies(current, target.software)) return `software ${version} outside target ${target.software}`;
  if (!versionSatisfies(current, patch.appliesTo)) return `software ${version} outside patch range ${patch.appliesTo}`;
  return undefined;
}

/**
 * Split the fleet into targeted and excluded devices. `busy` names devices already in another active
 * rollout or already offered this patch by anyone (no device is offered the same patch twice, RULES.md).
 */
export function selectTargets(
  devices: Iterable<DeviceRecord>,
  target: TargetSpec,
  patch: PublishedPatch,
  ports: TargetPorts,
  now: number,
  busy: ReadonlyMap<string, string> = new Map(),
): TargetSelection {
  const included: DeviceRecord[] = [];
  const excluded: Exclusion[] = [];
  for (const device of devices) {
    const reason = staticMismatch(device, target, patch) ?? busy.get(device.id) ?? liveMismatch(device.id, target, patch, ports, now);
    if (reason) excluded.push({ deviceId: device.id, reason });
    else included.push(device);
  }
  return { included, excluded };
}

/**
 * Wave sizes for `n` targeted devices. Semantics:
 * - a count wave takes `min(count, remaining)`;
 * - a percentage wave takes `ceil(percent% of the devices not in an earlier wave)`, so `5, 10%, 100%` on 100
 *   devices is 5, 10 (ceil of 9.5), 85, and a non-empty wave is never 0 while devices remain;
 * - the last wave always takes every remaining device, so the sizes sum to n and nobody targeted is left out
 *   (write `100%` last to say so).
 */
export function waveSizes(n: number, waves: readonly WaveSize[]): number[] {
  const sizes: number[] = [];
  let remaining = n;
  waves.forEach((wave, i) => {
    let size: number;
    if (i === waves.length - 1) size = remaining;
    else if ('count' in wave) size = Math.min(wave.count, remaining);
    else size = Math.max(0, Math.min(remaining, Math.ceil((wave.percent * remaining) / 100 - 1e-9)));
    sizes.push(size);
    remaining -= size;
  });
  return sizes;
}

/**
 * Order the targeted devices and cut them into waves. Connected devices go first, so a canary wave is made of
 * devices that can actually answer; within that, a stable hash of (rollout, device) spreads the early waves
 * across customers and gateways instead of taking the alphabetically first ones.
 */
export function assignWaves(deviceIds: readonly string[], waves: readonly WaveSize[], rolloutId: string, isConnected: (id: string) => boolean): string[][] {
  const ordered = deviceIds
    .map((id) => ({ id, connected: isConnected(id) ? 0 : 1, h: hash32(`${rolloutId}\u0000${id}`) }))
    .sort((a, b) => a.connected - b.connected || a.h - b.h || (a.id < b.id ? -1 : 1))
    .map((d) => d.id);
  const out: string[][] = [];
  let at = 0;
  for (const size of waveSizes(ordered.length, waves)) {
    out.push(ordered.slice(at, at + size));
    at += size;
  }
  return out;
}
