import type { Registry } from 'prom-client';
import type { Clock, TimerHandle } from '../clock.js';
import type { Database } from '../db/database.js';
import type { Logger } from '../log.js';
import type { Heartbeat, PatchStatus } from '../protocol/types.js';
import type { DeviceDirectory, DeviceRecord } from '../registry/types.js';
import type { ConditionReport, ConditionSink, TicketKind } from '../tickets/types.js';
import { customerCondition, fleetCondition, type LostGateway } from './correlation.js';
import { DeadlineHeap } from './deadline-heap.js';
import { gatewayCondition, gatewayIsFine, sensorCondition, type DeviceView, type Fault, type LiveState } from './device-conditions.js';
import { flappingCondition, flappingVerdict } from './flapping.js';
import { livenessVerdict, restartGraceUntil, type HealthSettings, type LivenessInput } from './liveness.js';
import { isSignatureOrHashFailure, securityConditions, type SecurityEvent, type SecuritySignalKind } from './security.js';
import { SlidingWindowCounter } from './sliding-window.js';
import { HealthStateWriter, type HealthEventKind } from './health-state-writer.js';
import { createHealthMetrics, type DropReason, type HealthMetrics } from './health-metrics.js';

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
  /** Rollouts: is this device installing, or within its expected-restart grace? Must be O(1). Default: never. */
  isInstallingOrRestarting?(deviceId: string, now: number): boolean;
}

export interface HealthSnapshot {
  state: LiveState;
  lostSince: number | null;
  lostReason: 'silence' | 'will' | null;
  lastSeen: number | null;
  stateChangedAt: number | null;
}

export type { DropReason };

/** Everything the evaluator tracks of one device, in memory. */
interface Tracked {
  id: string;
  type: DeviceRecord['type'];
  parent: string | null;
  customer: string;
  /** Receive time of its own latest heartbeat or `{"online":true}`. */
  ownLastSeen: number | null;
  ownIntervalS: number | null;
  /** Receive time of the latest gateway heartbeat listing this sensor. */
  reportedAt: number | null;
  willAt: number | null;
  watchFrom: number;
  state: LiveState;
  lostReason: 'silence' | 'will' | null;
  lostSince: number | null;
  stateChangedAt: number | null;
  /** It was lost when the daemon last stopped: its first sign of life is a `back`. */
  wasLost: boolean;
  /** Time of its live entry in the deadline heap; Infinity when none. */
  scheduledAt: number;
  subsystemFaults: Fault[];
  subsystemKey: string;
  reportFault: Fault | null;
  installAt: number | null;
  changes: number[];
  integrityKey: string | null;
  /** Evaluated at least once since start (its first sign of life re-checks tickets left open before a restart). */
  evaluated: boolean;
  /** Gateways: may its sensors open tickets of their own (RULES.md "Grouping and inhibition")? */
  fineForSensors: boolean;
}

const GATEWAY_KINDS: readonly TicketKind[] = ['gateway_loss', 'gateway_partial'];
const CUSTOMER_KINDS: readonly TicketKind[] = ['cloud_loss_complete', 'cloud_loss_partial'];
const SEVERITY_RANK = { low: 0, medium: 1, high: 2, urgent: 3 } as const;
const INSTALL_STATES = new Set(['verifying', 'installing', 'installed', 'failed', 'rolled_back']);

interface ActiveCondition {
  kind: TicketKind;
  signature: string;
}

/**
 * Turns heartbeats, Last Wills and security signals into the automatic tickets of RULES.md, through the
 * ticket service's `ConditionSink`: it decides which conditions hold, raises them on change and clears them
 * when they stop holding. Ingest calls the `on*` inputs on its hot path (O(1) each, no SQL); `tick()` pops
 * due deadlines from a min-heap and re-evaluates only the devices, gateways and customers that changed.
 */
export class HealthEvaluator {
  private readonly devices = new Map<string, Tracked>();
  private readonly heap = new DeadlineHeap();
  private readonly dirty = new Set<string>();
  private readonly flapDirty = new Set<string>();
  /** Devices with a flapping condition raised, and when their verdict must be re-checked. */
  private readonly flapActive = new Map<string, number>();
  private readonly lostGateways = new Map<string, LostGateway>();
  private readonly lostByCustomer = new Map<string, Map<string, LostGateway>>();
  private readonly dirtyCustomers = new Set<string>();
  /** Gateways whose condition cleared but whose ticket is still open (until resolveAfter): sensors wait for it. */
  private readonly awaitingResolve = new Set<string>();
  private fleetDirty = false;
  private readonly active = new Map<string, ActiveCondition>();
  /** Slots whose ticket state was checked against the sink since start (open tickets survive our restarts). */
  private readonly reconciled = new Set<string>();
  private readonly counts: Record<LiveState, number> = { unknown: 0, online: 0, offline: 0, restarting: 0, lost: 0 };

  private readonly security = {
    auth: new SlidingWindowCounter(),
    acl: new SlidingWindowCounter(),
    patch: new SlidingWindowCounter(),
    integrity: new SlidingWindowCounter(),
  };
  private securityDirty = false;
  private readonly securitySubjects = new Set<string>();

  private readonly store: HealthStateWriter;

  private timer?: TimerHandle;
  private running = false;
  private unsubscribe?: () => void;
  private readonly log: Logger;
  private readonly isInstalling: (deviceId: string, now: number) => boolean;
  private m?: HealthMetrics;

  constructor(private readonly deps: HealthEvaluatorDeps) {
    this.log = deps.log;
    this.isInstalling = deps.isInstallingOrRestarting ?? (() => false);
    this.store = new HealthStateWriter({ db: deps.db, log: deps.log });
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * Rebuild the deadline index from the directory and `device_state`, giving every device a fresh interval from
   * now (issue 3, item 1: our own restart must not storm tickets; a device still silent is judged lost again
   * after its interval and the ticket service dedupes into the open ticket). Then tick every `tickMs`.
   */
  start(): void {
    if (this.running) return;
    const { db, clock, directory } = this.deps;
    const now = clock.now();
    if (this.deps.metrics && !this.m) this.m = createHealthMetrics(this.deps.metrics, () => this.counts);
    this.store.start();

    for (const d of directory.all()) if (d.revokedAt === null) this.track(d, now);
    const rows = db
      .prepare('SELECT device_id, last_seen, interval_s, online, state_changed_at, software_version, integrity FROM device_state')
      .all() as StateRow[];
    for (const row of rows) {
      const t = this.devices.get(row.device_id);
      if (!t) continue;
      t.ownLastSeen = row.last_seen;
      t.ownIntervalS = row.interval_s;
      // A sensor heard only through its gateway has no last_seen of its own; its state row says it was seen.
      if (row.last_seen === null && row.state_changed_at !== null) t.reportedAt = row.state_changed_at;
      t.stateChangedAt = row.state_changed_at;
      t.wasLost = row.online === 0 && row.state_changed_at !== null;
      if (row.online === 1) this.setCount(t, 'online');
      // Only a change of version or digest after start is a new integrity signal, not every device at start.
      if (row.software_version && row.integrity) t.integrityKey = `${row.software_version}|${row.integrity}`;
    }
    for (const t of this.devices.values()) this.reschedule(t, now);

    this.unsubscribe = directory.onChange((d) => this.onDeviceChanged(d));
    this.running = true;
    this.log.info({ devices: this.devices.size, scheduled: this.heap.size }, 'health evaluator started');
    this.scheduleTick();
  }

  stop(): void {
    this.running = false;
    this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.store.flush();
  }

  private scheduleTick(): void {
    if (!this.running) return;
    this.timer = this.deps.clock.setTimeout(() => {
      try {
        this.tick();
      } catch (err) {
        this.log.error({ err }, 'health tick failed');
      }
      this.scheduleTick();
    }, this.deps.config.tickMs);
  }

  // ---------------------------------------------------------------- inputs (hot path, O(1) each)

  onHeartbeat(deviceId: string, hb: Heartbeat, receivedAt: number): void {
    const t = this.devices.get(deviceId);
    if (!t) return this.drop('unknown_device', deviceId);
    t.ownLastSeen = receivedAt;
    t.ownIntervalS = hb.intervalS;
    this.signOfLife(t, receivedAt);

    const faults = (hb.subsystems ?? []).filter((s) => !s.ok).map((s) => ({ source: `subsystem:${s.name}`, detail: s.detail ?? '' }));
    const key = faults.map((f) => `${f.source}=${f.detail}`).join('\n');
    if (key !== t.subsystemKey) {
      t.subsystemKey = key;
      t.subsystemFaults = faults;
      this.dirty.add(t.id);
    }
    // The heartbeat repeats the latest patch state; only an in-progress install extends the restart grace,
    // a repeated `installed` must not suppress loss tickets forever.
    if (hb.patch && (hb.patch.state === 'verifying' || hb.patch.state === 'installing')) t.installAt = receivedAt;

    if (hb.integrity) {
      const integrityKey = `${hb.softwareVersion}|${hb.integrity}`;
      if (integrityKey !== t.integrityKey) {
        t.integrityKey = integrityKey;
        const expected = this.deps.expectedIntegrity(hb.softwareVersion);
        if (expected !== undefined && expected !== hb.integrity) this.onSecurityEvent({ kind: 'integrity_mismatch', deviceId }, receivedAt);
      }
    }

    if (t.type === 'gateway' && hb.sensors) {
      for (const report of hb.sensors) {
        const s = this.devices.get(report.id);
        // A gateway vouches only for its own sensors; anything else is dropped and counted.
        if (!s || s.parent !== deviceId) {
          this.drop('sensor_not_child', deviceId, report.id);
          continue;
        }
        s.reportedAt = receivedAt;
        this.signOfLife(s, receivedAt);
        const fault = report.ok ? null : { source: 'gateway-report', detail: report.detail ?? '' };
        if (fault?.detail !== s.reportFault?.detail || (fault === null) !== (s.reportFault === null)) {
          s.reportFault = fault;
          this.dirty.add(s.id);
        }
      }
    }
  }

  /** `{"online":true}` on connect; `{"online":false}` is the Last Will or a clean offline (PROTOCOL.md `state`). */
  onState(deviceId: string, online: boolean, receivedAt: number): void {
    const t = this.devices.get(deviceId);
    if (!t) return this.drop('unknown_device', deviceId);
    if (online) {
      t.ownLastSeen = Math.max(t.ownLastSeen ?? receivedAt, receivedAt);
      this.signOfLife(t, receivedAt);
      return;
    }
    t.willAt = receivedAt;
    if (t.state === 'online' || t.state === 'unknown') {
      if (t.state === 'online') this.recordChange(t, receivedAt);
      this.setState(t, 'offline', receivedAt, 'offline');
    }
    this.reschedule(t, receivedAt);
    this.dirty.add(t.id);
  }

  onPatchStatus(deviceId: string, status: PatchStatus, receivedAt: number = this.deps.clock.now()): void {
    const t = this.devices.get(deviceId);
    if (!t) return this.drop('unknown_device', deviceId);
    if (INSTALL_STATES.has(status.state)) t.installAt = receivedAt;
    if (status.state === 'rejected' && isSignatureOrHashFailure(status.detail)) {
      this.onSecurityEvent({ kind: 'patch_rejected', deviceId, detail: status.detail }, receivedAt);
    }
  }

  onSecurityEvent(event: SecurityEvent, at: number = this.deps.clock.now()): void {
    const kind: SecuritySignalKind | undefined = event?.kind;
    switch (kind) {
      case 'auth_failure':
        this.security.auth.add(at, event.deviceId ?? '');
        break;
      case 'acl_violation':
        this.security.acl.add(at, event.deviceId ?? '');
        break;
      case 'patch_rejected':
        // The caller asserts a rejected patch; a detail, when given, must name the signature or hash.
        if (!event.deviceId || (event.detail !== undefined && !isSignatureOrHashFailure(event.detail))) {
          return this.drop('bad_security_event', event.deviceId ?? '');
        }
        this.security.patch.add(at, event.deviceId);
        break;
      case 'integrity_mismatch':
        if (!event.deviceId) return this.drop('bad_security_event', '');
        this.security.integrity.add(at, event.deviceId);
        break;
      default:
        return this.drop('bad_security_event', event?.deviceId ?? '');
    }
    this.securityDirty = true;
  }

  // ---------------------------------------------------------------- queries

  snapshot(deviceId: string): HealthSnapshot | undefined {
    const t = this.devices.get(deviceId);
    if (!t) return undefined;
    return {
      state: t.state,
      lostSince: t.lostSince,
      lostReason: t.lostReason,
      lastSeen: this.lastSeenOf(t),
      stateChangedAt: t.stateChangedAt,
    };
  }

  countsByState(): Record<LiveState, number> {
    return { ...this.counts };
  }

  // ---------------------------------------------------------------- tick

  /** Judge every device whose deadline passed, then re-evaluate what changed. Public for tests and the bench. */
  tick(now: number = this.deps.clock.now()): void {
    const started = performance.now();
    for (let due = this.heap.peekTime(); due !== undefined && due <= now; due = this.heap.peekTime()) {
      const entry = this.heap.pop()!;
      const t = this.devices.get(entry.id);
      if (!t || entry.time !== t.scheduledAt) continue; // stale entry: the device was rescheduled or removed
      t.scheduledAt = Infinity;
      this.judge(t, now);
    }
    this.evaluateSecurity(now);
    this.evaluateFlapping(now);
    for (const id of this.awaitingResolve) {
      if (!this.deps.sink.hasOpen(GATEWAY_KINDS, id)) {
        this.awaitingResolve.delete(id);
        this.dirty.add(id);
      }
    }
    this.evaluateDirty();
    this.store.flush();
    this.m?.tick.observe((performance.now() - started) / 1000);
  }

  private judge(t: Tracked, now: number): void {
    const verdict = livenessVerdict(this.livenessInput(t), now, this.deps.config);
    if (verdict.state === 'unknown') return;
    if (verdict.state !== 'lost') {
      this.schedule(t, verdict.deadline);
      return;
    }
    if (t.state === 'lost') return;
    const graceUntil = restartGraceUntil(t.installAt === null ? null : { at: t.installAt }, now, this.deps.config);
    if (graceUntil !== null || this.isInstalling(t.id, now)) {
      // RULES.md "Updates and alerting work together": an installing device's silence opens no loss ticket.
      if (t.state !== 'restarting') {
        this.setState(t, 'restarting', now);
        this.dirty.add(t.id);
      }
      this.schedule(t, graceUntil ?? now + this.deps.config.tickMs);
      return;
    }
    if (t.state === 'online') this.recordChange(t, now);
    t.lostReason = verdict.reason;
    t.lostSince = now;
    this.setState(t, 'lost', now, 'lost', { reason: verdict.reason });
    this.dirty.add(t.id);
  }

  private evaluateDirty(): void {
    if (this.dirty.size === 0 && this.dirtyCustomers.size === 0 && !this.fleetDirty) return;
    const gateways = new Set<string>();
    const sensors = new Set<string>();
    for (const id of this.dirty) {
      const t = this.devices.get(id);
      if (!t) continue;
      if (t.type === 'gateway') gateways.add(id);
      else {
        sensors.add(id);
        if (t.parent) gateways.add(t.parent);
      }
    }
    this.dirty.clear();

    for (const id of gateways) {
      const g = this.devices.get(id);
      if (!g || g.type !== 'gateway') continue;
      this.trackGatewayLoss(g);
      const children = this.childrenOf(id);
      const report = gatewayCondition(this.view(g), children.map((c) => this.view(c)), this.deps.config);
      this.reconcile(`gw:${id}`, id, GATEWAY_KINDS, report, true, 'gateway healthy again');
      // After a clear, the ticket stays open until the sink resolves it; its sensors stay listed there until then.
      const ticketOpen = report === null && this.deps.sink.hasOpen(GATEWAY_KINDS, id);
      if (ticketOpen) this.awaitingResolve.add(id);
      else this.awaitingResolve.delete(id);
      const fine = gatewayIsFine({ state: g.state, hasCondition: report !== null, ticketOpen });
      if (fine !== g.fineForSensors) {
        g.fineForSensors = fine;
        for (const c of children) sensors.add(c.id);
      }
      // First look at this gateway since start: customer/fleet tickets left open by a previous run get re-checked.
      if (!this.reconciled.has(`cust:${g.customer}`)) this.dirtyCustomers.add(g.customer);
      if (!this.reconciled.has('fleet')) this.fleetDirty = true;
    }

    for (const id of sensors) {
      const s = this.devices.get(id);
      if (!s || s.type !== 'sensor') continue;
      const parent = s.parent ? this.devices.get(s.parent) : undefined;
      const fine = parent ? parent.fineForSensors : true;
      const report = sensorCondition(this.view(s), fine);
      this.reconcile(`sensor:${id}`, id, ['sensor_issue'], report, false, fine ? 'sensor healthy again' : `covered by gateway ${s.parent}`);
    }

    for (const customer of this.dirtyCustomers) {
      const lost = [...(this.lostByCustomer.get(customer)?.values() ?? [])];
      const total = this.deps.directory.gatewaysOf(customer).filter((g) => g.revokedAt === null).length;
      const report = customerCondition(customer, lost, total, this.deps.config);
      this.reconcile(`cust:${customer}`, `customer:${customer}`, CUSTOMER_KINDS, report, false, 'customer gateways back');
    }
    this.dirtyCustomers.clear();

    if (this.fleetDirty) {
      this.fleetDirty = false;
      const total = this.deps.directory.gatewayCount();
      const threshold = Math.max(this.deps.config.minCorrelated, Math.ceil(this.deps.config.fleetGatewayShare * total - 1e-9));
      // The usual tick has a few lost gateways: skip building the list unless an outage is possible or open.
      if (this.lostGateways.size >= threshold || this.active.has('fleet') || !this.reconciled.has('fleet')) {
        const report = fleetCondition([...this.lostGateways.values()], total, this.deps.config);
        this.reconcile('fleet', 'fleet', ['major_outage'], report, false, 'fleet gateways back');
      }
    }
  }

  /** Keep the lost-gateway sets of the fleet and of each customer in step with a gateway's state. */
  private trackGatewayLoss(g: Tracked): void {
    const isLost = g.state === 'lost';
    const wasLost = this.lostGateways.has(g.id);
    if (isLost === wasLost) return;
    if (isLost) {
      const entry = { id: g.id, customer: g.customer, lostSince: g.lostSince ?? this.deps.clock.now() };
      this.lostGateways.set(g.id, entry);
      let byCustomer = this.lostByCustomer.get(g.customer);
      if (!byCustomer) this.lostByCustomer.set(g.customer, (byCustomer = new Map()));
      byCustomer.set(g.id, entry);
    } else {
      this.forgetGatewayLoss(g.id);
    }
    this.dirtyCustomers.add(g.customer);
    this.fleetDirty = true;
  }

  private forgetGatewayLoss(id: string): void {
    const entry = this.lostGateways.get(id);
    if (!entry) return;
    this.lostGateways.delete(id);
    const byCustomer = this.lostByCustomer.get(entry.customer);
    byCustomer?.delete(id);
    if (byCustomer?.size === 0) this.lostByCustomer.delete(entry.customer);
    this.dirtyCustomers.add(entry.customer);
    this.fleetDirty = true;
  }

  private evaluateFlapping(now: number): void {
    for (const [id, recheckAt] of this.flapActive) if (recheckAt <= now) this.flapDirty.add(id);
    if (this.flapDirty.size === 0) return;
    // Gateways first: a sensor flapping because its gateway flaps is inhibited by the gateway's verdict of this tick.
    const ordered = [...this.flapDirty].sort((a, b) => rankType(this.devices.get(a)) - rankType(this.devices.get(b)));
    for (const id of ordered) {
      const t = this.devices.get(id);
      if (!t) {
        this.flapActive.delete(id);
        continue;
      }
      const verdict = flappingVerdict(t.changes, now, this.deps.config);
      // A sensor behind a flapping or ticketed gateway flaps because of it: listed there, nothing of its own.
      const parent = t.parent ? this.devices.get(t.parent) : undefined;
      const inhibited = parent !== undefined && (this.flapActive.has(parent.id) || this.deps.sink.hasOpen(GATEWAY_KINDS, parent.id));
      const report = inhibited ? null : flappingCondition(id, verdict, this.deps.config);
      this.reconcile(`flap:${id}`, id, ['flapping'], report, false, 'device stable again');
      if (report) this.flapActive.set(id, verdict.recheckAt ?? now);
      else this.flapActive.delete(id);
    }
    this.flapDirty.clear();
  }

  private evaluateSecurity(now: number): void {
    const cutoff = now - this.deps.config.security.windowS * 1000;
    const s = this.security;
    const before = s.auth.total + s.acl.total + s.patch.total + s.integrity.total;
    s.auth.prune(cutoff);
    s.acl.prune(cutoff);
    s.patch.prune(cutoff);
    s.integrity.prune(cutoff);
    const after = s.auth.total + s.acl.total + s.patch.total + s.integrity.total;
    if (!this.securityDirty && before === after) return;
    this.securityDirty = false;
    const reports = securityConditions(
      {
        authFailures: s.auth.total,
        aclViolations: s.acl.counts,
        patchFailures: s.patch.counts,
        integrityMismatchDevices: [...s.integrity.counts.keys()],
      },
      this.deps.config,
    );
    const holding = new Set<string>();
    for (const r of reports) {
      holding.add(r.subject);
      this.securitySubjects.add(r.subject);
      this.reconcile(`sec:${r.subject}`, r.subject, ['security_incident'], r, false, '');
    }
    for (const subject of [...this.securitySubjects]) {
      if (holding.has(subject)) continue;
      this.reconcile(`sec:${subject}`, subject, ['security_incident'], null, false, 'no more security signals within the window');
      this.securitySubjects.delete(subject);
    }
  }

  // ---------------------------------------------------------------- reporting

  /**
   * Raise a condition when it starts or changes, clear it when it stops. Without a record of this slot (our own
   * restart), a clear asks the sink first: a ticket opened before the restart still gets its clear.
   * `merged`: the slot's kinds are one ticket in the sink (gateway_partial/gateway_loss, RULES.md "One ticket
   * per problem"), so a rise in severity is a plain raise (the sink upgrades in place).
   */
  private reconcile(slot: string, subject: string, kinds: readonly TicketKind[], report: ConditionReport | null, merged: boolean, reason: string): void {
    const prev = this.active.get(slot);
    const sink = this.deps.sink;
    if (report) {
      const signature = signatureOf(report);
      if (prev && prev.kind === report.kind && prev.signature === signature) return;
      const upgrade = prev && prev.kind !== report.kind && SEVERITY_RANK[report.severity] > SEVERITY_RANK[severityOf(prev.kind)];
      if (prev && prev.kind !== report.kind && merged && !upgrade) {
        sink.clear(prev.kind, subject, `changed to ${report.kind}`);
        this.m?.conditions.inc({ kind: prev.kind, action: 'clear' });
      }
      sink.raise(report);
      this.m?.conditions.inc({ kind: report.kind, action: 'raise' });
      if (prev && prev.kind !== report.kind && !merged) {
        sink.clear(prev.kind, subject, `superseded by ${report.kind}`);
        this.m?.conditions.inc({ kind: prev.kind, action: 'clear' });
      }
      this.active.set(slot, { kind: report.kind, signature });
      this.reconciled.add(slot);
      this.log.info({ kind: report.kind, subject, severity: report.severity, covers: report.covers?.length ?? 0 }, 'condition raised');
      return;
    }
    if (prev) {
      sink.clear(prev.kind, subject, reason);
      this.m?.conditions.inc({ kind: prev.kind, action: 'clear' });
      this.active.delete(slot);
      this.log.info({ kind: prev.kind, subject, reason }, 'condition cleared');
      return;
    }
    if (!this.reconciled.has(slot)) {
      this.reconciled.add(slot);
      for (const kind of kinds) {
        if (sink.hasOpen([kind], subject)) {
          sink.clear(kind, subject, reason);
          this.m?.conditions.inc({ kind, action: 'clear' });
        }
      }
    }
  }

  // ---------------------------------------------------------------- state

  private signOfLife(t: Tracked, at: number): void {
    t.willAt = null;
    if (!t.evaluated) {
      t.evaluated = true;
      this.dirty.add(t.id);
    }
    if (t.state !== 'online') {
      const from = t.state;
      if (from === 'offline' || from === 'lost') this.recordChange(t, at);
      const event: HealthEventKind = from === 'lost' || (from === 'unknown' && t.wasLost) ? 'back' : 'online';
      t.wasLost = false;
      t.lostSince = null;
      t.lostReason = null;
      this.setState(t, 'online', at, event);
      this.dirty.add(t.id);
    }
    this.reschedule(t, at);
  }

  private setState(t: Tracked, next: LiveState, at: number, event?: HealthEventKind, data?: Record<string, unknown>): void {
    if (t.state === next) return;
    this.setCount(t, next);
    t.stateChangedAt = at;
    if (next === 'restarting') return; // expected silence: nothing to persist, the device is not offline
    if (event) this.store.change(t.id, next === 'online', at, event, data);
  }

  private setCount(t: Tracked, next: LiveState): void {
    this.counts[t.state]--;
    this.counts[next]++;
    t.state = next;
  }

  /** An offline/online change for flapping; changes during an install and its restart grace do not count. */
  private recordChange(t: Tracked, at: number): void {
    if (restartGraceUntil(t.installAt === null ? null : { at: t.installAt }, at, this.deps.config) !== null) return;
    if (this.isInstalling(t.id, at)) return;
    const windowMs = this.deps.config.flapping.windowS * 1000;
    let drop = 0;
    while (drop < t.changes.length && at - t.changes[drop]! >= windowMs) drop++;
    if (drop > 0) t.changes.splice(0, drop);
    t.changes.push(at);
    this.flapDirty.add(t.id);
  }

  private livenessInput(t: Tracked): LivenessInput {
    let intervalS = t.ownIntervalS;
    if (intervalS === null && t.parent) intervalS = this.devices.get(t.parent)?.ownIntervalS ?? null;
    return { lastSeen: this.lastSeenOf(t), intervalS, willAt: t.willAt, watchFrom: t.watchFrom };
  }

  private lastSeenOf(t: Tracked): number | null {
    if (t.ownLastSeen === null) return t.reportedAt;
    if (t.reportedAt === null) return t.ownLastSeen;
    return Math.max(t.ownLastSeen, t.reportedAt);
  }

  /** Put the device's next judgement in the heap if it is earlier than the one already there. */
  private reschedule(t: Tracked, now: number): void {
    const input = this.livenessInput(t);
    const verdict = livenessVerdict(input, now, this.deps.config);
    if (verdict.state === 'alive' || verdict.state === 'offline') this.schedule(t, verdict.deadline);
    else if (verdict.state === 'lost' && t.state !== 'lost') this.schedule(t, now);
  }

  private schedule(t: Tracked, at: number): void {
    if (at < t.scheduledAt) {
      t.scheduledAt = at;
      this.heap.push(at, t.id);
    }
  }

  private view(t: Tracked): DeviceView {
    const faults = t.reportFault ? [...t.subsystemFaults, t.reportFault] : t.subsystemFaults;
    return { id: t.id, state: t.state, lostReason: t.lostReason ?? undefined, faults };
  }

  private childrenOf(gatewayId: string): Tracked[] {
    const out: Tracked[] = [];
    for (const c of this.deps.directory.childrenOf(gatewayId)) {
      if (c.revokedAt !== null) continue;
      const t = this.devices.get(c.id);
      if (t) out.push(t);
    }
    return out;
  }

  private track(d: DeviceRecord, now: number): Tracked {
    const t: Tracked = {
      id: d.id,
      type: d.type,
      parent: d.parent,
      customer: d.customer,
      ownLastSeen: null,
      ownIntervalS: null,
      reportedAt: null,
      willAt: null,
      watchFrom: now,
      state: 'unknown',
      lostReason: null,
      lostSince: null,
      stateChangedAt: null,
      wasLost: false,
      scheduledAt: Infinity,
      subsystemFaults: [],
      subsystemKey: '',
      reportFault: null,
      installAt: null,
      changes: [],
      integrityKey: null,
      evaluated: false,
      fineForSensors: true,
    };
    this.devices.set(d.id, t);
    this.counts.unknown++;
    return t;
  }

  /** Registry changes: a new device is watched from now; a revoked one is forgotten and its conditions cleared. */
  private onDeviceChanged(d: DeviceRecord): void {
    const now = this.deps.clock.now();
    const t = this.devices.get(d.id);
    if (d.revokedAt !== null) {
      if (!t) return;
      this.counts[t.state]--;
      this.devices.delete(d.id);
      this.forgetGatewayLoss(d.id);
      this.flapActive.delete(d.id);
      for (const slot of [`gw:${d.id}`, `sensor:${d.id}`, `flap:${d.id}`]) {
        const kinds: readonly TicketKind[] = slot.startsWith('gw:') ? GATEWAY_KINDS : slot.startsWith('sensor:') ? ['sensor_issue'] : ['flapping'];
        if (this.active.has(slot)) this.reconcile(slot, d.id, kinds, null, false, 'device revoked');
      }
      if (d.parent) this.dirty.add(d.parent);
      return;
    }
    if (!t) {
      this.track(d, now);
      if (d.parent) this.dirty.add(d.parent);
      return;
    }
    if (t.customer !== d.customer && this.lostGateways.has(d.id)) {
      this.forgetGatewayLoss(d.id);
      t.customer = d.customer;
      this.trackGatewayLoss(t);
    }
    if (t.parent !== d.parent && t.parent) this.dirty.add(t.parent);
    t.customer = d.customer;
    t.parent = d.parent;
    t.type = d.type;
    this.dirty.add(d.id);
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

function rankType(t: Tracked | undefined): number {
  return t?.type === 'gateway' ? 0 : 1;
}

function severityOf(kind: TicketKind): keyof typeof SEVERITY_RANK {
  switch (kind) {
    case 'security_incident':
    case 'major_outage':
      return 'urgent';
    case 'cloud_loss_complete':
      return 'high';
    case 'cloud_loss_partial':
    case 'gateway_loss':
      return 'medium';
    default:
      return 'low';
  }
}

/**
 * What makes a condition "changed" for the sink: its kind, severity and covers, and for device/customer/fleet
 * losses the summary. Security and flapping counts move with every event and are not re-raised for that.
 */
function signatureOf(r: ConditionReport): string {
  const covers = r.covers ? r.covers.join(',') : '';
  const extra = r.kind === 'security_incident' ? Object.keys(r.details ?? {}).sort().join(',') : r.kind === 'flapping' ? '' : r.summary;
  return `${r.kind}|${r.severity}|${covers}|${extra}`;
}
