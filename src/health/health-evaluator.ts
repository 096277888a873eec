import type { Registry } from 'prom-client';
import type { Clock, TimerHandle } from '../clock.js';
import type { Database, StoreHealth } from '../db/database.js';
import type { Logger } from '../log.js';
import type { Heartbeat, PatchStatus } from '../protocol/types.js';
import type { DeviceDirectory, DeviceRecord } from '../registry/types.js';
import type { ConditionSink } from '../tickets/types.js';
import { ConditionEvaluation } from './condition-evaluation.js';
import { DeadlineHeap } from './deadline-heap.js';
import type { LiveState } from './device-conditions.js';
import { createHealthMetrics, type DropReason, type HealthMetrics } from './health-metrics.js';
import { HealthStateWriter, type HealthEventKind, type PendingHealthWrites } from './health-state-writer.js';
import { livenessVerdict, type HealthSettings, type LivenessInput } from './liveness.js';
import { livenessStep } from './liveness-step.js';
import { detectGap, startupGraceUntil, type HerdProgress } from './own-outage.js';
import { isSignatureOrHashFailure, type SecurityEvent } from './security.js';
import { lastSeenOf, livenessInputOf, newTracked, type Tracked, noteIntegrity, noteSubsystems } from './tracked-device.js';

export interface HealthEvaluatorDeps {
  clock: Clock;
  db: Database;
  log: Logger;
  config: HealthSettings;
  directory: DeviceDirectory;
  sink: ConditionSink;
  metrics?: Registry;
  /** The integrity digest registered for a software version (RULES.md "Eligibility" 3); must be O(1) (cached). */
  expectedIntegrity(version: string): string | undefined;
  /**
   * The one record of "is this device installing, or restarting after an install" (PatchService ->
   * src/patches/install-grace.ts, RULES.md "Updates and alerting work together"): when its grace ends (wall ms,
   * > `now`), or null when it has none at wall time `now`. Must be O(1). Default: never.
   */
  installGraceUntil?(deviceId: string, now: number): number | null;
  /** Where the outcome of every tick's write is reported (/readyz, `fleet_store_healthy`). */
  storeHealth?: StoreHealth;
}

/** One device as the API shows it; times are wall-clock ms. */
export interface HealthSnapshot {
  state: LiveState;
  lostSince: number | null;
  lostReason: 'silence' | 'will' | null;
  lastSeen: number | null;
  stateChangedAt: number | null;
}

export type { DropReason };

/**
 * Turns heartbeats, Last Wills and security signals into the automatic tickets of RULES.md, through the
 * ticket service's `ConditionSink`: it decides which conditions hold, raises them on change and clears them
 * when they stop holding. Ingest calls the `on*` inputs on its hot path (O(1) each, no SQL); `tick()` pops
 * due deadlines from a min-heap and re-evaluates only the devices, gateways and customers that changed.
 *
 * Deadlines run on the monotonic clock; inputs arrive with wall receive times and are converted once. A tick is
 * one transaction (its state writes, events and ticket changes); when it fails, it is rolled back and retried
 * next tick. A tick that fires late (the daemon stalled) yields to ingest and gives every device a fresh interval.
 */
export class HealthEvaluator {
  private readonly devices = new Map<string, Tracked>();
  private readonly heap = new DeadlineHeap();
  /** The conditions half: dirty sets, correlation, flapping, security, and what was reported. */
  private readonly evaluation: ConditionEvaluation;
  private readonly counts: Record<LiveState, number> = { unknown: 0, online: 0, offline: 0, restarting: 0, lost: 0 };
  private readonly store: HealthStateWriter;

  private herd: HerdProgress = { startedAt: 0, expected: 0, returned: 0, lastReturnAt: null };
  private lastOffset = 0;
  /** Until then (monotonic), offline/online changes are the aftermath of our own stall and do not count as flapping. */
  private quietUntil = -Infinity;
  private timer?: TimerHandle;
  private running = false;
  private failing = false;
  private unsubscribe: (() => void)[] = [];
  private readonly log: Logger;
  private readonly graceUntilWall: (deviceId: string, now: number) => number | null;
  private m?: HealthMetrics;

  constructor(private readonly deps: HealthEvaluatorDeps) {
    this.log = deps.log;
    this.graceUntilWall = deps.installGraceUntil ?? (() => null);
    this.store = new HealthStateWriter({ db: deps.db, log: deps.log });
    this.evaluation = new ConditionEvaluation({
      devices: this.devices,
      directory: deps.directory,
      sink: deps.sink,
      config: deps.config,
      log: deps.log,
      metrics: () => this.m,
      mono: () => this.mono(),
    });
  }

  // ---------------------------------------------------------------- time

  /** Monotonic ms now. */
  private mono(): number {
    return this.deps.clock.monotonicNow();
  }

  /** wall - monotonic now: converts a wall receive time to monotonic time and back. */
  private offset(): number {
    return this.deps.clock.now() - this.deps.clock.monotonicNow();
  }

  private toMono(wall: number): number {
    return wall - this.offset();
  }

  private toWall(mono: number): number {
    return mono + this.offset();
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * Rebuild the deadline index from the directory and `device_state`, giving every device a fresh interval from
   * now, and start the start-up grace (RULES.md "Our own outages are not the fleet's": our own restart opens
   * nothing; a device lost before the restart stays lost since its stored time and is not judged again; any
   * other device still silent once the herd had its chance is judged then). Then tick every `tickMs`.
   */
  start(): void {
    if (this.running) return;
    const { db, directory } = this.deps;
    const now = this.mono();
    const offset = this.offset();
    if (this.deps.metrics && !this.m) this.m = createHealthMetrics(this.deps.metrics, () => this.counts);
    this.store.start();

    for (const d of directory.all()) if (d.revokedAt === null) this.track(d, now);
    const rows = db
      .prepare('SELECT device_id, last_seen, interval_s, online, state_changed_at, software_version, integrity FROM device_state')
      .all() as StateRow[];
    let expected = 0;
    for (const row of rows) {
      const t = this.devices.get(row.device_id);
      if (!t) continue;
      t.ownLastSeen = row.last_seen === null ? null : row.last_seen - offset;
      t.ownIntervalS = row.interval_s;
      // A sensor heard only through its gateway has no last_seen of its own; its state row says it was seen.
      if (row.last_seen === null && row.state_changed_at !== null) t.reportedAt = row.state_changed_at - offset;
      t.stateChangedAt = row.state_changed_at === null ? null : row.state_changed_at - offset;
      t.wasLost = row.online === 0 && row.state_changed_at !== null;
      t.wasOnline = row.online === 1;
      if (t.wasOnline) expected++;
      if (row.online === 1) this.setCount(t, 'online');
      // Only a change of version or digest after start is a new integrity signal, not every device at start.
      if (row.software_version && row.integrity) noteIntegrity(t, row.software_version, row.integrity);
    }
    this.restoreLosses(offset);
    this.herd = { startedAt: now, expected, returned: 0, lastReturnAt: null };
    this.lastOffset = offset;
    for (const t of this.devices.values()) this.reschedule(t, now);

    this.unsubscribe.push(directory.onChange((d) => this.onDeviceChanged(d)));
    const off = this.deps.sink.onResolvedWhileHolding?.((kind, subject) => this.evaluation.onResolvedWhileHolding(kind, subject));
    if (off) this.unsubscribe.push(off);
    this.running = true;
    this.m?.gaps.inc({ cause: 'start' });
    this.log.info({ devices: this.devices.size, scheduled: this.heap.size, expectedBack: expected }, 'health evaluator started');
    this.scheduleTick();
  }

  /**
   * RULES.md "Our own outages are not the fleet's": a device judged lost before the restart is still lost, since
   * its original time. Its stored state (offline since `state_changed_at`) and the `lost` event at that moment say
   * so; it is not judged a second time (no second `lost` event), and its old loss stays outside the correlation
   * window of losses that happen after the restart, so the restart alone opens no customer or fleet ticket.
   */
  private restoreLosses(offset: number): void {
    for (const loss of this.store.storedLosses()) {
      const t = this.devices.get(loss.deviceId);
      if (!t || t.state === 'lost') continue;
      const at = loss.at - offset;
      t.lostReason = loss.reason;
      t.lostSince = at;
      t.stateChangedAt = at;
      this.setCount(t, 'lost');
      // Its open ticket (and any customer/fleet ticket) is re-checked against the restored loss at the first tick.
      this.evaluation.dirty.add(t.id);
    }
  }

  stop(): void {
    this.running = false;
    this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
    for (const off of this.unsubscribe) off();
    this.unsubscribe = [];
    this.store.flush();
  }

  private scheduleTick(): void {
    if (!this.running) return;
    const plannedAt = this.mono() + this.deps.config.tickMs;
    this.timer = this.deps.clock.setTimeout(() => {
      const late = this.checkGap(plannedAt);
      // Late: the heartbeats that arrived while we stood still are still in the socket buffers. Timers run before
      // I/O in Node's loop, so let the poll phase read them first (setImmediate runs after it), then judge.
      if (late) setImmediate(() => this.runTick());
      else this.runTick();
    }, this.deps.config.tickMs);
  }

  private runTick(): void {
    if (!this.running) return;
    const started = this.mono();
    try {
      this.tick();
    } catch (err) {
      this.log.error({ err }, 'health tick failed');
    }
    // A tick that itself stood still (waiting out a locked store, a slow disk) kept ingest from reading too.
    const took = this.mono() - started;
    if (took > this.deps.config.stallMarginMs) this.ownOutage(took, 'the tick itself was blocked');
    this.scheduleTick();
  }

  /**
   * Our own outages (issue 8, fault 2): a tick later than planned by more than `stallMarginMs` means the daemon
   * stood still; every device gets a fresh interval from now, as after a restart. A wall-clock step is logged
   * and counted; deadlines run on the monotonic clock, so it changes no verdict. Returns true when stalled.
   */
  private checkGap(plannedAt: number): boolean {
    const now = this.mono();
    const offset = this.offset();
    const gap = detectGap({ plannedAt, monotonicNow: now, previousOffset: this.lastOffset, offset }, this.deps.config);
    this.lastOffset = offset;
    if (gap.wallStepMs !== 0) {
      this.m?.gaps.inc({ cause: 'wall_step' });
      this.log.warn({ stepMs: Math.round(gap.wallStepMs) }, 'wall clock stepped; liveness deadlines run on the monotonic clock and do not move');
    }
    if (gap.stalledMs === 0) return false;
    this.ownOutage(gap.stalledMs, 'the tick ran late (daemon stalled)');
    return true;
  }

  private ownOutage(gapMs: number, why: string): void {
    const now = this.mono();
    this.freshInterval(now);
    // Clients whose keepalive ran out while we stood still reconnect now; their will/online pairs are ours.
    this.quietUntil = now + this.deps.config.startup.herdQuietS * 1000;
    this.m?.gaps.inc({ cause: 'stall' });
    this.log.warn({ gapMs: Math.round(gapMs), devices: this.devices.size }, `${why}: treating the gap as our own outage, every device gets a fresh interval`);
  }

  /** Every device is watched afresh from `now`: silence and pending Last Will graces restart. */
  private freshInterval(now: number): void {
    for (const t of this.devices.values()) {
      t.watchFrom = now;
      if (t.willAt !== null) t.willAt = Math.max(t.willAt, now);
    }
  }

  // ---------------------------------------------------------------- inputs (hot path, O(1) each; times are wall ms)

  onHeartbeat(deviceId: string, hb: Heartbeat, receivedAt: number): void {
    const t = this.devices.get(deviceId);
    if (!t) return this.drop('unknown_device', deviceId);
    const at = this.toMono(receivedAt);
    t.ownLastSeen = at;
    t.ownIntervalS = hb.intervalS;
    this.signOfLife(t, at);

    if (noteSubsystems(t, hb.subsystems)) this.evaluation.dirty.add(t.id);
    if (hb.integrity && noteIntegrity(t, hb.softwareVersion, hb.integrity)) {
      const expected = this.deps.expectedIntegrity(hb.softwareVersion);
      if (expected !== undefined && expected !== hb.integrity) this.onSecurityEvent({ kind: 'integrity_mismatch', deviceId }, receivedAt);
    }

    if (t.type === 'gateway' && hb.sensors) {
      for (const report of hb.sensors) {
        const s = this.devices.get(report.id);
        // A gateway vouches only for its own sensors; anything else is dropped and counted.
        if (!s || s.parent !== deviceId) {
          this.drop('sensor_not_child', deviceId, report.id);
          continue;
        }
        s.reportedAt = at;
        this.signOfLife(s, at);
        const fault = report.ok ? null : { source: 'gateway-report', detail: report.detail ?? '' };
        if (fault?.detail !== s.reportFault?.detail || (fault === null) !== (s.reportFault === null)) {
          s.reportFault = fault;
          this.evaluation.dirty.add(s.id);
        }
      }
    }
  }

  /** `{"online":true}` on connect; `{"online":false}` is the Last Will or a clean offline (PROTOCOL.md `state`). */
  onState(deviceId: string, online: boolean, receivedAt: number): void {
    const t = this.devices.get(deviceId);
    if (!t) return this.drop('unknown_device', deviceId);
    const at = this.toMono(receivedAt);
    if (online) {
      t.ownLastSeen = Math.max(t.ownLastSeen ?? at, at);
      this.signOfLife(t, at);
      return;
    }
    t.willAt = at;
    if (t.state === 'online' || t.state === 'unknown') {
      if (t.state === 'online') this.recordChange(t, at);
      this.setState(t, 'offline', at, 'offline');
    }
    this.reschedule(t, at);
    this.evaluation.dirty.add(t.id);
  }

  onPatchStatus(deviceId: string, status: PatchStatus, receivedAt: number = this.deps.clock.now()): void {
    const t = this.devices.get(deviceId);
    if (!t) return this.drop('unknown_device', deviceId);
    // The install grace lives in PatchService (installGraceUntil); a status may shorten it (installed after
    // installing: the restart grace, not the install bound), so a device held as restarting is judged again.
    if (t.state === 'restarting') this.schedule(t, this.toMono(receivedAt));
    if (status.state === 'rejected' && isSignatureOrHashFailure(status.detail)) {
      this.onSecurityEvent({ kind: 'patch_rejected', deviceId, detail: status.detail }, receivedAt);
    }
  }

  onSecurityEvent(event: SecurityEvent, at: number = this.deps.clock.now()): void {
    if (!this.evaluation.security.add(event, this.toMono(at))) this.drop('bad_security_event', event?.deviceId ?? '');
  }

  // ---------------------------------------------------------------- queries

  snapshot(deviceId: string): HealthSnapshot | undefined {
    const t = this.devices.get(deviceId);
    if (!t) return undefined;
    const wall = (mono: number | null) => (mono === null ? null : Math.round(this.toWall(mono)));
    return {
      state: t.state,
      lostSince: wall(t.lostSince),
      lostReason: t.lostReason,
      lastSeen: wall(lastSeenOf(t)),
      stateChangedAt: wall(t.stateChangedAt),
    };
  }

  /** The device's liveness state, or undefined when not tracked: O(1), nothing allocated (scrapes ask per device). */
  stateOf(deviceId: string): LiveState | undefined {
    return this.devices.get(deviceId)?.state;
  }

  countsByState(): Record<LiveState, number> {
    return { ...this.counts };
  }

  /** When the start-up grace ends (wall ms), or null when it is over. */
  startupGraceEndsAt(): number | null {
    const until = startupGraceUntil(this.herd, this.mono(), this.deps.config);
    return until === null ? null : Math.round(this.toWall(until));
  }

  // ---------------------------------------------------------------- tick

  /**
   * Judge every device whose deadline passed, then re-evaluate what changed; all of it in one transaction.
   * `now` is wall ms (tests and the bench pass their clock's reading). Public for tests and the bench.
   */
  tick(now: number = this.deps.clock.now()): void {
    try {
      this.tryTick(now);
    } catch (err) {
      // Our read snapshot went stale under the ingest worker's commit (WAL): a race, not a fault. Again at once.
      if ((err as { code?: string })?.code !== 'SQLITE_BUSY_SNAPSHOT') throw err;
      this.tryTick(now);
    }
  }

  private tryTick(now: number): void {
    const started = performance.now();
    const mono = this.toMono(now);
    const writes = this.store.take();
    this.evaluation.begin();
    const sink = this.deps.sink;
    const body = () => {
      this.judgeDue(mono);
      this.evaluation.evaluate(mono);
      // Changes queued by this tick's judgements join what was queued by the inputs since the last tick.
      const fresh = this.store.take();
      mergeWrites(writes, fresh);
      this.store.write(writes);
    };
    try {
      if (sink.atomically) sink.atomically(body);
      else this.deps.db.transaction(body)();
    } catch (err) {
      this.rollback(writes, err, (err as { code?: string })?.code !== 'SQLITE_BUSY_SNAPSHOT');
      throw err;
    } finally {
      this.m?.tick.observe((performance.now() - started) / 1000);
    }
    this.evaluation.commit();
    if (this.failing) {
      this.failing = false;
      this.log.info('health tick committed again; retried changes are stored');
    }
    this.deps.storeHealth?.ok('health');
  }

  /** Nothing of a failed tick is lost: its writes go back in the queue and everything it evaluated is re-marked. */
  private rollback(writes: PendingHealthWrites, err: unknown, report: boolean): void {
    mergeWrites(writes, this.store.take());
    this.store.restore(writes);
    this.evaluation.rollback();
    if (!report) return;
    this.failing = true;
    this.m?.tickFailures.inc();
    const fault = this.deps.storeHealth?.failed('health', err);
    this.log.error({ err, reason: fault?.reason, pendingEvents: writes.events.length }, 'health tick not committed; retrying next tick');
  }

  private judgeDue(now: number): void {
    for (let due = this.heap.peekTime(); due !== undefined && due <= now; due = this.heap.peekTime()) {
      const entry = this.heap.pop()!;
      const t = this.devices.get(entry.id);
      if (!t || entry.time !== t.scheduledAt) continue; // stale entry: the device was rescheduled or removed
      t.scheduledAt = Infinity;
      this.judge(t, now);
    }
  }

  private judge(t: Tracked, now: number): void {
    const step = livenessStep(
      {
        liveness: this.livenessInput(t),
        state: t.state,
        installGraceUntil: this.installGraceUntil(t, now),
        heardSinceStart: t.heardSinceStart,
        startupGraceUntil: startupGraceUntil(this.herd, now, this.deps.config),
      },
      now,
      this.deps.config,
    );
    switch (step.action) {
      case 'none':
      case 'stay':
        return;
      case 'wait':
      case 'hold':
        this.schedule(t, step.at);
        return;
      case 'restarting':
        // RULES.md "Updates and alerting work together": an installing device's silence opens no loss ticket.
        if (t.state !== 'restarting') {
          this.setState(t, 'restarting', now);
          this.evaluation.dirty.add(t.id);
        }
        this.schedule(t, step.at);
        return;
      case 'lost':
        if (t.state === 'online') this.recordChange(t, now);
        t.lostReason = step.reason;
        t.lostSince = now;
        this.setState(t, 'lost', now, 'lost', { reason: step.reason });
        this.evaluation.dirty.add(t.id);
    }
  }

  // ---------------------------------------------------------------- state

  private signOfLife(t: Tracked, at: number): void {
    t.willAt = null;
    if (!t.heardSinceStart && at >= this.herd.startedAt) {
      t.heardSinceStart = true;
      if (t.wasOnline) this.herd.returned++;
      this.herd.lastReturnAt = at;
    }
    if (!t.evaluated) {
      t.evaluated = true;
      this.evaluation.dirty.add(t.id);
    }
    if (t.state !== 'online') {
      const from = t.state;
      if (from === 'offline' || from === 'lost') this.recordChange(t, at);
      const event: HealthEventKind = from === 'lost' || (from === 'unknown' && t.wasLost) ? 'back' : 'online';
      t.wasLost = false;
      t.lostSince = null;
      t.lostReason = null;
      this.setState(t, 'online', at, event);
      this.evaluation.dirty.add(t.id);
    }
    this.reschedule(t, at);
  }

  private setState(t: Tracked, next: LiveState, at: number, event?: HealthEventKind, data?: Record<string, unknown>): void {
    if (t.state === next) return;
    this.setCount(t, next);
    t.stateChangedAt = at;
    if (next === 'restarting') return; // expected silence: nothing to persist, the device is not offline
    if (event) this.store.change(t.id, next === 'online', Math.round(this.toWall(at)), event, data);
  }

  private setCount(t: Tracked, next: LiveState): void {
    this.counts[t.state]--;
    this.counts[next]++;
    t.state = next;
  }

  /**
   * An offline/online change for flapping. Changes during an install and its restart grace do not count, nor do
   * those of the reconnect herd after our own start (RULES.md "Our own outages are not the fleet's").
   */
  private recordChange(t: Tracked, at: number): void {
    if (this.installGraceUntil(t, at) !== null) return;
    if (startupGraceUntil(this.herd, at, this.deps.config) !== null || at < this.quietUntil) return;
    const windowMs = this.deps.config.flapping.windowS * 1000;
    let drop = 0;
    while (drop < t.changes.length && at - t.changes[drop]! >= windowMs) drop++;
    if (drop > 0) t.changes.splice(0, drop);
    t.changes.push(at);
    this.evaluation.flapDirty.add(t.id);
  }

  /** The device's install grace (the one record, in PatchService) as monotonic ms, or null. */
  private installGraceUntil(t: Tracked, now: number): number | null {
    const until = this.graceUntilWall(t.id, this.toWall(now));
    return until === null ? null : this.toMono(until);
  }

  private livenessInput(t: Tracked): LivenessInput {
    return livenessInputOf(t, t.parent ? (this.devices.get(t.parent)?.ownIntervalS ?? null) : null);
  }

  /** Put the device's next judgement in the heap if it is earlier than the one already there. */
  private reschedule(t: Tracked, now: number): void {
    const verdict = livenessVerdict(this.livenessInput(t), now, this.deps.config);
    if (verdict.state === 'alive' || verdict.state === 'offline') this.schedule(t, verdict.deadline);
    else if (verdict.state === 'lost' && t.state !== 'lost') this.schedule(t, now);
  }

  private schedule(t: Tracked, at: number): void {
    if (at < t.scheduledAt) {
      t.scheduledAt = at;
      this.heap.push(at, t.id);
    }
  }

  private track(d: DeviceRecord, now: number): Tracked {
    const t = newTracked(d, now);
    this.devices.set(d.id, t);
    this.counts.unknown++;
    return t;
  }

  /** Registry changes: a new device is watched from now; a revoked one is forgotten and its conditions cleared. */
  private onDeviceChanged(d: DeviceRecord): void {
    const now = this.mono();
    const t = this.devices.get(d.id);
    if (d.revokedAt !== null) {
      if (!t) return;
      this.counts[t.state]--;
      this.devices.delete(d.id);
      this.evaluation.forgetDevice(d.id, d.parent);
      return;
    }
    if (!t) {
      const added = this.track(d, now);
      // Registered after the start: nothing of it was ours to wait for.
      added.heardSinceStart = true;
      if (d.parent) this.evaluation.dirty.add(d.parent);
      return;
    }
    if (t.customer !== d.customer && this.evaluation.lost.has(d.id)) {
      this.evaluation.forgetGatewayLoss(d.id);
      t.customer = d.customer;
      this.evaluation.trackGatewayLoss(t);
    }
    if (t.parent !== d.parent && t.parent) this.evaluation.dirty.add(t.parent);
    t.customer = d.customer;
    t.parent = d.parent;
    t.type = d.type;
    this.evaluation.dirty.add(d.id);
  }

  private drop(reason: DropReason, deviceId: string, detail?: string): void {
    this.m?.dropped.inc({ reason });
    this.log.debug({ deviceId, reason, detail }, 'health input dropped');
  }
}

interface StateRow {
  device_id: string;
  last_seen: number | null;
  interval_s: number | null;
  online: number;
  state_changed_at: number | null;
  software_version: string | null;
  integrity: string | null;
}

/** Append `later` to `into` (later states win; events keep their order). */
function mergeWrites(into: PendingHealthWrites, later: PendingHealthWrites): void {
  for (const [id, s] of later.states) into.states.set(id, s);
  into.events.push(...later.events);
}
