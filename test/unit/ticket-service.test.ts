import { describe, it, expect } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { openDatabase, type Database } from '../../src/db/database.js';
import { silentLogger } from '../../src/log.js';
import { validateConfig } from '../../src/config/load.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { DeviceRegistry } from '../../src/registry/device-registry.js';
import { fiscalYearEnd } from '../../src/subscriptions/fiscal-year.js';
import { IntegrityRegistry } from '../../src/subscriptions/integrity-registry.js';
import { SubscriptionService } from '../../src/subscriptions/subscription-service.js';
import { Outbox } from '../../src/helpdesk/outbox.js';
import { TicketService } from '../../src/tickets/ticket-service.js';
import { AUTOMATIC_TICKETS, type ConditionReport, type TicketKind } from '../../src/tickets/types.js';
import { ConflictError, NotFoundError, ValidationError } from '../../src/errors.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;
const T0 = '2026-11-26T10:00:00.000Z';
const S = 1000;

interface DeviceSeed {
  id: string;
  type: 'gateway' | 'sensor';
  parent?: string;
  customer: string;
  installer?: string;
  tier: 'none' | 'xcare' | 'xcare_pro';
  end?: string | null;
  software?: string | null;
}

const FLEET: DeviceSeed[] = [
  { id: 'gw-a', type: 'gateway', customer: 'acme', tier: 'xcare' },
  { id: 'sen-a1', type: 'sensor', parent: 'gw-a', customer: 'acme', tier: 'xcare' },
  { id: 'sen-a2', type: 'sensor', parent: 'gw-a', customer: 'acme', tier: 'xcare' },
  { id: 'gw-b', type: 'gateway', customer: 'acme', tier: 'xcare_pro' },
  { id: 'gw-c', type: 'gateway', customer: 'beta', tier: 'none', end: null },
  { id: 'gw-d', type: 'gateway', customer: 'beta', tier: 'xcare', installer: 'Cheap Wiring Ltd' },
  { id: 'gw-e', type: 'gateway', customer: 'gamma', tier: 'xcare', software: '9.0.0' },
];

function seed(db: Database, now: number, devices: DeviceSeed[]): void {
  const insert = db.prepare(
    `INSERT INTO devices (id, type, parent, customer, installer, tier, subscription_start, subscription_end, tags, token_hash, created_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, '[]', 'unused', ?)`,
  );
  const state = db.prepare('INSERT INTO device_state (device_id, software_version, integrity) VALUES (?, ?, ?)');
  for (const d of devices) {
    const end = d.end === undefined ? '2027-06-30' : d.end;
    insert.run(d.id, d.type, d.parent ?? null, d.customer, d.installer ?? 'minnovation', d.tier, end ? '2026-07-01' : null, end, now);
    if (d.software !== null) state.run(d.id, d.software ?? '2.3.1', DIGEST);
  }
}

function setup(tickets: ConfigInput['tickets'] = {}, db?: Database) {
  const config = validateConfig({ tickets });
  const clock = new ManualClock(T0);
  const log = silentLogger();
  const fresh = !db;
  db ??= openDatabase(':memory:');
  if (fresh) seed(db, clock.now(), FLEET);
  const registry = new DeviceRegistry({ db, clock, log, fiscalYearEnd, authCacheSize: 0 });
  registry.start();
  const integrity = new IntegrityRegistry({ db, clock });
  if (fresh) integrity.register('2.3.1', DIGEST, 'test');
  const subscriptions = new SubscriptionService({
    db,
    clock,
    log,
    config: config.subscriptions,
    directory: registry,
    integrity,
    onDeviceChanged: (id) => registry.reload(id),
  });
  const outbox = new Outbox({ db, clock });
  let wakeups = 0;
  outbox.onCommitted(() => wakeups++);
  const service = new TicketService({
    db,
    clock,
    config: config.tickets,
    log,
    directory: registry,
    eligibilityOf: (id) => subscriptions.eligibilityOf(id),
    outbox,
  });
  service.load();
  const events = (id: number) => service.events(id).map((e) => e.type);
  const count = (sql: string, ...args: unknown[]) => (db!.prepare(sql).get(...args) as { n: number }).n;
  return { db, clock, config, registry, integrity, subscriptions, outbox, service, events, count, wakeups: () => wakeups };
}

function report(kind: Exclude<TicketKind, 'manual'>, subject: string, over: Partial<ConditionReport> = {}): ConditionReport {
  return { kind, subject, ...AUTOMATIC_TICKETS[kind], summary: `${kind} on ${subject}`, ...over };
}

const only = (svc: TicketService) => {
  const list = svc.unresolved();
  expect(list).toHaveLength(1);
  return list[0]!;
};

describe('RULES.md "Automatic tickets": each row opens its kind with its classification and severity', () => {
  it.each([
    ['security_incident', 'fleet', 'problem', 'urgent'],
    ['major_outage', 'fleet', 'problem', 'urgent'],
    ['cloud_loss_complete', 'customer:acme', 'problem', 'high'],
    ['cloud_loss_partial', 'customer:acme', 'problem', 'medium'],
    ['gateway_loss', 'gw-a', 'problem', 'medium'],
    ['gateway_partial', 'gw-a', 'problem', 'low'],
    ['sensor_issue', 'sen-a1', 'problem', 'low'],
    ['flapping', 'gw-a', 'problem', 'low'],
  ] as const)('%s on %s -> %s / %s, one opened event and one outbox row', (kind, subject, classification, severity) => {
    expect(AUTOMATIC_TICKETS[kind]).toEqual({ classification, severity });
    const { service, events, count, wakeups } = setup();
    service.raise(report(kind, subject));
    const t = only(service);
    expect(t).toMatchObject({ kind, subject, classification, severity, status: 'open', origin: 'auto' });
    expect(events(t.id)).toEqual(['opened']);
    expect(count('SELECT COUNT(*) AS n FROM outbox WHERE ticket_id = ?', t.id)).toBe(1);
    expect(service.hasOpen([kind], subject)).toBe(true);
    expect(wakeups()).toBe(1);
  });

  it('a consultative ticket raised by a person defaults to low', () => {
    const { service } = setup();
    const t = service.openByPerson({ subject: 'gw-a', classification: 'consultative', summary: 'how do I add a sensor?' });
    expect(t).toMatchObject({ kind: 'manual', classification: 'consultative', severity: 'low', origin: 'person' });
  });

  it('a problem raised by a person keeps the severity given', () => {
    const { service } = setup();
    const t = service.openByPerson({ subject: 'gw-a', classification: 'problem', severity: 'high', summary: 'display dead' });
    expect(t).toMatchObject({ classification: 'problem', severity: 'high' });
  });
});

describe('one ticket per problem', () => {
  it('a persisting condition updates its ticket and never opens a second', () => {
    const { service, events } = setup();
    service.raise(report('gateway_loss', 'gw-a'));
    service.raise(report('gateway_loss', 'gw-a'));
    service.raise(report('gateway_loss', 'gw-a', { summary: 'still silent after 10 min' }));
    const t = only(service);
    expect(t.summary).toBe('still silent after 10 min');
    expect(events(t.id)).toEqual(['opened', 'updated']);
  });

  it('an identical raise on every evaluator tick writes nothing', () => {
    const { service, count } = setup();
    service.raise(report('flapping', 'gw-a'));
    for (let i = 0; i < 50; i++) service.raise(report('flapping', 'gw-a'));
    expect(count('SELECT COUNT(*) AS n FROM ticket_events')).toBe(1);
    expect(count('SELECT COUNT(*) AS n FROM outbox')).toBe(1);
  });

  it('partial -> full gateway loss upgrades the open ticket in place (kind and severity) and logs it', () => {
    const { service, events, count } = setup();
    service.raise(report('gateway_partial', 'gw-a'));
    const before = only(service);
    service.raise(report('gateway_loss', 'gw-a'));
    const after = only(service);
    expect(after.id).toBe(before.id);
    expect(after).toMatchObject({ kind: 'gateway_loss', severity: 'medium', openedKind: 'gateway_partial', openedSeverity: 'low' });
    expect(events(after.id)).toEqual(['opened', 'escalated', 'updated']);
    const escalated = service.events(after.id).find((e) => e.type === 'escalated')!;
    expect(escalated.data).toMatchObject({ from: { kind: 'gateway_partial', severity: 'low' }, to: { kind: 'gateway_loss', severity: 'medium' } });
    expect(count(`SELECT COUNT(*) AS n FROM outbox WHERE event_type = 'escalated'`)).toBe(1);
    expect(service.hasOpen(['gateway_loss'], 'gw-a')).toBe(true);
    expect(service.hasOpen(['gateway_partial'], 'gw-a')).toBe(false);
  });

  it('a partial report on a lost gateway never downgrades it', () => {
    const { service } = setup();
    service.raise(report('gateway_loss', 'gw-a'));
    service.raise(report('gateway_partial', 'gw-a'));
    expect(only(service)).toMatchObject({ kind: 'gateway_loss', severity: 'medium' });
  });

  it('partial and loss of one gateway are one condition: after an upgrade, clearing the loss clears the ticket', () => {
    const { service, clock } = setup();
    service.raise(report('gateway_partial', 'gw-a'));
    service.raise(report('gateway_loss', 'gw-a'));
    service.clear('gateway_loss', 'gw-a', 'heartbeats back');
    clock.advance(300 * S);
    service.tick();
    expect(service.unresolved()).toHaveLength(0);
  });

  it('loss back to partial (the evaluator clears loss, raises partial): the ticket stays open, still gateway_loss', () => {
    const { service, clock } = setup();
    service.raise(report('gateway_loss', 'gw-a'));
    service.clear('gateway_loss', 'gw-a', 'changed to gateway_partial');
    service.raise(report('gateway_partial', 'gw-a'));
    clock.advance(3600 * S);
    service.tick();
    expect(only(service)).toMatchObject({ kind: 'gateway_loss', clearedAt: null });
    service.clear('gateway_partial', 'gw-a', 'uplink ok');
    clock.advance(300 * S);
    service.tick();
    expect(service.unresolved()).toHaveLength(0);
  });

  it('after a restart a clear of either gateway kind clears the gateway slot', () => {
    const first = setup();
    first.service.raise(report('gateway_loss', 'gw-a'));
    first.service.raise(report('gateway_partial', 'gw-a')); // slot now holds partial; the ticket stays gateway_loss
    const second = setup({}, first.db);
    second.clock.set(first.clock.now());
    expect(second.service.hasOpen(['gateway_loss'], 'gw-a')).toBe(true);
    second.service.clear('gateway_loss', 'gw-a', 'back after restart');
    second.clock.advance(300 * S);
    second.service.tick();
    expect(second.service.unresolved()).toHaveLength(0);
  });

  it('a clear never auto-resolves a ticket a person opened with that kind', () => {
    const { service, clock } = setup();
    service.openByPerson({ subject: 'gw-a', kind: 'gateway_loss', classification: 'problem', severity: 'medium', summary: 'customer reports it dead' });
    service.clear('gateway_loss', 'gw-a', 'evaluator restart reconcile');
    clock.advance(600 * S);
    service.tick();
    expect(only(service).status).toBe('open');
  });

  it('different kinds on one subject are different tickets', () => {
    const { service } = setup();
    service.raise(report('gateway_loss', 'gw-a'));
    service.raise(report('flapping', 'gw-a'));
    expect(service.unresolved()).toHaveLength(2);
  });
});

describe('grouping and inhibition', () => {
  it('sensors behind a lost gateway open no tickets: they are listed on the gateway ticket', () => {
    const { service, events } = setup();
    service.raise(report('gateway_loss', 'gw-a', { covers: ['sen-a1'] }));
    service.raise(report('sensor_issue', 'sen-a2'));
    service.raise(report('sensor_issue', 'sen-a2'));
    const gw = only(service);
    expect(gw.covers).toEqual(['sen-a1', 'sen-a2']);
    expect(events(gw.id)).toEqual(['opened', 'updated']);
    expect(service.hasOpen(['sensor_issue'], 'sen-a2')).toBe(false);
  });

  it('a sensor covered by a gateway_partial opens no ticket', () => {
    const { service } = setup();
    service.raise(report('gateway_partial', 'gw-a', { covers: ['sen-a1', 'sen-a2'] }));
    service.raise(report('sensor_issue', 'sen-a1'));
    expect(service.unresolved()).toHaveLength(1);
  });

  it('a sensor NOT covered by a gateway_partial (subsystem fault) opens its own sensor_issue', () => {
    const { service } = setup();
    service.raise(report('gateway_partial', 'gw-a', { details: { subsystem: 'uplink' } }));
    service.raise(report('sensor_issue', 'sen-a1'));
    expect(service.unresolved().map((t) => t.kind).sort()).toEqual(['gateway_partial', 'sensor_issue']);
  });

  it('an open sensor ticket is attached as a child when its gateway ticket covers it', () => {
    const { service } = setup();
    service.raise(report('sensor_issue', 'sen-a1'));
    service.raise(report('gateway_loss', 'gw-a', { covers: ['sen-a1', 'sen-a2'] }));
    const sensor = service.unresolved().find((t) => t.kind === 'sensor_issue')!;
    const gw = service.unresolved().find((t) => t.kind === 'gateway_loss')!;
    expect(sensor.parentId).toBe(gw.id);
  });

  it('gateway tickets covered by a customer ticket become its children, leave the queue and come back when it resolves', () => {
    const { service, events } = setup();
    service.raise(report('gateway_loss', 'gw-a'));
    service.raise(report('gateway_loss', 'gw-b'));
    service.raise(report('cloud_loss_complete', 'customer:acme', { covers: ['gw-a', 'gw-b'] }));
    const parent = service.unresolved().find((t) => t.kind === 'cloud_loss_complete')!;
    const children = service.unresolved().filter((t) => t.kind === 'gateway_loss');
    expect(children.map((c) => c.parentId)).toEqual([parent.id, parent.id]);
    expect(events(parent.id)).toEqual(['opened', 'child_attached']);
    expect(service.events(parent.id)[1]!.data).toEqual({ children: children.map((c) => ({ id: c.id, subject: c.subject })) });
    const queue = service.queue();
    expect(queue.map((q) => q.id)).toEqual([parent.id]);
    expect(queue[0]!.children.map((c) => c.id).sort()).toEqual(children.map((c) => c.id).sort());
    expect(queue[0]!.children.every((c) => c.rank === null)).toBe(true);

    service.resolve(parent.id, 'uplink provider fixed');
    expect(service.unresolved().map((t) => t.parentId)).toEqual([null, null]);
    expect(service.queue().map((q) => q.kind)).toEqual(['gateway_loss', 'gateway_loss']);
    expect(events(children[0]!.id)).toEqual(['opened', 'updated', 'updated']);
  });

  it('a gateway ticket opened while a customer ticket covers it is attached at open', () => {
    const { service } = setup();
    service.raise(report('cloud_loss_partial', 'customer:acme', { covers: ['gw-a', 'gw-b'] }));
    service.raise(report('gateway_loss', 'gw-b'));
    const gw = service.unresolved().find((t) => t.subject === 'gw-b')!;
    const parent = service.unresolved().find((t) => t.subject === 'customer:acme')!;
    expect(gw.parentId).toBe(parent.id);
    expect(service.queue()).toHaveLength(1);
  });

  it('a fleet-level ticket takes the gateways over from a customer ticket', () => {
    const { service } = setup();
    service.raise(report('gateway_loss', 'gw-a'));
    service.raise(report('cloud_loss_complete', 'customer:acme', { covers: ['gw-a'] }));
    service.raise(report('major_outage', 'fleet', { covers: ['gw-a', 'gw-c'] }));
    const fleet = service.unresolved().find((t) => t.kind === 'major_outage')!;
    expect(service.unresolved().find((t) => t.subject === 'gw-a')!.parentId).toBe(fleet.id);
    // When the fleet ticket resolves, the gateway goes back under the customer ticket that still covers it.
    service.resolve(fleet.id, 'resolved upstream');
    const customer = service.unresolved().find((t) => t.kind === 'cloud_loss_complete')!;
    expect(service.unresolved().find((t) => t.subject === 'gw-a')!.parentId).toBe(customer.id);
  });
});

describe('auto-resolve and reopen', () => {
  it('resolves exactly resolveAfter after the clear, not 1 ms before, with the reason', () => {
    const { service, clock, events } = setup();
    service.raise(report('gateway_loss', 'gw-a'));
    const id = only(service).id;
    service.clear('gateway_loss', 'gw-a', 'heartbeats back');
    clock.advance(300 * S - 1);
    service.tick();
    expect(service.get(id)!.status).toBe('open');
    clock.advance(1);
    service.tick();
    const t = service.get(id)!;
    expect(t).toMatchObject({ status: 'resolved', resolvedBy: 'auto' });
    expect(t.resolveReason).toBe('condition cleared for 300 s: heartbeats back');
    expect(events(id)).toEqual(['opened', 'resolved']);
    expect(service.hasOpen(['gateway_loss'], 'gw-a')).toBe(false);
  });

  it('a condition back before resolveAfter keeps the ticket open', () => {
    const { service, clock } = setup();
    service.raise(report('gateway_loss', 'gw-a'));
    service.clear('gateway_loss', 'gw-a', 'back');
    clock.advance(200 * S);
    service.raise(report('gateway_loss', 'gw-a'));
    clock.advance(200 * S);
    service.tick();
    expect(only(service).status).toBe('open');
  });

  it('start() arms a clock timer for the earliest pending resolution only (exact, and idle costs no timer)', () => {
    const { service, clock } = setup();
    service.start();
    expect(clock.pendingTimers()).toBe(0);
    service.raise(report('gateway_loss', 'gw-a'));
    service.raise(report('flapping', 'gw-b'));
    service.clear('gateway_loss', 'gw-a', 'back');
    clock.advance(100 * S);
    service.clear('flapping', 'gw-b', 'calm');
    expect(clock.pendingTimers()).toBe(1);
    clock.advance(200 * S - 1);
    expect(service.unresolved()).toHaveLength(2);
    clock.advance(1);
    expect(service.unresolved().map((t) => t.subject)).toEqual(['gw-b']);
    clock.advance(100 * S);
    expect(service.unresolved()).toHaveLength(0);
    expect(clock.pendingTimers()).toBe(0);
    service.stop();
  });

  it('a clock jump of months fires the auto-resolve timer once, not per second', () => {
    const { service, clock } = setup();
    service.start();
    service.raise(report('gateway_loss', 'gw-a'));
    service.clear('gateway_loss', 'gw-a', 'back');
    clock.set('2027-06-01T00:00:00.000Z');
    expect(service.unresolved()).toHaveLength(0);
    expect(clock.pendingTimers()).toBe(0);
    service.stop();
  });

  it.each([
    ['inside the window (exactly reopenWindow later)', 3600 * S, true],
    ['inside the window (1 min later)', 60 * S, true],
    ['outside the window (reopenWindow + 1 ms)', 3600 * S + 1, false],
  ])('recurrence %s -> same ticket reopens: %s', (_name, later, reopens) => {
    const { service, clock, events } = setup();
    service.raise(report('gateway_loss', 'gw-a'));
    const first = only(service).id;
    service.clear('gateway_loss', 'gw-a', 'back');
    clock.advance(300 * S);
    service.tick();
    clock.advance(later);
    service.raise(report('gateway_loss', 'gw-a'));
    const now = only(service);
    if (reopens) {
      expect(now.id).toBe(first);
      expect(now.reopenCount).toBe(1);
      expect(events(first)).toEqual(['opened', 'resolved', 'reopened']);
    } else {
      expect(now.id).not.toBe(first);
      expect(service.get(first)!.status).toBe('resolved');
    }
  });

  it('a ticket resolved by hand while its condition holds reopens on the next raise', () => {
    const { service } = setup();
    service.raise(report('flapping', 'gw-a'));
    const id = only(service).id;
    service.resolve(id, 'looked at it');
    service.raise(report('flapping', 'gw-a'));
    expect(only(service)).toMatchObject({ id, status: 'open', reopenCount: 1 });
  });
});

describe('fair use: maxTicketsPerDay new tickets a subject a UTC day, then fold', () => {
  /** Open, clear and resolve one ticket on gw-a, then wait past the reopen window. */
  function cycle(ctx: ReturnType<typeof setup>, kind: Exclude<TicketKind, 'manual'> = 'flapping') {
    ctx.service.raise(report(kind, 'gw-a'));
    ctx.service.clear(kind, 'gw-a', 'calm');
    ctx.clock.advance(60 * S);
    ctx.service.tick();
    ctx.clock.advance(61 * S);
  }

  it('the 7th ticket of the day folds into the newest one and nothing is dropped', () => {
    const ctx = setup({ resolveAfterS: 60, reopenWindowS: 60 });
    for (let i = 0; i < 6; i++) cycle(ctx);
    expect(ctx.count(`SELECT COUNT(*) AS n FROM tickets WHERE subject = 'gw-a'`)).toBe(6);
    ctx.service.raise(report('flapping', 'gw-a', { summary: 'the seventh time' }));
    expect(ctx.count(`SELECT COUNT(*) AS n FROM tickets WHERE subject = 'gw-a'`)).toBe(6);
    const newest = only(ctx.service);
    expect(newest.reopenCount).toBe(1);
    const last = ctx.service.events(newest.id);
    expect(last.map((e) => e.type)).toEqual(['opened', 'resolved', 'reopened', 'folded']);
    expect(last[3]!.data).toMatchObject({ kind: 'flapping', summary: 'the seventh time' });
    // The folded condition is tracked on that ticket: it clears and resolves like its own.
    ctx.service.clear('flapping', 'gw-a', 'calm');
    ctx.clock.advance(60 * S);
    ctx.service.tick();
    expect(ctx.service.unresolved()).toHaveLength(0);
  });

  it('another kind beyond the cap folds into the open newest ticket (and escalates its severity)', () => {
    const ctx = setup({ resolveAfterS: 60, reopenWindowS: 60 });
    for (let i = 0; i < 5; i++) cycle(ctx);
    ctx.service.raise(report('flapping', 'gw-a'));
    ctx.service.raise(report('gateway_loss', 'gw-a'));
    const t = only(ctx.service);
    expect(t.kind).toBe('flapping');
    expect(t.severity).toBe('medium');
    expect(ctx.events(t.id)).toEqual(['opened', 'folded', 'escalated']);
    expect(ctx.service.hasOpen(['gateway_loss'], 'gw-a')).toBe(false);
    // Raised again (same or new text): the folded condition neither rewrites the ticket nor adds noise.
    ctx.service.raise(report('gateway_loss', 'gw-a'));
    ctx.service.raise(report('gateway_loss', 'gw-a', { summary: 'still lost' }));
    expect(only(ctx.service).summary).toBe('flapping on gw-a');
    expect(ctx.events(t.id)).toEqual(['opened', 'folded', 'escalated']);
  });

  it('the 6th is still a new ticket', () => {
    const ctx = setup({ resolveAfterS: 60, reopenWindowS: 60 });
    for (let i = 0; i < 5; i++) cycle(ctx);
    ctx.service.raise(report('flapping', 'gw-a'));
    expect(ctx.count(`SELECT COUNT(*) AS n FROM tickets WHERE subject = 'gw-a'`)).toBe(6);
    expect(ctx.events(only(ctx.service).id)).toEqual(['opened']);
  });

  it('the cap counts per UTC day: after midnight the subject opens new tickets again', () => {
    const ctx = setup({ resolveAfterS: 60, reopenWindowS: 60 });
    for (let i = 0; i < 6; i++) cycle(ctx);
    ctx.clock.set('2026-11-27T00:00:00.000Z');
    ctx.service.raise(report('flapping', 'gw-a'));
    expect(ctx.count(`SELECT COUNT(*) AS n FROM tickets WHERE subject = 'gw-a'`)).toBe(7);
  });

  it('the cap is per subject: another device is not affected', () => {
    const ctx = setup({ resolveAfterS: 60, reopenWindowS: 60 });
    for (let i = 0; i < 6; i++) cycle(ctx);
    ctx.service.raise(report('flapping', 'gw-b'));
    expect(only(ctx.service).subject).toBe('gw-b');
  });
});

describe('eligibility stored on every ticket', () => {
  it.each([
    ['gw-a', true, [], 'xcare', 'paid'],
    ['gw-b', true, [], 'xcare_pro', 'paid'],
    ['gw-c', false, ['no subscription (tier none)'], 'none', 'discretionary'],
    ['gw-d', false, ['installer "Cheap Wiring Ltd" is not on the approved list'], 'xcare', 'discretionary'],
    ['gw-e', false, ['no integrity digest registered for version 9.0.0'], 'xcare', 'discretionary'],
  ])('%s -> eligible %s, reasons %j, tier %s, band %s', (subject, eligible, reasons, tier, band) => {
    const { service } = setup();
    service.raise(report('gateway_loss', subject));
    expect(only(service)).toMatchObject({ eligible, ineligibleReasons: reasons, tier, band });
  });

  it('an expired subscription is stored as tier none with its reason', () => {
    const { service, clock } = setup();
    clock.set('2027-07-01T00:00:00.000Z');
    service.raise(report('gateway_loss', 'gw-a'));
    expect(only(service)).toMatchObject({ eligible: false, tier: 'none', band: 'discretionary', ineligibleReasons: ['subscription expired on 2027-06-30'] });
  });

  it('eligibility is refreshed when the ticket updates', () => {
    const { service, integrity } = setup();
    service.raise(report('gateway_loss', 'gw-e'));
    expect(only(service).eligible).toBe(false);
    integrity.register('9.0.0', DIGEST, 'test');
    service.raise(report('gateway_loss', 'gw-e', { summary: 'silent for 20 min' }));
    expect(only(service)).toMatchObject({ eligible: true, ineligibleReasons: [], band: 'paid' });
  });

  it('a customer ticket is paid when one covered gateway is eligible, at the best tier among them', () => {
    const { service } = setup();
    service.raise(report('cloud_loss_complete', 'customer:acme', { covers: ['gw-a', 'gw-b'] }));
    expect(only(service)).toMatchObject({ eligible: true, tier: 'xcare_pro', band: 'paid', customer: 'acme' });
  });

  it.each([
    ['major_outage', 'fleet', ['gw-c', 'gw-d']],
    ['security_incident', 'fleet', ['gw-c', 'gw-d', 'gw-e']],
    ['rollout_aborted', 'rollout:r-1', []],
  ] as const)('a fleet-wide %s on %s is the operator incident: paid, whatever devices it lists', (kind, subject, covers) => {
    const { service } = setup();
    service.raise(report(kind, subject, { covers: [...covers] }));
    expect(only(service)).toMatchObject({ eligible: true, band: 'paid', tier: 'xcare', ineligibleReasons: [] });
  });

  it('a customer ticket with no eligible gateway is discretionary and lists each device reason', () => {
    const { service } = setup();
    service.raise(report('cloud_loss_complete', 'customer:beta', { covers: ['gw-c', 'gw-d'] }));
    const t = only(service);
    expect(t.band).toBe('discretionary');
    expect(t.ineligibleReasons).toEqual(['gw-c: no subscription (tier none)', 'gw-d: installer "Cheap Wiring Ltd" is not on the approved list']);
  });
});

describe('the support queue', () => {
  it('paid before discretionary even urgent-vs-low; then by score', () => {
    const { service } = setup();
    service.raise(report('security_incident', 'gw-c')); // urgent, tier none
    service.raise(report('flapping', 'gw-a')); // low, xcare
    service.raise(report('gateway_loss', 'gw-b')); // medium, xcare_pro
    service.openByPerson({ subject: 'gw-a', classification: 'consultative', summary: 'question' });
    const q = service.queue();
    expect(q.map((t) => [t.rank, t.kind, t.subject, t.band])).toEqual([
      [1, 'gateway_loss', 'gw-b', 'paid'],
      [2, 'flapping', 'gw-a', 'paid'],
      [3, 'manual', 'gw-a', 'paid'],
      [4, 'security_incident', 'gw-c', 'discretionary'],
    ]);
    expect(q[0]).toMatchObject({ score: 212.5, severity: 'medium', tier: 'xcare_pro', ageS: 0 });
  });

  it('filters by kind, severity, subject and customer; status=all adds resolved tickets', () => {
    const { service, clock } = setup();
    service.raise(report('gateway_loss', 'gw-a'));
    service.raise(report('flapping', 'gw-d'));
    const f = service.openByPerson({ subject: 'gw-b', classification: 'problem', severity: 'high', summary: 'x' });
    service.resolve(f.id, 'done');
    clock.advance(90 * S);
    expect(service.queue({ kind: 'flapping' }).map((t) => t.subject)).toEqual(['gw-d']);
    expect(service.queue({ severity: 'medium' }).map((t) => t.subject)).toEqual(['gw-a']);
    expect(service.queue({ customer: 'beta' }).map((t) => t.subject)).toEqual(['gw-d']);
    expect(service.queue({ subject: 'gw-a' })[0]!.ageS).toBe(90);
    expect(service.queue({ status: 'all' }).map((t) => t.status)).toEqual(['open', 'open', 'resolved']);
  });
});

describe('people: open, ack, resolve', () => {
  it('ack moves open -> acknowledged once, logged', () => {
    const { service, events } = setup();
    service.raise(report('gateway_loss', 'gw-a'));
    const id = only(service).id;
    expect(service.ack(id).status).toBe('acknowledged');
    expect(service.ack(id).status).toBe('acknowledged');
    expect(events(id)).toEqual(['opened', 'acknowledged']);
    expect(service.hasOpen(['gateway_loss'], 'gw-a')).toBe(true);
  });

  it('resolve records the reason and who', () => {
    const { service, events } = setup();
    const t = service.openByPerson({ subject: 'customer:acme', classification: 'consultative', summary: 'integration help' });
    const resolved = service.resolve(t.id, 'answered by mail');
    expect(resolved).toMatchObject({ status: 'resolved', resolveReason: 'answered by mail', resolvedBy: 'person' });
    expect(events(t.id)).toEqual(['opened', 'resolved']);
  });

  it('ack of a resolved ticket is a conflict', () => {
    const { service } = setup();
    const t = service.openByPerson({ subject: 'gw-a', classification: 'consultative', summary: 'q' });
    service.resolve(t.id, 'done');
    expect(() => service.ack(t.id)).toThrow(ConflictError);
  });
  it('resolving twice is a conflict', () => {
    const { service } = setup();
    const t = service.openByPerson({ subject: 'gw-a', classification: 'consultative', summary: 'q' });
    service.resolve(t.id, 'done');
    expect(() => service.resolve(t.id, 'again')).toThrow(ConflictError);
  });
  it('resolve without a reason is refused and changes nothing', () => {
    const { service } = setup();
    const t = service.openByPerson({ subject: 'gw-a', classification: 'consultative', summary: 'q' });
    expect(() => service.resolve(t.id, '  ')).toThrow(ValidationError);
    expect(service.get(t.id)!.status).toBe('open');
  });
  it('an unknown ticket is not found', () => {
    const { service } = setup();
    expect(() => service.ack(999)).toThrow(NotFoundError);
    expect(() => service.resolve(999, 'x')).toThrow(NotFoundError);
  });
  it('a problem without severity is refused', () => {
    const { service } = setup();
    expect(() => service.openByPerson({ subject: 'gw-a', classification: 'problem', summary: 'x' })).toThrow(/severity/);
  });
  it('an unknown classification is refused', () => {
    const { service } = setup();
    expect(() => service.openByPerson({ subject: 'gw-a', classification: 'rant' as never, summary: 'x' })).toThrow(/classification/);
  });
  it('an unknown subject is refused', () => {
    const { service } = setup();
    expect(() => service.openByPerson({ subject: 'gw-zz', classification: 'consultative', summary: 'x' })).toThrow(/subject/);
  });
  it('an empty summary is refused', () => {
    const { service } = setup();
    expect(() => service.openByPerson({ subject: 'gw-a', classification: 'consultative', summary: '' })).toThrow(/summary/);
  });
  it('opening an automatic kind already open on the subject is a conflict', () => {
    const { service } = setup();
    service.raise(report('gateway_loss', 'gw-a'));
    expect(() => service.openByPerson({ subject: 'gw-a', kind: 'gateway_partial', classification: 'problem', severity: 'low', summary: 'x' })).toThrow(ConflictError);
  });
  it('two manual tickets on one device are two tickets', () => {
    const { service } = setup();
    service.openByPerson({ subject: 'gw-a', classification: 'consultative', summary: 'q1' });
    service.openByPerson({ subject: 'gw-a', classification: 'consultative', summary: 'q2' });
    expect(service.unresolved()).toHaveLength(2);
  });
});

describe('bad condition reports are refused and change nothing', () => {
  it.each([
    ['an unknown kind', { kind: 'volcano' }],
    ['an unknown severity', { severity: 'critical' }],
    ['an unknown classification', { classification: 'bug' }],
    ['an empty subject', { subject: '' }],
    ['a missing summary', { summary: undefined }],
  ])('%s', (_name, over) => {
    const { service, count } = setup();
    expect(() => service.raise({ ...report('gateway_loss', 'gw-a'), ...over } as ConditionReport)).toThrow(ValidationError);
    expect(count('SELECT COUNT(*) AS n FROM tickets')).toBe(0);
  });

  it('clear of a condition with no ticket is a no-op', () => {
    const { service, count } = setup();
    service.clear('gateway_loss', 'gw-a', 'x');
    expect(count('SELECT COUNT(*) AS n FROM tickets')).toBe(0);
  });
});

describe('state survives a restart', () => {
  it('a new service on the same database knows the open tickets, their conditions and pending clears', () => {
    const first = setup();
    first.service.raise(report('gateway_loss', 'gw-a'));
    first.service.raise(report('flapping', 'gw-b'));
    first.service.clear('flapping', 'gw-b', 'calm');
    const second = setup({}, first.db);
    second.clock.set(first.clock.now());
    expect(second.service.hasOpen(['gateway_loss'], 'gw-a')).toBe(true);
    second.service.raise(report('gateway_loss', 'gw-a'));
    expect(second.count('SELECT COUNT(*) AS n FROM tickets')).toBe(2);
    second.clock.advance(300 * S);
    second.service.tick();
    expect(second.service.hasOpen(['flapping'], 'gw-b')).toBe(false);
  });
});
