import type { DeviceDirectory } from '../registry/types.js';
import type { PublishedPatch, RolloutPorts } from './ports.js';
import { liveMismatch } from './plan.js';
import { jitterOffset } from './jitter.js';
import { groupOf, pickWithinCaps, type CapCandidate, type InFlight } from './caps.js';
import { IN_FLIGHT } from './rollout-states.js';
import type { RolloutDeviceRow, RolloutRow } from './rollout-store.js';
import type { WindowState } from './window.js';

/**
 * Which pending devices of a rollout to offer now (RULES.md "Gentle on the network"): inside an open window,
 * only devices that can receive now (subscribed, issue 9 fault 1), a first offer spread by jitter from the
 * wave's start, a retry not before its backoff, within the fleet-wide and per-gateway caps; the offer-time
 * guard (eligibility, software) leaves out devices that no longer match, with the reason.
 */
export function pickOffers(
  r: { row: RolloutRow; devices: Iterable<RolloutDeviceRow>; patch: PublishedPatch },
  win: WindowState,
  now: number,
  deps: { ports: RolloutPorts; directory: DeviceDirectory; inFlight: InFlight },
): { picked: string[]; excluded: { deviceId: string; reason: string }[] } {
  const { ports, directory } = deps;
  const spec = r.row.spec;
  const openedAt = win.openedAt!;
  const closesAt = win.closesAt!;
  const due: (CapCandidate & { wave: number; at: number })[] = [];
  const excluded: { deviceId: string; reason: string }[] = [];
  for (const d of r.devices) {
    if (d.state !== 'pending' || d.wave === null || d.wave > r.row.currentWave) continue;
    if (!ports.isConnected(d.deviceId)) continue;
    let at: number;
    if (d.retryAt !== null) at = d.retryAt;
    else {
      const base = d.wave === r.row.currentWave ? Math.max(openedAt, r.row.waveStartedAt ?? openedAt) : openedAt;
      at = base + jitterOffset(d.deviceId, r.row.id, Math.min(spec.jitterMs, closesAt - base));
    }
    if (at > now) continue;
    const device = directory.get(d.deviceId);
    if (!device || device.revokedAt !== null) {
      excluded.push({ deviceId: d.deviceId, reason: device ? 'revoked' : 'no longer registered' });
      continue;
    }
    due.push({ deviceId: d.deviceId, group: groupOf(device), wave: d.wave, at });
  }
  due.sort((a, b) => a.wave - b.wave || a.at - b.at || (a.deviceId < b.deviceId ? -1 : 1));
  const { picked } = pickWithinCaps(due, deps.inFlight, { maxConcurrent: spec.maxConcurrent, maxPerGateway: spec.maxPerGateway }, (c) => {
    // Only for devices that fit the caps: eligibility and software may have changed since planning.
    const mismatch = liveMismatch(c.deviceId, spec.target, r.patch, ports, now);
    if (!mismatch) return true;
    excluded.push({ deviceId: c.deviceId, reason: mismatch });
    return false;
  });
  return { picked, excluded };
}

/** Devices updating now across all active rollouts, fleet-wide and per gateway group (for the caps). */
export function inFlightOf(rollouts: Iterable<Iterable<RolloutDeviceRow>>, directory: DeviceDirectory): InFlight {
  let fleet = 0;
  const groups = new Map<string, number>();
  for (const devices of rollouts) {
    for (const d of devices) {
      if (!IN_FLIGHT.has(d.state)) continue;
      fleet++;
      const device = directory.get(d.deviceId);
      const group = device ? groupOf(device) : d.deviceId;
      groups.set(group, (groups.get(group) ?? 0) + 1);
    }
  }
  return { fleet, groups };
}
