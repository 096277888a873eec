import { NotFoundError } from '../errors.js';
import type { RolloutSpec } from './rollout-spec.js';
import { normalizeSpec } from './rollout-spec.js';
import type { DeviceRolloutState, RolloutState } from './rollout-states.js';
import type { RolloutRow, RolloutStore } from './rollout-store.js';
import { windowStateAt } from './window.js';

/**
 * Read models of rollouts for the API and `xcarectl` (`rollout list|show|watch`): counts per wave, the soak
 * countdown of the wave being gated, window and rollout ETAs, failed devices with their reasons (which hold
 * the tail of the failing command's output), excluded devices and recent events.
 */
export interface RolloutSummary {
  id: string;
  patchId: string;
  state: RolloutState;
  currentWave: number;
  waves: number;
  createdAt: string;
  startedAt: string | null;
  endedAt: string | null;
  reason: string | null;
  counts: Record<DeviceRolloutState, number>;
}

export interface WaveView {
  index: number;
  size: number;
  soakMs: number;
  planned: RolloutSpec['waves'][number]['size'];
  counts: Record<DeviceRolloutState, number>;
  /** passed (gate closed), current (being gated), waiting (not started). */
  status: 'passed' | 'current' | 'waiting';
  /** The current wave, every device settled: when its soak ends (ISO), else null. */
  soakEndsAt: string | null;
}

export interface RolloutView {
  id: string;
  patchId: string;
  state: RolloutState;
  /** 0-based index of the wave being gated. */
  currentWave: number;
  reason: string | null;
  createdAt: string;
  startedAt: string | null;
  endedAt: string | null;
  spec: RolloutSpec;
  window: { open: boolean; openedAt: string | null; closesAt: string | null; opensAt: string | null; error?: string } | null;
  /** Earliest the rollout can complete: the current soak, then every later wave's soak (a lower bound), or null. */
  eta: string | null;
  counts: Record<DeviceRolloutState, number>;
  /**
   * Devices the rollout updates: those planned into a wave and not left out since, whatever their state now
   * (the sum over waves of `size - counts.excluded`). `counts.pending` is not it: offers start at creation
   * when the window is open.
   */
  devices: number;
  waves: WaveView[];
  excludedAtPlanning: number;
  excluded: { deviceId: string; wave: number | null; reason: string }[];
  /** Failed devices with the reason (incl. the tail of the failing command's output) and the tries used. */
  failed: { deviceId: string; wave: number | null; reason: string; attempts: number }[];
  events: Record<string, unknown>[];
}

export function emptyCounts(): Record<DeviceRolloutState, number> {
  return { pending: 0, offered: 0, downloading: 0, installing: 0, installed: 0, done: 0, failed: 0, excluded: 0 };
}

export function iso(ms: number | null | undefined): string | null {
  return ms === null || ms === undefined || !Number.isFinite(ms) ? null : new Date(ms).toISOString();
}

export function summarize(store: RolloutStore, row: RolloutRow): RolloutSummary {
  const counts = emptyCounts();
  for (const c of store.waveCounts(row.id)) counts[c.state] += c.n;
  return {
    id: row.id, patchId: row.patchId, state: row.state, currentWave: row.currentWave, waves: row.spec.waves.length,
    createdAt: iso(row.createdAt)!, startedAt: iso(row.startedAt), endedAt: iso(row.endedAt), reason: row.reason, counts,
  };
}

/**
 * Build the view of one rollout. `soakEndsAt` is the scheduler's live knowledge of the current wave's soak
 * (null when not soaking). Never throws for a stored rollout whose window cannot be computed: the window
 * then carries the error (issue 9 fault 8: one bad rollout must not break GET).
 */
export function buildView(store: RolloutStore, id: string, now: number, opts: { excludedLimit: number; soakEndsAt: number | null }): RolloutView {
  const row = store.get(id);
  if (!row) throw new NotFoundError(`rollout ${id} not found`);
  const spec = normalizeSpec(row.spec);
  const waves: WaveView[] = spec.waves.map((w, index) => ({
    index, size: 0, soakMs: w.soakMs, planned: w.size, counts: emptyCounts(),
    status: index < row.currentWave || row.state === 'completed' ? 'passed' : index === row.currentWave && row.startedAt !== null ? 'current' : 'waiting',
    soakEndsAt: index === row.currentWave ? iso(opts.soakEndsAt) : null,
  }));
  const total = emptyCounts();
  let excludedAtPlanning = 0;
  for (const c of store.waveCounts(id)) {
    total[c.state] += c.n;
    if (c.wave === null) excludedAtPlanning += c.n;
    else if (waves[c.wave]) {
      waves[c.wave]!.counts[c.state] += c.n;
      waves[c.wave]!.size += c.n;
    }
  }
  const ended = row.state === 'completed' || row.state === 'aborted' || row.state === 'failed';
  let window: RolloutView['window'] = null;
  if (!ended) {
    try {
      const win = windowStateAt(spec.window, now);
      window = { open: win.open, openedAt: iso(win.openedAt), closesAt: iso(win.closesAt), opensAt: iso(win.opensAt) };
    } catch (err) {
      window = { open: false, openedAt: null, closesAt: null, opensAt: null, error: (err as Error).message };
    }
  }
  let eta: string | null = null;
  // No ETA for a window that never opens (or cannot be computed): "at the earliest" would be a false promise.
  const windowNever = window !== null && !window.open && window.opensAt === null;
  if (!ended && !windowNever) {
    // A lower bound: the current wave's soak end (or now), plus each later wave's soak.
    let at = opts.soakEndsAt ?? now;
    for (let w = row.currentWave + 1; w < spec.waves.length; w++) at += spec.waves[w]!.soakMs;
    if (row.currentWave >= spec.waves.length - 1 && opts.soakEndsAt === null) at = Math.max(at, now);
    eta = iso(at);
  }
  return {
    id: row.id,
    patchId: row.patchId,
    state: row.state,
    currentWave: row.currentWave,
    reason: row.reason,
    createdAt: iso(row.createdAt)!,
    startedAt: iso(row.startedAt),
    endedAt: iso(row.endedAt),
    spec,
    window,
    eta,
    counts: total,
    devices: waves.reduce((n, w) => n + w.size - w.counts.excluded, 0),
    waves,
    excludedAtPlanning,
    excluded: store.excluded(id, opts.excludedLimit),
    failed: store.failed(id, 1000),
    events: store.events(id, 50).map((e) => ({ at: iso(e.ts)!, kind: e.kind, deviceId: e.deviceId, ...e.data })),
  };
}
