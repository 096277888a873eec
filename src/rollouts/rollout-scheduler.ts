import type { Database } from '../db/database.js';
import type { Clock, TimerHandle } from '../clock.js';
import type { Logger } from '../log.js';
import type { Config } from '../config/schema.js';
import type { DeviceDirectory, DeviceRecord } from '../registry/types.js';
import type { Heartbeat, PatchStatus } from '../protocol/types.js';
import { ConflictError, NotFoundError } from '../errors.js';
import { compareVersions, parseVersion } from '../../patches/version-match.js';
import type { PublishedPatch, RolloutPorts } from './ports.js';
import { normalizeSpec, type RolloutSpec } from './rollout-spec.js';
import { staticMismatch } from './plan.js';
import { windowNeverOpens, windowStateAt, type WindowState } from './window.js';
import { abortTicket } from './gate.js';
import { planRollout, newDevice } from './rollout-create.js';
import { inFlightOf, pickOffers } from './offer-pick.js';
import {
  afterFailure, applyHeartbeat, applyStatus, gateDecision, isActivePending, judgeInFlight, judgeSoak,
  type DeviceRules, type GateDevice,
} from './next-step.js';
import {
  IN_FLIGHT, assertDeviceTransition, assertRolloutTransition, canTransitionDevice, deviceStateForPatchState,
  type DeviceRolloutState, type RolloutState,
} from './rollout-states.js';
import { RolloutStore, type RolloutDeviceRow, type RolloutRow } from './rollout-store.js';
import { buildView, emptyCounts, summarize, type RolloutSummary, type RolloutView } from './rollout-view.js';

/** What the scheduler announces; the lead wires it to the helpdesk webhook (completion, abort, failure). */
export interface RolloutEvent {
  type: 'rollout.started' | 'rollout.paused' | 'rollout.resumed' | 'rollout.completed' | 'rollout.aborted' | 'rollout.failed';
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
  /** `missedHeartbeats` (health config): a done device silent this many of its intervals fails its soak. */
  config: Config['rollouts'] & { missedHeartbeats?: number; expectedRestartGraceS?: number };
  directory: DeviceDirectory;
  ports: RolloutPorts;
  /** Counts offers handed to the broker; optional. */
  onOffered?: (count: number) => void;
}

interface ActiveRollout {
  row: RolloutRow;
  devices: Map<string, RolloutDeviceRow>;
  patch: PublishedPatch | undefined;
  /** The current wave's soak end while it bakes (for the view), else null. */
  soakEndsAt: number | null;
}

/** Publishing a batch of offers: this many at once, so 10 000 offers do not queue 10 000 promises on the broker. */
const OFFER_CONCURRENCY = 1000;

/**
 * Runs rollouts (RULES.md "Remote patching"): the I/O shell around the pure decisions of next-step.ts. Every
 * tick, for each rollout on its own (one that throws is failed, the others go on): judge devices by time
 * (progress, time allowed to report, soak health, retries), apply the gate of the current wave (wait / advance
 * / abort), then, inside the maintenance window, offer due devices that can receive now, within the caps.
 * Every transition is committed to SQLite before it is acted on (a device is `offered`, and the one offer
 * record written, before the MQTT publish), so a restart resumes without double offers.
 */
export class RolloutScheduler {
  private readonly store: RolloutStore;
  private readonly active = new Map<string, ActiveRollout>();
  /** Device -> the active rollout it takes part in (not excluded). A device is in at most one. */
  private readonly byDevice = new Map<string, ActiveRollout>();
  /** Latest heartbeat per device in a rollout: receive time and the interval it announced (soak health). */
  private readonly beats = new Map<string, { at: number; intervalMs: number }>();
  /**
   * Devices whose loss ticket was already open when they became done (or when we started watching them): it
   * belongs to an outage before the install (e.g. the device was offline when the rollout began) and stays
   * open until it auto-resolves; only a loss ticket that appears during the soak fails the device.
   */
  private readonly lossBeforeDone = new Set<string>();
  private readonly listeners = new Set<(event: RolloutEvent) => void>();
  private timer: TimerHandle | undefined;
  private ticking: Promise<void> | undefined;
  private again = false;
  private stopped = true;
  private startedAt = 0;
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly deps: RolloutSchedulerDeps) {
    this.store = new RolloutStore(deps.db);
  }

  start(): void {
    this.stopped = false;
    this.startedAt = this.deps.clock.now();
    for (const row of this.store.active()) this.load(row);
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

  /** Hook for completion/abort/failure (and start/pause/resume) events: the helpdesk webhook, tests. Returns unsubscribe. */
  onRolloutEvent(listener: (event: RolloutEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // ---------------------------------------------------------------- commands

  /** Validate, plan and store a rollout. Nothing is stored when validation fails. */
  create(input: unknown): RolloutView {
    const now = this.deps.clock.now();
    const plan = planRollout(input, { config: this.deps.config, ports: this.deps.ports, directory: this.deps.directory, busy: this.store.busyDevices() }, now);
    let created: RolloutRow | undefined;
    this.store.transaction(() => {
      const id = this.store.nextId(now);
      const { row, devices, waves } = plan.rows(id);
      this.store.insertRollout(row, devices);
      this.store.event(id, now, 'created', null, { targeted: plan.targeted, excluded: plan.excluded, waves });
      created = row;
    });
    const row = created!;
    this.deps.log.info({ rolloutId: row.id, patchId: row.patchId, targeted: plan.targeted, excluded: plan.excluded }, 'rollout created');
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

  /**
   * Operator abort: stops offering; no ticket (the operator knows), but the event is announced. With `force`
   * (RULES.md "A person can cancel a rollout by force"), every device in flight is also sent a PatchCancel
   * (recorded first, re-sent on each reconnect until its job ends); those not past their point of no return
   * stop and report `cancelled`, which is recorded on the ended rollout.
   */
  abort(id: string, reason = 'aborted by operator', force = false): RolloutView {
    const r = this.requireActive(id);
    const cancelled: RolloutDeviceRow[] = [];
    if (force) {
      const now = this.deps.clock.now();
      for (const d of r.devices.values()) {
        if (d.state === 'offered' || d.state === 'downloading' || d.state === 'installing') cancelled.push({ ...d, cancelRequestedAt: now });
      }
      this.transitionDevices(r, cancelled, now, () => 'cancel_requested');
    }
    this.endRollout(r, 'aborted', force ? `${reason} (forced: cancel sent to ${cancelled.length} devices)` : reason);
    for (const d of cancelled) {
      this.deps.ports.cancel?.(d.deviceId, r.row.patchId, r.row.id).catch((err: unknown) =>
        this.deps.log.warn({ err, deviceId: d.deviceId, rolloutId: r.row.id }, 'cancel not sent now; sent at the next reconnect'),
      );
    }
    return this.view(id);
  }

  // ---------------------------------------------------------------- inputs from ingest and the broker

  /** A validated PatchStatus (PROTOCOL.md) from a device. */
  onPatchStatus(deviceId: string, status: PatchStatus, at: number): void {
    const r = this.byDevice.get(deviceId);
    if (r && r.row.patchId === status.patchId && (!status.rolloutId || status.rolloutId === r.row.id)) {
      this.applyDeviceStatus(r, deviceId, status.state, at, status.detail, status.retryable);
      return;
    }
    // A status for a rollout that has ended (in flight when it was aborted, or cancelled by force): record it.
    if (status.rolloutId && !this.active.has(status.rolloutId)) {
      const row = this.store.endedInFlight(deviceId, status.rolloutId);
      if (!row || !IN_FLIGHT.has(row.state)) return;
      const to = deviceStateForPatchState(status.state);
      if (to === row.state || !canTransitionDevice(row.state, to) || to === 'done' || to === 'pending') return;
      const detail = status.detail ? `${status.state}: ${status.detail}` : status.state;
      this.store.updateDevice(status.rolloutId, { ...row, state: to, progressAt: at, installedAt: to === 'installed' ? at : row.installedAt, detail });
    }
  }

  /** A validated heartbeat: its `patch` field converges lost statuses, its softwareVersion proves the install. */
  onHeartbeat(deviceId: string, hb: Heartbeat, at: number): void {
    const r = this.byDevice.get(deviceId);
    if (!r) return;
    this.beats.set(deviceId, { at, intervalMs: hb.intervalS * 1000 });
    const ours = hb.patch && hb.patch.patchId === r.row.patchId && (!hb.patch.rolloutId || hb.patch.rolloutId === r.row.id) ? hb.patch : undefined;
    if (ours) this.applyDeviceStatus(r, deviceId, ours.state, at, undefined, undefined);
    const d = r.devices.get(deviceId);
    if (!d || !r.patch) return;
    const version = parseVersion(hb.softwareVersion);
    const onNewVersion = version !== null && compareVersions(version, r.patch.version) === 0;
    const next = applyHeartbeat(d, { at, onNewVersion, softwareVersion: hb.softwareVersion, patchState: ours?.state }, this.gateOpen(r, d));
    if (!next) return;
    this.transitionDevices(r, [next], at);
    this.kick();
  }

  /**
   * The device can receive commands now (its SUBSCRIBE to its own cmd/ topic is in place, or, behind an
   * external broker, its live online state after SUBACK). If it waits for an offer in a running rollout,
   * offer it at once (inside the window). Offers and cancels already recorded are re-sent by the patch
   * service's own ready handler (PatchService.onDeviceReady).
   */
  onDeviceReady(deviceId: string): void {
    const r = this.byDevice.get(deviceId);
    if (!r || r.row.state !== 'running') return;
    if (r.devices.get(deviceId)?.state === 'pending') this.kick();
  }

  // ---------------------------------------------------------------- queries

  /** Is this rollout scheduled, running or paused (its recorded offers are still wanted)? */
  isActive(rolloutId: string): boolean {
    return this.active.has(rolloutId);
  }

  list(): RolloutSummary[] {
    return this.store.list().map((row) => summarize(this.store, row));
  }

  view(id: string, excludedLimit = 1000): RolloutView {
    return buildView(this.store, id, this.deps.clock.now(), { excludedLimit, soakEndsAt: this.active.get(id)?.soakEndsAt ?? null });
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
    const r: ActiveRollout = { row: { ...row, spec: normalizeSpec(row.spec) }, devices, patch: this.deps.ports.patch(row.patchId), soakEndsAt: null };
    this.active.set(row.id, r);
    for (const d of devices.values()) {
      if (d.state !== 'excluded') this.byDevice.set(d.deviceId, r);
      if (d.state === 'done' && this.hasLossTicket(d.deviceId)) this.lossBeforeDone.add(d.deviceId);
    }
  }

  private hasLossTicket(deviceId: string): boolean {
    try {
      return this.deps.ports.sink.hasOpen(['gateway_loss'], deviceId);
    } catch {
      return false;
    }
  }

  private requireActive(id: string): ActiveRollout {
    const r = this.active.get(id);
    if (r) return r;
    const row = this.store.get(id);
    if (!row) throw new NotFoundError(`rollout ${id} not found`);
    throw new ConflictError(`rollout ${id} is ${row.state}`);
  }

  private rules(r: ActiveRollout, d: RolloutDeviceRow): DeviceRules {
    const spec = r.row.spec;
    const wave = spec.waves[d.wave ?? 0] ?? spec.waves[spec.waves.length - 1]!;
    return { soakMs: wave.soakMs, reportTimeoutMs: spec.reportTimeoutMs, progressTimeoutMs: spec.progressTimeoutMs, retries: spec.retries, retryBackoffMs: spec.retryBackoffMs };
  }

  /** Is the device's wave gate still open (its wave is the current one or later)? Then a done device can still fail. */
  private gateOpen(r: ActiveRollout, d: RolloutDeviceRow): boolean {
    return d.wave !== null && d.wave >= r.row.currentWave;
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
        const kind = eventKind?.(d) ?? defaultEventKind(r.devices.get(d.deviceId)!, d);
        if (kind) this.store.event(r.row.id, at, kind, d.deviceId, d.detail ? { detail: d.detail } : {});
      }
    });
    for (const d of next) {
      const before = r.devices.get(d.deviceId)!;
      r.devices.set(d.deviceId, d);
      if (d.state === 'excluded') this.byDevice.delete(d.deviceId);
      if (d.state === 'done' && before.state !== 'done') {
        if (this.hasLossTicket(d.deviceId)) this.lossBeforeDone.add(d.deviceId);
        else this.lossBeforeDone.delete(d.deviceId);
      }
    }
  }

  private applyDeviceStatus(r: ActiveRollout, deviceId: string, state: PatchStatus['state'], at: number, detail: string | undefined, retryable: boolean | undefined): void {
    const d = r.devices.get(deviceId);
    if (!d) return;
    if (d.state === 'pending') {
      // A status for an offer this daemon has no record of sending (or of a try that ended): it moves nothing.
      if (d.retryAt === null) this.deps.log.warn({ rolloutId: r.row.id, deviceId, state }, 'patch status for a device not offered yet; ignored');
      return;
    }
    const next = applyStatus(d, { state, at, detail, retryable }, this.gateOpen(r, d), this.rules(r, d), r.row.id);
    if (!next) return;
    // A repeat only moves the progress clock: no event.
    this.transitionDevices(r, [next], at, next.state === d.state ? () => undefined : undefined);
    if (next.state === 'failed' || next.state === 'pending') this.kick();
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
      if (staticMismatch(device, r.row.spec.target, r.patch)) continue;
      if (this.deps.ports.offeredDevices(r.row.patchId).has(device.id)) continue;
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
      try {
        const ids = this.step(r, now);
        if (ids.length > 0) offers.push({ r, ids });
      } catch (err) {
        // Issue 9 fault 8: one rollout that cannot run must not stop the others.
        this.failRollout(r, err);
      }
    }
    for (const { r, ids } of offers) await this.publish(r, ids);
  }

  /** One rollout's tick: start, judge, gate, and pick (and commit) the offers to send. Returns the device ids to offer. */
  private step(r: ActiveRollout, now: number): string[] {
    if (r.row.state === 'paused') return [];
    r.patch ??= this.deps.ports.patch(r.row.patchId);
    if (!r.patch || Date.parse(r.patch.expiresAt) <= now) {
      this.endRollout(r, 'aborted', r.patch ? `patch ${r.row.patchId} expired at ${r.patch.expiresAt}` : `patch ${r.row.patchId} is no longer published`, true);
      return [];
    }
    const win = windowStateAt(r.row.spec.window, now);
    if (r.row.state === 'scheduled') {
      // Stored before creation refused it: fail it (reason, event, ticket) so it frees its devices.
      if (!win.open && win.opensAt === undefined) throw new Error(windowNeverOpens(r.row.spec.window, now) ?? 'window never opens');
      if (!win.open) return [];
      this.setRolloutState(r, 'running', null, { startedAt: now, waveStartedAt: now });
      this.emit(r, 'rollout.started');
    }
    this.judge(r, now);
    if (!this.gate(r, now)) return [];
    if (!win.open) return [];
    return this.pickOffers(r, win, now);
  }

  /** Judge devices by time: in flight (progress, time to report), and done devices whose wave still bakes. */
  private judge(r: ActiveRollout, now: number): void {
    const next: RolloutDeviceRow[] = [];
    const missed = this.deps.config.missedHeartbeats ?? 3;
    for (const d of r.devices.values()) {
      const rules = this.rules(r, d);
      if (IN_FLIGHT.has(d.state)) {
        const failure = judgeInFlight(d, now, rules);
        if (failure) next.push(afterFailure(d, failure, now, rules, r.row.id));
      } else if (d.state === 'done' && this.gateOpen(r, d)) {
        const beat = this.beats.get(d.deviceId);
        const failure = judgeSoak(
          d,
          now,
          {
            lastHeartbeatAt: beat?.at ?? null,
            // Without a heartbeat since our start the interval is unknown: only a loss ticket judges it then.
            silenceMs: beat ? missed * beat.intervalMs + 1000 : Number.POSITIVE_INFINITY,
            lossTicket: !this.lossBeforeDone.has(d.deviceId) && this.hasLossTicket(d.deviceId),
          },
          Math.max(d.doneAt ?? now, this.startedAt),
        );
        if (failure) next.push({ ...d, state: 'failed', detail: failure.reason });
      }
    }
    this.transitionDevices(r, next, now);
  }

  /** Apply the wave gate. Returns false when the rollout ended. */
  private gate(r: ActiveRollout, now: number): boolean {
    const spec = r.row.spec;
    for (;;) {
      const byWave = this.devicesByWave(r);
      r.soakEndsAt = null;
      // A wave already passed can still exceed the threshold through late failures: check them all.
      for (let w = 0; w <= r.row.currentWave; w++) {
        const result = gateDecision(byWave[w] ?? [], now, { soakMs: spec.waves[w]!.soakMs, abortThreshold: spec.abortThreshold });
        if (result.decision === 'abort') {
          const reason = `wave ${w + 1}: ${result.tally.failed} of ${result.tally.size} devices failed (${(result.failedShare * 100).toFixed(1)} % > ${(spec.abortThreshold * 100).toFixed(1)} %)`;
          this.endRollout(r, 'aborted', reason, true);
          return false;
        }
        if (w < r.row.currentWave) continue;
        if (result.decision === 'wait') {
          r.soakEndsAt = result.soakEndsAt;
          return true;
        }
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

  private devicesByWave(r: ActiveRollout): GateDevice[][] {
    const byWave: GateDevice[][] = r.row.spec.waves.map(() => []);
    for (const d of r.devices.values()) {
      if (d.wave === null) continue;
      byWave[d.wave]?.push({ state: d.state, doneAt: d.doneAt, active: isActivePending(d, d.state === 'pending' && this.deps.ports.isConnected(d.deviceId)) });
    }
    return byWave;
  }

  private pickOffers(r: ActiveRollout, win: WindowState, now: number): string[] {
    const { picked, excluded } = pickOffers(
      { row: r.row, devices: r.devices.values(), patch: r.patch! },
      win,
      now,
      { ports: this.deps.ports, directory: this.deps.directory, inFlight: inFlightOf([...this.active.values()].map((a) => a.devices.values()), this.deps.directory) },
    );
    this.transitionDevices(r, excluded.map((e) => ({ ...r.devices.get(e.deviceId)!, state: 'excluded' as const, detail: e.reason })), now);
    if (picked.length === 0) return [];
    return this.commitOffers(r, picked, now);
  }

  /**
   * Commit `offered` and the one offer record together, before anything is sent: after a crash between the
   * two the device is `offered` and its offer is re-sent at its next ready signal, never recorded twice. A
   * device someone else offered this patch meanwhile (a manual offer) is left out with that reason.
   */
  private commitOffers(r: ActiveRollout, picked: readonly string[], now: number): string[] {
    const sent: string[] = [];
    const rows: RolloutDeviceRow[] = [];
    this.store.transaction(() => {
      const refused = this.deps.ports.recordOffers(
        picked.map((id) => ({ deviceId: id, retry: r.devices.get(id)!.attempts > 0 })),
        r.row.patchId,
        r.row.id,
        now,
      );
      for (const id of picked) {
        const d = r.devices.get(id)!;
        let next: RolloutDeviceRow;
        const conflict = refused.get(id);
        if (!conflict) {
          next = { ...d, state: 'offered', offeredAt: now, progressAt: now, attempts: d.attempts + 1, retryAt: null };
          sent.push(id);
        } else {
          next = { ...d, state: 'excluded', detail: conflict.message };
        }
        assertDeviceTransition(d.state, next.state, `device ${id} in ${r.row.id}`);
        this.store.updateDevice(r.row.id, next);
        if (next.state === 'excluded') this.store.event(r.row.id, now, 'excluded', id, { detail: next.detail });
        else if (next.attempts > 1) this.store.event(r.row.id, now, 'retry', id, { attempt: next.attempts });
        rows.push(next);
      }
    });
    for (const d of rows) {
      r.devices.set(d.deviceId, d);
      if (d.state === 'excluded') this.byDevice.delete(d.deviceId);
    }
    return sent;
  }

  private async publish(r: ActiveRollout, ids: string[]): Promise<void> {
    let sent = 0;
    for (let i = 0; i < ids.length; i += OFFER_CONCURRENCY) {
      const chunk = ids.slice(i, i + OFFER_CONCURRENCY);
      const results = await Promise.allSettled(chunk.map((id) => this.deps.ports.offer(id, r.row.patchId, r.row.id)));
      results.forEach((res, j) => {
        if (res.status === 'fulfilled') sent++;
        // The offer stays recorded: the patch service re-sends it at the device's next ready signal.
        else this.deps.log.warn({ rolloutId: r.row.id, deviceId: chunk[j], err: res.reason }, 'offer not handed to the broker; re-sent at the next reconnect');
      });
    }
    if (sent > 0) this.deps.onOffered?.(sent);
    this.deps.log.debug({ rolloutId: r.row.id, sent, attempted: ids.length }, 'offers sent');
  }

  /** Issue 9 fault 8: a rollout that throws at run time is failed with the reason, an event and a ticket. */
  private failRollout(r: ActiveRollout, err: unknown): void {
    const reason = `failed at run time: ${(err as Error)?.message ?? String(err)}`;
    this.deps.log.error({ err, rolloutId: r.row.id }, 'rollout failed at run time; the others go on');
    try {
      this.endRollout(r, 'failed', reason, true);
    } catch (endErr) {
      // Even recording it failed (storage): take it out of this process's ticks so the others still run.
      this.deps.log.error({ err: endErr, rolloutId: r.row.id }, 'could not record the rollout failure; it is skipped until restart');
      this.active.delete(r.row.id);
      for (const [deviceId, owner] of this.byDevice) if (owner === r) this.byDevice.delete(deviceId);
    }
  }

  private endRollout(r: ActiveRollout, to: 'completed' | 'aborted' | 'failed', reason: string, automatic = false): void {
    const now = this.deps.clock.now();
    assertRolloutTransition(r.row.state, to, `rollout ${r.row.id}`);
    // A device still `pending` when the rollout ends will never be offered by it: record it as left out, with
    // why, so the store (and `fleet_rollout_devices{state="pending"}`) never shows stale pending devices of an
    // ended rollout (issue 9 follow-up fault 3). Completed: they stayed offline through the whole rollout.
    const why = to === 'completed' ? 'offline until the rollout completed' : `not offered: rollout ${to} (${reason})`;
    const left = [...r.devices.values()].filter((d) => d.state === 'pending').map((d) => ({ ...d, state: 'excluded' as const, detail: why }));
    // One transaction (nested ones are savepoints): a crash never leaves a running rollout with its pending
    // devices already left out, nor an ended one with devices still pending.
    this.store.transaction(() => {
      this.transitionDevices(r, left, now);
      this.setRolloutState(r, to, reason, { endedAt: now });
    });
    this.active.delete(r.row.id);
    for (const [deviceId, owner] of this.byDevice) if (owner === r) this.byDevice.delete(deviceId);
    if (to !== 'completed' && automatic) this.raiseTicket(r, reason);
    this.emit(r, to === 'completed' ? 'rollout.completed' : to === 'failed' ? 'rollout.failed' : 'rollout.aborted', reason);
  }

  private raiseTicket(r: ActiveRollout, reason: string): void {
    try {
      this.deps.ports.sink.raise(abortTicket(r.row, [...r.devices.values()], reason));
    } catch (err) {
      this.deps.log.error({ err, rolloutId: r.row.id }, 'could not raise the rollout_aborted ticket');
    }
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

export type { RolloutSummary, RolloutView };

function defaultEventKind(before: RolloutDeviceRow, after: RolloutDeviceRow): string | undefined {
  if (after.state === before.state) return undefined;
  if (after.state === 'pending' && after.retryAt !== null) return 'retry_scheduled';
  return after.state === 'failed' || after.state === 'excluded' || after.state === 'done' ? after.state : undefined;
}

function countStates(r: ActiveRollout): Record<DeviceRolloutState, number> {
  const counts = emptyCounts();
  for (const d of r.devices.values()) counts[d.state]++;
  return counts;
}

export type { RolloutSpec };
