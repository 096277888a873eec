import type { Logger } from '../log.js';
import type { DeviceDirectory } from '../registry/types.js';
import type { ConditionSink, TicketKind } from '../tickets/types.js';
import { ConditionReconciler } from './condition-reconciler.js';
import { customerCondition, fleetCondition } from './correlation.js';
import { gatewayCondition, gatewayIsFine, sensorCondition } from './device-conditions.js';
import { flappingCondition, flappingVerdict } from './flapping.js';
import type { HealthMetrics } from './health-metrics.js';
import type { HealthSettings } from './liveness.js';
import { LostGatewayIndex } from './lost-gateways.js';
import { SecuritySignals } from './security-signals.js';
import { lastSeenOf, viewOf, type Tracked } from './tracked-device.js';

export const GATEWAY_KINDS: readonly TicketKind[] = ['gateway_loss', 'gateway_partial'];
const CUSTOMER_KINDS: readonly TicketKind[] = ['cloud_loss_complete', 'cloud_loss_partial'];

export interface ConditionEvaluationDeps {
  devices: ReadonlyMap<string, Tracked>;
  directory: DeviceDirectory;
  sink: ConditionSink;
  config: HealthSettings;
  log: Logger;
  metrics: () => HealthMetrics | undefined;
  /** Monotonic ms now. */
  mono(): number;
}

/**
 * The condition half of the evaluator (RULES.md "Automatic tickets", "Grouping and inhibition"): what changed since
 * the last tick (dirty devices, customers, the fleet, flapping, security), the conditions those hold, and the
 * raise/clear calls through the reconciler. A tick runs `begin()`, the evaluations, then `commit()`, or
 * `rollback()` when its transaction failed: everything it evaluated is marked dirty again for the next tick.
 */
export class ConditionEvaluation {
  readonly dirty = new Set<string>();
  readonly flapDirty = new Set<string>();
  /** Devices with a flapping condition raised, and when their verdict must be re-checked. */
  readonly flapActive = new Map<string, number>();
  readonly lost = new LostGatewayIndex();
  readonly dirtyCustomers = new Set<string>();
  /** Gateways whose condition cleared but whose ticket is still open (until resolveAfter): sensors wait for it. */
  readonly awaitingResolve = new Set<string>();
  /** Lost sensors waiting for their gateway's verdict ({@link gatewayInDoubt}); looked at again every tick. */
  readonly heldSensors = new Set<string>();
  fleetDirty = false;
  readonly security = new SecuritySignals();
  private readonly securitySubjects = new Set<string>();
  readonly conditions: ConditionReconciler;
  /** What this tick evaluated, re-marked dirty if its transaction fails. */
  private touched = { devices: new Set<string>(), customers: new Set<string>(), fleet: false, flap: new Set<string>(), security: new Set<string>() };

  constructor(private readonly deps: ConditionEvaluationDeps) {
    this.conditions = new ConditionReconciler({ sink: deps.sink, log: deps.log, metrics: deps.metrics });
  }

  begin(): void {
    this.touched = { devices: new Set(), customers: new Set(), fleet: false, flap: new Set(), security: new Set() };
    this.conditions.begin();
  }

  commit(): void {
    this.conditions.commit();
  }

  /** The tick's transaction failed: restore what was reported and re-mark everything it evaluated. */
  rollback(): void {
    for (const slot of this.conditions.rollback()) this.markSlotDirty(slot);
    for (const id of this.touched.devices) this.dirty.add(id);
    for (const c of this.touched.customers) this.dirtyCustomers.add(c);
    if (this.touched.fleet) this.fleetDirty = true;
    for (const id of this.touched.flap) this.flapDirty.add(id);
    for (const s of this.touched.security) this.securitySubjects.add(s);
    this.security.dirty = true;
  }

  /** Everything a tick evaluates after the liveness judgements. */
  evaluate(now: number): void {
    this.evaluateSecurity(now);
    this.evaluateFlapping(now);
    for (const id of this.awaitingResolve) {
      if (!this.deps.sink.hasOpen(GATEWAY_KINDS, id)) {
        this.awaitingResolve.delete(id);
        this.dirty.add(id);
      }
    }
    // A held sensor is judged as soon as its gateway has spoken again (fine) or has been judged lost (it covers it):
    // a routine gateway heartbeat marks nothing dirty, so the few held sensors are looked at on every tick.
    for (const id of this.heldSensors) {
      const s = this.deps.devices.get(id);
      const parent = s?.parent ? this.deps.devices.get(s.parent) : undefined;
      if (!s || !parent || s.state !== 'lost' || !gatewayInDoubt(parent, s)) this.dirty.add(id);
    }
    this.evaluateDirty();
  }

  markSlotDirty(slot: string): void {
    const colon = slot.indexOf(':');
    const prefix = colon < 0 ? slot : slot.slice(0, colon);
    const rest = colon < 0 ? '' : slot.slice(colon + 1);
    if (prefix === 'gw' || prefix === 'sensor') this.dirty.add(rest);
    else if (prefix === 'cust') this.dirtyCustomers.add(rest);
    else if (prefix === 'fleet') this.fleetDirty = true;
    else if (prefix === 'flap') this.flapDirty.add(rest);
    else if (prefix === 'sec') this.security.dirty = true;
  }

  /** RULES.md "People and machines": a person resolved a ticket whose condition holds; raise it again next tick. */
  onResolvedWhileHolding(kind: TicketKind, subject: string): void {
    for (const slot of this.conditions.slotsOf(kind, subject)) {
      this.conditions.forget(slot);
      this.markSlotDirty(slot);
    }
  }

  /** A revoked device: forget it and clear what it raised. */
  forgetDevice(id: string, parent: string | null): void {
    this.forgetGatewayLoss(id);
    this.flapActive.delete(id);
    this.heldSensors.delete(id);
    for (const slot of [`gw:${id}`, `sensor:${id}`, `flap:${id}`]) {
      const kinds: readonly TicketKind[] = slot.startsWith('gw:') ? GATEWAY_KINDS : slot.startsWith('sensor:') ? ['sensor_issue'] : ['flapping'];
      if (this.conditions.has(slot)) this.conditions.reconcile(slot, id, kinds, null, false, 'device revoked');
    }
    if (parent) this.dirty.add(parent);
  }

  private childrenOf(gatewayId: string): Tracked[] {
    const out: Tracked[] = [];
    for (const c of this.deps.directory.childrenOf(gatewayId)) {
      if (c.revokedAt !== null) continue;
      const t = this.deps.devices.get(c.id);
      if (t) out.push(t);
    }
    return out;
  }

  /** Re-evaluate every dirty device, gateway, customer and the fleet. */
  evaluateDirty(): void {
    if (this.dirty.size === 0 && this.dirtyCustomers.size === 0 && !this.fleetDirty) return;
    const gateways = new Set<string>();
    const sensors = new Set<string>();
    for (const id of this.dirty) {
      this.touched.devices.add(id);
      const t = this.deps.devices.get(id);
      if (!t) continue;
      if (t.type === 'gateway') gateways.add(id);
      else {
        sensors.add(id);
        if (t.parent) gateways.add(t.parent);
      }
    }
    this.dirty.clear();

    // Parents before children (RULES.md "Our own outages...": a child ticket is never delivered before the parent
    // that would inhibit it): the lost-gateway sets first, then the fleet and customer conditions they feed, then
    // the gateway tickets those cover (each attaches to its parent as it opens), then the sensors under them.
    for (const id of gateways) {
      const g = this.deps.devices.get(id);
      if (!g || g.type !== 'gateway') continue;
      this.trackGatewayLoss(g);
      // First look at this gateway since start: customer/fleet tickets left open by a previous run get re-checked.
      if (!this.conditions.isReconciled(`cust:${g.customer}`)) this.dirtyCustomers.add(g.customer);
      if (!this.conditions.isReconciled('fleet')) this.fleetDirty = true;
    }
    this.evaluateFleet();
    this.evaluateCustomers();

    for (const id of gateways) {
      const g = this.deps.devices.get(id);
      if (!g || g.type !== 'gateway') continue;
      this.touched.devices.add(id);
      const children = this.childrenOf(id);
      const report = gatewayCondition(viewOf(g), children.map((c) => viewOf(c)), this.deps.config);
      this.conditions.reconcile(`gw:${id}`, id, GATEWAY_KINDS, report, true, 'gateway healthy again');
      // After a clear, the ticket stays open until the sink resolves it; its sensors stay listed there until then.
      const ticketOpen = report === null && this.deps.sink.hasOpen(GATEWAY_KINDS, id);
      if (ticketOpen) this.awaitingResolve.add(id);
      else this.awaitingResolve.delete(id);
      const fine = gatewayIsFine({ state: g.state, hasCondition: report !== null, ticketOpen });
      // Within its Last Will grace the gateway may be gone: its sensors wait for the verdict (issue 8, fault 6).
      const holds = g.state === 'offline';
      if (fine !== g.fineForSensors || holds !== g.holdsSensors) {
        g.fineForSensors = fine;
        g.holdsSensors = holds;
        for (const c of children) sensors.add(c.id);
      }
    }

    for (const id of sensors) {
      const s = this.deps.devices.get(id);
      if (!s || s.type !== 'sensor') {
        this.heldSensors.delete(id);
        continue;
      }
      this.touched.devices.add(id);
      const parent = s.parent ? this.deps.devices.get(s.parent) : undefined;
      // RULES.md "Our own outages...": a child is never delivered before the parent that would inhibit it.
      if (parent?.holdsSensors) continue;
      if (parent && s.state === 'lost' && gatewayInDoubt(parent, s)) {
        this.heldSensors.add(id);
        continue;
      }
      this.heldSensors.delete(id);
      const fine = parent ? parent.fineForSensors : true;
      const report = sensorCondition(viewOf(s), fine);
      this.conditions.reconcile(`sensor:${id}`, id, ['sensor_issue'], report, false, fine ? 'sensor healthy again' : `covered by gateway ${s.parent}`);
    }
  }

  /** RULES.md `cloud_loss_complete` / `cloud_loss_partial` of every customer whose lost gateways changed. */
  private evaluateCustomers(): void {
    for (const customer of this.dirtyCustomers) {
      this.touched.customers.add(customer);
      const total = this.deps.directory.gatewaysOf(customer).filter((g) => g.revokedAt === null).length;
      const report = customerCondition(customer, this.lost.ofCustomer(customer), total, this.deps.config);
      this.conditions.reconcile(`cust:${customer}`, `customer:${customer}`, CUSTOMER_KINDS, report, false, 'customer gateways back');
    }
    this.dirtyCustomers.clear();
  }

  /** RULES.md `major_outage`, when the fleet's lost gateways changed. */
  private evaluateFleet(): void {
    if (this.fleetDirty) {
      this.fleetDirty = false;
      this.touched.fleet = true;
      const total = this.deps.directory.gatewayCount();
      const threshold = Math.max(this.deps.config.minCorrelated, Math.ceil(this.deps.config.fleetGatewayShare * total - 1e-9));
      // The usual tick has a few lost gateways: skip building the list unless an outage is possible or open.
      if (this.lost.size >= threshold || this.conditions.has('fleet') || !this.conditions.isReconciled('fleet')) {
        const report = fleetCondition(this.lost.list(), total, this.deps.config);
        this.conditions.reconcile('fleet', 'fleet', ['major_outage'], report, false, 'fleet gateways back');
      }
    }
  }

  /** Keep the lost-gateway sets of the fleet and of each customer in step with a gateway's state. */
  trackGatewayLoss(g: Tracked): void {
    const isLost = g.state === 'lost';
    if (isLost === this.lost.has(g.id)) return;
    if (isLost) this.dirtyCustomers.add(this.lost.add({ id: g.id, customer: g.customer, lostSince: g.lostSince ?? this.deps.mono() }));
    else this.forgetGatewayLoss(g.id);
    this.fleetDirty = true;
  }

  forgetGatewayLoss(id: string): void {
    const customer = this.lost.remove(id);
    if (customer === undefined) return;
    this.dirtyCustomers.add(customer);
    this.fleetDirty = true;
  }

  evaluateFlapping(now: number): void {
    for (const [id, recheckAt] of this.flapActive) if (recheckAt <= now) this.flapDirty.add(id);
    if (this.flapDirty.size === 0) return;
    // Gateways first: a sensor flapping because its gateway flaps is inhibited by the gateway's verdict of this tick.
    const ordered = [...this.flapDirty].sort((a, b) => rankType(this.deps.devices.get(a)) - rankType(this.deps.devices.get(b)));
    this.flapDirty.clear();
    for (const id of ordered) {
      this.touched.flap.add(id);
      const t = this.deps.devices.get(id);
      if (!t) {
        this.flapActive.delete(id);
        continue;
      }
      const verdict = flappingVerdict(t.changes, now, this.deps.config);
      // A sensor behind a flapping or ticketed gateway flaps because of it: listed there, nothing of its own.
      const parent = t.parent ? this.deps.devices.get(t.parent) : undefined;
      const inhibited = parent !== undefined && (this.flapActive.has(parent.id) || this.deps.sink.hasOpen(GATEWAY_KINDS, parent.id));
      const report = inhibited ? null : flappingCondition(id, verdict, this.deps.config);
      this.conditions.reconcile(`flap:${id}`, id, ['flapping'], report, false, 'device stable again');
      if (report) this.flapActive.set(id, verdict.recheckAt ?? now);
      else this.flapActive.delete(id);
    }
  }

  evaluateSecurity(now: number): void {
    const reports = this.security.evaluate(now, this.deps.config);
    if (reports === null) return;
    const holding = new Set<string>();
    for (const r of reports) {
      holding.add(r.subject);
      this.securitySubjects.add(r.subject);
      this.conditions.reconcile(`sec:${r.subject}`, r.subject, ['security_incident'], r, false, '');
    }
    for (const subject of [...this.securitySubjects]) {
      if (holding.has(subject)) continue;
      this.touched.security.add(subject);
      this.conditions.reconcile(`sec:${subject}`, subject, ['security_incident'], null, false, 'no more security signals within the window');
      this.securitySubjects.delete(subject);
    }
  }
}

function rankType(t: Tracked | undefined): number {
  return t?.type === 'gateway' ? 0 : 1;
}

/**
 * A lost sensor's gateway is in doubt while it looks online but has not been heard from since the sensor's last
 * sign of life: a gateway that hangs (no Last Will) or whose uplink is cut silences its sensors with it, and the
 * sensors, beating faster, would be judged lost long before it (RULES.md: a child is never delivered before the
 * parent that would inhibit it; issue 8 fault 6). The doubt ends when the gateway speaks again (then the sensor
 * is ticketed alone) or is judged lost (its ticket covers the sensor), at the latest at the gateway's own deadline.
 * A gateway never heard from (unknown) holds nothing, so a sensor behind a gateway never deployed is still judged.
 */
export function gatewayInDoubt(gateway: Tracked, sensor: Tracked): boolean {
  if (gateway.state !== 'online') return false;
  const gatewaySeen = lastSeenOf(gateway);
  const sensorSeen = lastSeenOf(sensor);
  return gatewaySeen !== null && sensorSeen !== null && gatewaySeen <= sensorSeen;
}
