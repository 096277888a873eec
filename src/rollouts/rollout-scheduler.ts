import semver from 'semver';
import type { Database } from '../db/database.js';
import type { Clock, TimerHandle } from '../clock.js';
import type { Logger } from '../log.js';
import type { Config } from '../config/schema.js';
import type { DeviceDirectory, DeviceRecord } from '../registry/types.js';
import type { Heartbeat, PatchStatus } from '../protocol/types.js';
import type { PatchState } from '../protocol/names.js';
import { ConflictError, NotFoundError, ValidationError } from '../errors.js';
import type { PublishedPatch, RolloutPorts } from './ports.js';
import { parseRolloutSpec, type RolloutSpec } from './rollout-spec.js';
import { assignWaves, liveMismatch, selectTargets, staticMismatch } from './plan.js';
import { windowStateAt, type WindowState } from './window.js';
import { jitterOffset } from './jitter.js';
import { groupOf, pickWithinCaps, type CapCandidate } from './caps.js';
import { abortSeverity, gateDecision, heartbeatWithinSoak, judgeDevice, type DeviceProgress } from './gate.js';
import {
  IN_FLIGHT,
  PROGRESS_RANK,
  TERMINAL,
  assertDeviceTransition,
  assertRolloutTransition,
  canTransitionDevice,
  deviceStateForPatchState,
  type DeviceRolloutState,
  type RolloutState,
} from './rollout-states.js';
import { RolloutStore, type RolloutDeviceRow, type RolloutRow } from './rollout-store.js';

/** What the scheduler announces; the lead wires it to the helpdesk webhook (completion and abort). */
export interface RolloutEvent {
  type: 'rollout.started' | 'rollout.paused' | 'rollout.resumed' | 'rollout.completed' | 'rollout.aborted';
  rolloutId: string;
  patchId: string;
  at: string;
  reason?: string;
  counts: Record<DeviceRolloutState, number>;
}

export interface RolloutSchedulerDeps {
  db: Database;
  clock: Clock;
  log: Logger;
  config: Config['rollouts'] & { expectedRestartGraceS: number };
  directory: DeviceDirectory;
  ports: RolloutPorts;
  /** Counts offers handed to the broker; optional. */
  onOffered?: (count: number) => void;
}

interface ActiveRollout {
  row: RolloutRow;
  devices: Map<string, RolloutDeviceRow>;
  patch: PublishedPatch | undefined;
}

interface RestartInfo {
  installingSince: number | null;
  installedAt: number | null;
}

/** Publishing a batch of offers: this many at once, so 10 000 offers do not queue 10 000 promises on the broker. */
const OFFER_CONCURRENCY = 1000;

/**
 * Runs rollouts (issue 5, RULES.md "Remote patching"). Every tick: judge in-flight devices (silence after install,
 * no progress), apply the health gate of the current wave (wait / advance / abort), then, inside the maintenance
 * window, offer due devices within the caps. Every transition is committed to SQLite before it is acted on
 * (a device is `offered` on disk before the MQTT publish), so a restart resumes without double offers.
 */
export class RolloutScheduler {
  private readonly store: RolloutStore;
  private readonly active = new Map<string, ActiveRollout>();
  /** Device -> the active rollout it takes part in (not excluded). A device is in at most one. */
  private readonly byDevice = new Map<string, ActiveRollout>();
  private readonly restart = new Map<string, RestartInfo>();
  private readonly listeners = new Set<(event: RolloutEvent) => void>();
  private timer: TimerHandle | undefined;
  private ticking: Promise<void> | undefined;
  private again = false;
  private stopped = true;
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly deps: RolloutSchedulerDeps) {
    this.store = new RolloutStore(deps.db);
  }

  start(): void {
    this.stopped = false;
    const now = this.deps.clock.now();
    for (const row of this.store.active()) this.load(row);
    for (const r of this.store.restarting(now - this.deps.config.expectedRestartGraceS * 1000)) {
      this.restart.set(r.deviceId, { installingSince: r.state === 'installing' ? (r.progressAt ?? now) : null, installedAt: r.installedAt });
    }
    this.unsubscribe = this.deps.directory.onChange((device) => this.onDeviceChanged(device));
    this.deps.log.info({ active: this.active.size }, 'rollout scheduler started');
    this.schedule();
  }

  /** Stop ticking; waits for a running tick, bounded by `timeoutMs`. */
  async stop(timeoutMs = 5000): Promise<void> {
    this.stopped = true;
    this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    if (this.ticking) {
      let handle: TimerHandle | undefined;
      const bound = new Promise<void>((resolve) => (handle = this.deps.clock.setTimeout(resolve, timeoutMs)));
      await Promise.race([this.ticking, bound]);
      this.deps.clock.clearTimeout(handle);
    }
    this.active.clear();
    this.byDevice.clear();
  }

  /** Hook for completion/abort (and start/pause/resume) events: the helpdesk webhook, tests. Returns unsubscribe. */
  onRolloutEvent(listener: (event: RolloutEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // ---------------------------------------------------------------- commands

  /** Validate, plan and store a rollout. Nothing is stored when validation fails. */
  create(input: unknown): RolloutView {
    const { config, ports, clock } = this.deps;
    const spec = parseRolloutSpec(input, config);
    const now = clock.now();
    const patch = ports.patch(spec.patchId);
    if (!patch) throw new ValidationError(`patchId: patch "${spec.patchId}" is not published`);
    if (Date.parse(patch.expiresAt) <= now) throw new ValidationError(`patchId: patch "${patch.id}" expired at ${patch.expiresAt}`);
    if (spec.target.types.length > 0 && patch.types.length > 0 && !spec.target.types.some((t) => patch.types.includes(t))) {
      throw new ValidationError(`target.types: patch "${patch.id}" applies to ${patch.types.join(', ')} only`);
    }
    if (spec.target.software && !semver.intersects(spec.target.software, patch.appliesTo, { includePrerelease: true })) {
      throw new ValidationError(`target.software: "${spec.target.software}" does not overlap the range the patch applies to (${patch.appliesTo})`);
    }
    const busy = this.store.busyDevices(patch.id);
    const selection = selectTargets(this.deps.directory.all(), spec.target, patch, ports, now, busy);
    if (selection.included.length === 0) {
      const reasons = new Map<string, number>();
      for (const e of selection.excluded) reasons.set(e.reason, (reasons.get(e.reason) ?? 0) + 1);
      const top = [...reasons.entries()].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([r, n]) => `${n} x ${r}`);
      throw new ValidationError(`target: no eligible device matches${top.length ? ` (left out: ${top.join('; ')})` : ' (no devices registered)'}`);
    }
    let created: RolloutRow | undefined;
    this.store.transaction(() => {
      const id = this.store.nextId(now);
      const waves = assignWaves(
        selection.included.map((d) => d.id),
        spec.waves.map((w) => w.size),
        id,
        (d) => ports.isConnected(d),
      );
      const row: RolloutRow = {
        id, patchId: patch.id, spec, state: 'scheduled', currentWave: 0, waveStartedAt: null,
        createdAt: now, updatedAt: now, startedAt: null, endedAt: null, reason: null,
      };
      const devices: RolloutDeviceRow[] = [];
      waves.forEach((ids, wave) => ids.forEach((deviceId) => devices.push(newDevice(deviceId, wave, 'pending', null))));
      for (const e of selection.excluded) devices.push(newDevice(e.deviceId, null, 'excluded', e.reason));
      this.store.insertRollout(row, devices);
      this.store.event(id, now, 'created', null, { targeted: selection.included.length, excluded: selection.excluded.length, waves: waves.map((w) => w.length) });
      created = row;
    });
    const row = created!;
    this.deps.log.info({ rolloutId: row.id, patchId: patch.id, targeted: selection.included.length, excluded: selection.excluded.length }, 'rollout created');
    if (!this.stopped) {
      this.load(row);
      this.kick();
    }
    return this.view(row.id);
  }

  pause(id: string): RolloutView {
    const r = this.requireActive(id);
    this.setRolloutState(r, 'paused', 'paused by operator');
    this.emit(r, 'rollout.paused', r.row.reason ?? undefined);
    return this.view(id);
  }

  resume(id: string): RolloutView {
    const r = this.requireActive(id);
    if (r.row.state !== 'paused') throw new ConflictError(`rollout ${id} is ${r.row.state}, not paused`);
    this.setRolloutState(r, r.row.startedAt === null ? 'scheduled' : 'running', null);
    this.emit(r, 'rollout.resumed');
    this.kick();
    return this.view(id);
  }

  /** Operator abort: stops offering; no ticket (the operator knows), but the event is announced. */
  abort(id: string, reason = 'aborted by operator'): RolloutView {
    const r = this.requireActive(id);
    this.endRollout(r, 'aborted', reason);
    return this.view(id);
  }

  // ---------------------------------------------------------------- inputs from ingest

  /** A validated PatchStatus (PROTOCOL.md) from a device. */
  onPatchStatus(deviceId: string, status: PatchStatus, at: number): void {
    this.notePatchState(deviceId, status.state, at);
    const r = this.byDevice.get(deviceId);
    if (r && r.row.patchId === status.patchId && (!status.rolloutId || status.rolloutId === r.row.id)) {
      this.applyStatus(r, deviceId, status.state, at, status.detail);
      return;
    }
    // A status for a rollout that has ended (in flight when it was aborted): record it on its row.
    if (status.rolloutId && !this.active.has(status.rolloutId)) {
      const row = this.store.endedInFlight(deviceId, status.rolloutId);
      if (!row) return;
      const to = deviceStateForPatchState(status.state);
      if (!canTransitionDevice(row.state, to) || PROGRESS_RANK[to] <= PROGRESS_RANK[row.state]) return;
      const next = { ...row, state: to, progressAt: at, installedAt: to === 'installed' ? at : row.installedAt, detail: status.detail || row.detail };
      this.store.updateDevice(status.rolloutId, next);
    }
  }

  /** A validated heartbeat: its `patch` field converges lost statuses, its softwareVersion proves the install. */
  onHeartbeat(deviceId: string, hb: Heartbeat, at: number): void {
    const r = this.byDevice.get(deviceId);
    if (!r) return;
    if (hb.patch && hb.patch.patchId === r.row.patchId && (!hb.patch.rolloutId || hb.patch.rolloutId === r.row.id)) {
      this.notePatchState(deviceId, hb.patch.state, at);
      this.applyStatus(r, deviceId, hb.patch.state, at, undefined);
    }
    const d = r.devices.get(deviceId);
    if (!d || !IN_FLIGHT.has(d.state) || !r.patch) return;
    const version = semver.valid(hb.softwareVersion);
    if (!version || !semver.eq(version, r.patch.version)) return;
    const wave = r.row.spec.waves[d.wave ?? 0] ?? r.row.spec.waves[r.row.spec.waves.length - 1]!;
    if (d.state === 'installed' && !heartbeatWithinSoak(d.installedAt, at, wave.soakMs)) {
      this.transitionDevices(r, [{ ...d, state: 'failed', detail: 'new version heard only after the soak time' }], at);
      return;
    }
    this.transitionDevices(r, [{ ...d, state: 'done', installedAt: d.installedAt ?? at, doneAt: at, progressAt: at, detail: d.detail }], at);
    this.kick();
  }

  /** A device connected: if it waits for an offer in a running rollout, offer it now (inside the window). */
  onDeviceConnected(deviceId: string): void {
    const r = this.byDevice.get(deviceId);
    if (!r || r.row.state !== 'running') return;
    const state = r.devices.get(deviceId)?.state;
    if (state === 'pending') this.kick();
    // Offered but nothing heard since: the offer may have been lost with the old connection.
    else if (state === 'offered' && this.deps.ports.redeliver) {
      this.deps.ports.redeliver(deviceId, r.row.patchId, r.row.id).then(
        () => this.deps.log.info({ deviceId, rolloutId: r.row.id }, 'offer redelivered on reconnect'),
        (err) => this.deps.log.warn({ err, deviceId, rolloutId: r.row.id }, 'offer redelivery failed'),
      );
    }
  }

  /**
   * For the health evaluator (RULES.md "Updates and alerting work together"): true while the device is
   * installing, and for `expectedRestartGraceS` after it installed; its silence then opens no loss ticket.
   */
  isInstallingOrRestarting(deviceId: string, now: number): boolean {
    const info = this.restart.get(deviceId);
    if (!info) return false;
    if (info.installingSince !== null) {
      // A device stuck installing past the progress timeout is failed by the gate; do not hide it forever.
      const timeout = this.byDevice.get(deviceId)?.row.spec.progressTimeoutMs ?? 3_600_000;
      if (now <= info.installingSince + timeout) return true;
    }
    const restarting = info.installedAt !== null && now >= info.installedAt && now <= info.installedAt + this.deps.config.expectedRestartGraceS * 1000;
    // Forget devices whose grace is over, so the map holds only the few devices updating now.
    if (!restarting && info.installingSince === null && info.installedAt !== null && now > info.installedAt) this.restart.delete(deviceId);
    return restarting;
  }

  // ---------------------------------------------------------------- queries

  list(): RolloutSummary[] {
    return this.store.list().map((row) => {
      const counts = emptyCounts();
      for (const c of this.store.waveCounts(row.id)) counts[c.state] += c.n;
      return { id: row.id, patchId: row.patchId, state: row.state, currentWave: row.currentWave, waves: row.spec.waves.length, createdAt: iso(row.createdAt)!, startedAt: iso(row.startedAt), endedAt: iso(row.endedAt), reason: row.reason, counts };
    });
  }

  view(id: string, excludedLimit = 1000): RolloutView {
    const row = this.store.get(id);
    if (!row) throw new NotFoundError(`rollout ${id} not found`);
    const now = this.deps.clock.now();
    const waves = row.spec.waves.map((w, index) => ({ index, size: 0, soakMs: w.soakMs, planned: w.size, counts: emptyCounts() }));
    const total = emptyCounts();
    let excludedAtPlanning = 0;
    for (const c of this.store.waveCounts(id)) {
      total[c.state] += c.n;
      if (c.wave === null) excludedAtPlanning += c.n;
      else if (waves[c.wave]) {
        waves[c.wave]!.counts[c.state] += c.n;
        waves[c.wave]!.size += c.n;
      }
    }
    const ended = row.state === 'completed' || row.state === 'aborted';
    const win = ended ? undefined : windowStateAt(row.spec.window, now);
    return {
      id: row.id,
      patchId: row.patchId,
      state: row.state,
      currentWave: row.currentWave,
      reason: row.reason,
      createdAt: iso(row.createdAt)!,
      startedAt: iso(row.startedAt),
      endedAt: iso(row.endedAt),
      spec: row.spec,
      window: win ? { open: win.open, openedAt: iso(win.openedAt ?? null), closesAt: iso(win.closesAt ?? null), opensAt: iso(win.opensAt ?? null) } : null,
      counts: total,
      waves,
      excludedAtPlanning,
      excluded: this.store.excluded(id, excludedLimit),
      events: this.store.events(id, 50).map((e) => ({ at: iso(e.ts)!, kind: e.kind, deviceId: e.deviceId, ...e.data })),
    };
  }

  /** Run one tick now (also what the timer does). Concurrent calls share the running tick, which then runs once more. */
  tick(): Promise<void> {
    if (this.ticking) {
      this.again = true;
      return this.ticking;
    }
    this.ticking = (async () => {
      try {
        do {
          this.again = false;
          await this.tickOnce();
        } while (this.again && !this.stopped);
      } catch (err) {
        this.deps.log.error({ err }, 'rollout tick failed');
      } finally {
        this.ticking = undefined;
      }
    })();
    return this.ticking;
  }

  /** Resolves when no tick is running (tests). */
  async idle(): Promise<void> {
    while (this.ticking) await this.ticking;
  }

  // ---------------------------------------------------------------- internals

  private schedule(): void {
    if (this.stopped) return;
    this.timer = this.deps.clock.setTimeout(() => {
      this.schedule();
      void this.tick();
    }, this.deps.config.tickMs);
  }

  private kick(): void {
    if (!this.stopped) void this.tick();
  }

  private load(row: RolloutRow): void {
    const devices = new Map(this.store.devices(row.id).map((d) => [d.deviceId, d]));
    const r: ActiveRollout = { row, devices, patch: this.deps.ports.patch(row.patchId) };
    this.active.set(row.id, r);
    for (const d of devices.values()) if (d.state !== 'excluded') this.byDevice.set(d.deviceId, r);
  }

  private requireActive(id: string): ActiveRollout {
    const r = this.active.get(id);
    if (r) return r;
    const row = this.store.get(id);
    if (!row) throw new NotFoundError(`rollout ${id} not found`);
    throw new ConflictError(`rollout ${id} is ${row.state}`);
  }

  private setRolloutState(r: ActiveRollout, to: RolloutState, reason: string | null, extra: Partial<RolloutRow> = {}): void {
    assertRolloutTransition(r.row.state, to, `rollout ${r.row.id}`);
    const now = this.deps.clock.now();
    const next: RolloutRow = { ...r.row, ...extra, state: to, reason, updatedAt: now };
    this.store.transaction(() => {
      this.store.updateRollout(next);
      this.store.event(r.row.id, now, to, null, reason ? { reason } : {});
    });
    r.row = next;
    this.deps.log.info({ rolloutId: r.row.id, state: to, reason }, 'rollout state');
  }

  /** Commit device transitions in one transaction, then mirror them in memory. Illegal transitions throw before anything is written. */
  private transitionDevices(r: ActiveRollout, next: readonly RolloutDeviceRow[], at: number, eventKind?: (d: RolloutDeviceRow) => string | undefined): void {
    if (next.length === 0) return;
    for (const d of next) {
      const current = r.devices.get(d.deviceId);
      if (!current) throw new NotFoundError(`device ${d.deviceId} is not in rollout ${r.row.id}`);
      if (current.state !== d.state) assertDeviceTransition(current.state, d.state, `device ${d.deviceId} in ${r.row.id}`);
    }
    this.store.transaction(() => {
      for (const d of next) {
        this.store.updateDevice(r.row.id, d);
        const kind = eventKind?.(d) ?? (d.state === 'failed' || d.state === 'excluded' || d.state === 'done' ? d.state : undefined);
        if (kind) this.store.event(r.row.id, at, kind, d.deviceId, d.detail ? { detail: d.detail } : {});
      }
    });
    for (const d of next) {
      r.devices.set(d.deviceId, d);
      if (d.state === 'excluded') this.byDevice.delete(d.deviceId);
    }
  }

  private notePatchState(deviceId: string, state: PatchState, at: number): void {
    const info = this.restart.get(deviceId) ?? { installingSince: null, installedAt: null };
    if (state === 'installing') info.installingSince ??= at;
    else if (state === 'installed') {
      info.installingSince = null;
      if (info.installedAt === null || info.installedAt < at - this.deps.config.expectedRestartGraceS * 1000) info.installedAt = at;
    } else if (state === 'failed' || state === 'rejected') info.installingSince = null;
    else if (state === 'rolled_back') {
      // A rollback restarts the device into its old version: the same grace applies.
      info.installingSince = null;
      info.installedAt = at;
    }
    this.restart.set(deviceId, info);
  }

  private applyStatus(r: ActiveRollout, deviceId: string, state: PatchState, at: number, detail: string | undefined): void {
    const d = r.devices.get(deviceId);
    if (!d) return;
    const to = deviceStateForPatchState(state);
    if (TERMINAL.has(d.state) || d.state === 'pending') {
      // pending: a status for an offer this daemon has no record of sending; terminal: too late. Neither moves it.
      if (d.state === 'pending') this.deps.log.warn({ rolloutId: r.row.id, deviceId, state }, 'patch status for a device not offered yet; ignored');
      return;
    }
    if (to === d.state) {
      // Repeated status (heartbeats repeat the latest one): only the progress clock moves, in memory and on disk.
      if (to !== 'installed') this.transitionDevices(r, [{ ...d, progressAt: at }], at, () => undefined);
      return;
    }
    if (to !== 'failed' && PROGRESS_RANK[to] < PROGRESS_RANK[d.state]) return; // out of order: older than what we know
    const next: RolloutDeviceRow = { ...d, state: to, progressAt: at, detail: detail ? `${state}: ${detail}` : to === 'failed' ? state : d.detail };
    if (to === 'installed') next.installedAt = at;
    this.transitionDevices(r, [next], at);
    if (to === 'failed') this.kick();
  }

  private onDeviceChanged(device: DeviceRecord): void {
    const now = this.deps.clock.now();
    if (device.revokedAt !== null) {
      const r = this.byDevice.get(device.id);
      const d = r?.devices.get(device.id);
      if (r && d?.state === 'pending') this.transitionDevices(r, [{ ...d, state: 'excluded', detail: 'revoked' }], now);
      return;
    }
    // Devices registered after the rollout was planned join the remaining waves when they match the target
    // (RULES.md); eligibility and version are checked at offer time, once the device has heartbeated.
    for (const r of this.active.values()) {
      if (r.devices.has(device.id) || this.byDevice.has(device.id) || !r.patch) continue;
      if (r.row.state !== 'scheduled' && r.row.state !== 'running' && r.row.state !== 'paused') continue;
      if (staticMismatch(device, r.row.spec.target, r.patch)) continue;
      if (this.store.wasOffered(device.id, r.row.patchId)) continue;
      const wave = Math.max(r.row.currentWave, r.row.spec.waves.length - 1);
      const row = newDevice(device.id, wave, 'pending', null);
      row.joinedAt = now;
      this.store.transaction(() => {
        this.store.insertDevice(r.row.id, row);
        this.store.event(r.row.id, now, 'joined', device.id, { wave });
      });
      r.devices.set(device.id, row);
      this.byDevice.set(device.id, r);
      this.deps.log.info({ rolloutId: r.row.id, deviceId: device.id, wave }, 'device joined rollout');
      return;
    }
  }

  private async tickOnce(): Promise<void> {
    const now = this.deps.clock.now();
    const offers: { r: ActiveRollout; ids: string[] }[] = [];
    for (const r of [...this.active.values()]) {
      if (this.stopped) return;
      const ids = this.step(r, now);
      if (ids.length > 0) offers.push({ r, ids });
    }
    for (const { r, ids } of offers) await this.publish(r, ids);
  }

  /** One rollout's tick: start, gate, and pick (and commit) the offers to send. Returns the device ids to offer. */
  private step(r: ActiveRollout, now: number): string[] {
    if (r.row.state === 'paused') return [];
    r.patch ??= this.deps.ports.patch(r.row.patchId);
    if (!r.patch || Date.parse(r.patch.expiresAt) <= now) {
      this.endRollout(r, 'aborted', r.patch ? `patch ${r.row.patchId} expired at ${r.patch.expiresAt}` : `patch ${r.row.patchId} is no longer published`, true);
      return [];
    }
    const spec = r.row.spec;
    const win = windowStateAt(spec.window, now);
    if (r.row.state === 'scheduled') {
      if (!win.open) return [];
      this.setRolloutState(r, 'running', null, { startedAt: now, waveStartedAt: now });
      this.emit(r, 'rollout.started');
    }
    if (!this.gate(r, now)) return [];
    if (!win.open) return [];
    return this.pickOffers(r, win, now);
  }

  /** Judge in-flight devices and apply the wave gate. Returns false when the rollout ended. */
  private gate(r: ActiveRollout, now: number): boolean {
    const spec = r.row.spec;
    // Judge every in-flight device (late offers of earlier waves too) with its own wave's soak.
    const failed: RolloutDeviceRow[] = [];
    for (const d of r.devices.values()) {
      if (!IN_FLIGHT.has(d.state)) continue;
      const soakMs = spec.waves[d.wave ?? 0]?.soakMs ?? spec.waves[spec.waves.length - 1]!.soakMs;
      const reason = judgeDevice(progressOf(d, false), now, { soakMs, progressTimeoutMs: spec.progressTimeoutMs });
      if (reason) failed.push({ ...d, state: 'failed', detail: reason });
    }
    this.transitionDevices(r, failed, now);

    for (;;) {
      const byWave = this.devicesByWave(r);
      // A wave already passed can still exceed the threshold through late failures: check them all.
      for (let w = 0; w <= r.row.currentWave; w++) {
        const soakMs = spec.waves[w]!.soakMs;
        const result = gateDecision(byWave[w] ?? [], now, { soakMs, abortThreshold: spec.abortThreshold, progressTimeoutMs: spec.progressTimeoutMs });
        if (result.decision === 'abort') {
          const reason = `wave ${w + 1}: ${result.tally.failed} of ${result.tally.size} devices failed (${(result.failedShare * 100).toFixed(1)} % > ${(spec.abortThreshold * 100).toFixed(1)} %)`;
          this.endRollout(r, 'aborted', reason, true);
          return false;
        }
        if (w < r.row.currentWave) continue;
        if (result.decision === 'wait') return true;
        // advance
        if (r.row.currentWave >= spec.waves.length - 1) {
          this.endRollout(r, 'completed', `all ${spec.waves.length} waves passed their health gate`);
          return false;
        }
        const next = r.row.currentWave + 1;
        const row: RolloutRow = { ...r.row, currentWave: next, waveStartedAt: now, updatedAt: now };
        this.store.transaction(() => {
          this.store.updateRollout(row);
          this.store.event(r.row.id, now, 'wave', null, { wave: next + 1, passed: { ...result.tally } });
        });
        r.row = row;
        this.deps.log.info({ rolloutId: r.row.id, wave: next + 1, passed: result.tally }, 'wave passed its gate; next wave');
        break;
      }
    }
  }

  private devicesByWave(r: ActiveRollout): DeviceProgress[][] {
    const byWave: DeviceProgress[][] = r.row.spec.waves.map(() => []);
    for (const d of r.devices.values()) {
      if (d.wave === null) continue;
      byWave[d.wave]?.push(progressOf(d, d.state === 'pending' && this.deps.ports.isConnected(d.deviceId)));
    }
    return byWave;
  }

  private pickOffers(r: ActiveRollout, win: WindowState, now: number): string[] {
    const { ports, directory } = this.deps;
    const spec = r.row.spec;
    const openedAt = win.openedAt!;
    const closesAt = win.closesAt!;
    const due: (CapCandidate & { wave: number; at: number })[] = [];
    const excluded: RolloutDeviceRow[] = [];
    for (const d of r.devices.values()) {
      if (d.state !== 'pending' || d.wave === null || d.wave > r.row.currentWave) continue;
      if (!ports.isConnected(d.deviceId)) continue;
      // Spread the wave's offers over [base, base + jitter), clamped to what is left of the window.
      const base = d.wave === r.row.currentWave ? Math.max(openedAt, r.row.waveStartedAt ?? openedAt) : openedAt;
      const at = base + jitterOffset(d.deviceId, r.row.id, Math.min(spec.jitterMs, closesAt - base));
      if (at > now) continue;
      const device = directory.get(d.deviceId);
      if (!device || device.revokedAt !== null) {
        excluded.push({ ...d, state: 'excluded', detail: device ? 'revoked' : 'no longer registered' });
        continue;
      }
      due.push({ deviceId: d.deviceId, group: groupOf(device), wave: d.wave, at });
    }
    due.sort((a, b) => a.wave - b.wave || a.at - b.at || (a.deviceId < b.deviceId ? -1 : 1));
    const caps = { maxConcurrent: spec.maxConcurrent, maxPerGateway: spec.maxPerGateway };
    const { picked } = pickWithinCaps(due, this.inFlight(), caps, (c) => {
      // Offer-time guard, only for devices that fit the caps: eligibility and software may have changed since
      // planning (or were never known, for a device that joined later).
      const mismatch = liveMismatch(c.deviceId, spec.target, r.patch!, ports, now);
      if (!mismatch) return true;
      excluded.push({ ...r.devices.get(c.deviceId)!, state: 'excluded', detail: mismatch });
      return false;
    });
    this.transitionDevices(r, excluded, now);
    if (picked.length === 0) return [];
    // Committed before the publish: after a crash between the two, the device is `offered` and never offered again.
    this.transitionDevices(
      r,
      picked.map((id) => ({ ...r.devices.get(id)!, state: 'offered' as const, offeredAt: now, progressAt: now })),
      now,
      () => undefined,
    );
    return picked;
  }

  private inFlight(): { fleet: number; groups: Map<string, number> } {
    let fleet = 0;
    const groups = new Map<string, number>();
    for (const r of this.active.values()) {
      for (const d of r.devices.values()) {
        if (!IN_FLIGHT.has(d.state)) continue;
        fleet++;
        const device = this.deps.directory.get(d.deviceId);
        const group = device ? groupOf(device) : d.deviceId;
        groups.set(group, (groups.get(group) ?? 0) + 1);
      }
    }
    return { fleet, groups };
  }

  private async publish(r: ActiveRollout, ids: string[]): Promise<void> {
    let sent = 0;
    for (let i = 0; i < ids.length; i += OFFER_CONCURRENCY) {
      const chunk = ids.slice(i, i + OFFER_CONCURRENCY);
      const results = await Promise.allSettled(chunk.map((id) => this.deps.ports.offer(id, r.row.patchId, r.row.id)));
      const undelivered: RolloutDeviceRow[] = [];
      results.forEach((res, j) => {
        const id = chunk[j]!;
        if (res.status === 'fulfilled') {
          sent++;
          return;
        }
        this.deps.log.warn({ rolloutId: r.row.id, deviceId: id, err: res.reason }, 'offer not handed to the broker; will retry');
        const d = r.devices.get(id);
        // Only if nothing else happened meanwhile: the port said it sent nothing, so this is not a second offer.
        if (d?.state === 'offered') undelivered.push({ ...d, state: 'pending', offeredAt: null, progressAt: null, detail: `offer failed: ${String((res.reason as Error)?.message ?? res.reason)}` });
      });
      if (this.active.has(r.row.id)) this.transitionDevices(r, undelivered, this.deps.clock.now(), () => 'offer_failed');
    }
    if (sent > 0) this.deps.onOffered?.(sent);
    this.deps.log.debug({ rolloutId: r.row.id, sent, attempted: ids.length }, 'offers sent');
  }

  private endRollout(r: ActiveRollout, to: 'completed' | 'aborted', reason: string, automatic = false): void {
    const now = this.deps.clock.now();
    assertRolloutTransition(r.row.state, to, `rollout ${r.row.id}`);
    // Completed: devices that stayed offline through the whole rollout are recorded as left out, with why.
    if (to === 'completed') {
      const left = [...r.devices.values()].filter((d) => d.state === 'pending').map((d) => ({ ...d, state: 'excluded' as const, detail: 'offline until the rollout completed' }));
      this.transitionDevices(r, left, now);
    }
    this.setRolloutState(r, to, reason, { endedAt: now });
    this.active.delete(r.row.id);
    for (const [deviceId, owner] of this.byDevice) if (owner === r) this.byDevice.delete(deviceId);
    if (to === 'aborted' && automatic) {
      const counts = countStates(r);
      const targeted = r.devices.size - counts.excluded;
      try {
        this.deps.ports.sink.raise({
          kind: 'rollout_aborted',
          subject: `rollout:${r.row.id}`,
          classification: 'problem',
          severity: abortSeverity(counts.failed, targeted),
          summary: `Rollout ${r.row.id} of ${r.row.patchId} aborted: ${reason}`,
          details: {
            rolloutId: r.row.id,
            patchId: r.row.patchId,
            wave: r.row.currentWave + 1,
            failed: counts.failed,
            targeted,
            failedDevices: [...r.devices.values()].filter((d) => d.state === 'failed').slice(0, 100).map((d) => ({ deviceId: d.deviceId, detail: d.detail })),
          },
        });
      } catch (err) {
        this.deps.log.error({ err, rolloutId: r.row.id }, 'could not raise the rollout_aborted ticket');
      }
    }
    this.emit(r, to === 'completed' ? 'rollout.completed' : 'rollout.aborted', reason);
  }

  private emit(r: ActiveRollout, type: RolloutEvent['type'], reason?: string): void {
    const event: RolloutEvent = { type, rolloutId: r.row.id, patchId: r.row.patchId, at: new Date(this.deps.clock.now()).toISOString(), counts: countStates(r) };
    if (reason) event.reason = reason;
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (err) {
        this.deps.log.error({ err, rolloutId: r.row.id, type }, 'rollout event listener failed');
      }
    }
  }
}

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
  window: { open: boolean; openedAt: string | null; closesAt: string | null; opensAt: string | null } | null;
  counts: Record<DeviceRolloutState, number>;
  waves: { index: number; size: number; soakMs: number; planned: RolloutSpec['waves'][number]['size']; counts: Record<DeviceRolloutState, number> }[];
  excludedAtPlanning: number;
  excluded: { deviceId: string; wave: number | null; reason: string }[];
  events: Record<string, unknown>[];
}

function newDevice(deviceId: string, wave: number | null, state: DeviceRolloutState, detail: string | null): RolloutDeviceRow {
  return { deviceId, wave, state, offeredAt: null, installedAt: null, doneAt: null, progressAt: null, joinedAt: null, detail };
}

function progressOf(d: RolloutDeviceRow, connected: boolean): DeviceProgress {
  return { deviceId: d.deviceId, state: d.state, connected, installedAt: d.installedAt, lastProgressAt: d.progressAt ?? d.offeredAt };
}

function emptyCounts(): Record<DeviceRolloutState, number> {
  return { pending: 0, offered: 0, downloading: 0, installing: 0, installed: 0, done: 0, failed: 0, excluded: 0 };
}

function countStates(r: ActiveRollout): Record<DeviceRolloutState, number> {
  const counts = emptyCounts();
  for (const d of r.devices.values()) counts[d.state]++;
  return counts;
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

export type { RolloutSpec };
