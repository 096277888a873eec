import { ValidationError } from '../errors.js';
import type { DeviceDirectory } from '../registry/types.js';
import { rangesIntersect } from '../../patches/version-match.js';
import type { RolloutPorts } from './ports.js';
import { parseRolloutSpec, type SpecDefaults } from './rollout-spec.js';
import { assignWaves, selectTargets } from './plan.js';
import { windowNeverOpens } from './window.js';
import type { DeviceRolloutState } from './rollout-states.js';
import type { RolloutDeviceRow, RolloutRow } from './rollout-store.js';

/**
 * Validate and plan a new rollout (RULES.md "Remote patching": target, waves): everything that can refuse the
 * input runs here, before anything is stored (issue 9 fault 8: a bad rollout is a 400 and no row).
 * `busy` names devices in another active rollout; devices offered this patch by anyone are added from the
 * ports (the one offer record, issue 9 fault 6). Returns the rows to insert once an id is chosen.
 */
export function planRollout(
  input: unknown,
  deps: { config: SpecDefaults; ports: RolloutPorts; directory: DeviceDirectory; busy: Map<string, string> },
  now: number,
): { targeted: number; excluded: number; rows(id: string): { row: RolloutRow; devices: RolloutDeviceRow[]; waves: number[] } } {
  const { ports } = deps;
  const spec = parseRolloutSpec(input, deps.config);
  // A window that never opens would leave the rollout scheduled forever, holding its devices.
  const never = windowNeverOpens(spec.window, now);
  if (never) throw new ValidationError(never);
  const patch = ports.patch(spec.patchId);
  if (!patch) throw new ValidationError(`patchId: patch "${spec.patchId}" is not published`);
  if (Date.parse(patch.expiresAt) <= now) throw new ValidationError(`patchId: patch "${patch.id}" expired at ${patch.expiresAt}`);
  if (spec.target.types.length > 0 && patch.types.length > 0 && !spec.target.types.some((t) => patch.types.includes(t))) {
    throw new ValidationError(`target.types: patch "${patch.id}" applies to ${patch.types.join(', ')} only`);
  }
  if (spec.target.software && !rangesIntersect(spec.target.software, patch.appliesTo)) {
    throw new ValidationError(`target.software: "${spec.target.software}" does not overlap the range the patch applies to (${patch.appliesTo})`);
  }
  const busy = new Map(deps.busy);
  for (const [deviceId, by] of ports.offeredDevices(patch.id)) busy.set(deviceId, `already offered ${patch.id}${by ? ` in rollout ${by}` : ' (manual offer)'}`);
  const selection = selectTargets(deps.directory.all(), spec.target, patch, ports, now, busy);
  if (selection.included.length === 0) {
    const reasons = new Map<string, number>();
    for (const e of selection.excluded) reasons.set(e.reason, (reasons.get(e.reason) ?? 0) + 1);
    const top = [...reasons.entries()].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([r, n]) => `${n} x ${r}`);
    throw new ValidationError(`target: no eligible device matches${top.length ? ` (left out: ${top.join('; ')})` : ' (no devices registered)'}`);
  }
  return {
    targeted: selection.included.length,
    excluded: selection.excluded.length,
    rows(id) {
      const waves = assignWaves(selection.included.map((d) => d.id), spec.waves.map((w) => w.size), id, (d) => ports.isConnected(d));
      const row: RolloutRow = {
        id, patchId: patch.id, spec, state: 'scheduled', currentWave: 0, waveStartedAt: null,
        createdAt: now, updatedAt: now, startedAt: null, endedAt: null, reason: null,
      };
      const devices: RolloutDeviceRow[] = [];
      waves.forEach((ids, wave) => ids.forEach((deviceId) => devices.push(newDevice(deviceId, wave, 'pending', null))));
      for (const e of selection.excluded) devices.push(newDevice(e.deviceId, null, 'excluded', e.reason));
      return { row, devices, waves: waves.map((w) => w.length) };
    },
  };
}

/** A device row as planned (or joined later). */
export function newDevice(deviceId: string, wave: number | null, state: DeviceRolloutState, detail: string | null): RolloutDeviceRow {
  return { deviceId, wave, state, offeredAt: null, installedAt: null, doneAt: null, progressAt: null, joinedAt: null, detail, attempts: 0, retryAt: null, cancelRequestedAt: null };
}
