import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { ManualClock } from '../../src/clock.js';
import { configSchema } from '../../src/config/schema.js';
import { openDatabase, type Database } from '../../src/db/database.js';
import { silentLogger } from '../../src/log.js';
import { InstallGrace } from '../../src/patches/install-grace.js';
import { HealthEvaluator } from '../../src/health/health-evaluator.js';
import type { HealthSettings } from '../../src/health/liveness.js';
import type { Heartbeat } from '../../src/protocol/types.js';
import type { DeviceDirectory, DeviceRecord } from '../../src/registry/types.js';
import type { ConditionReport, ConditionSink, TicketKind } from '../../src/tickets/types.js';
import { tempDir } from '../helpers/temp-dir.js';

const T0 = Date.parse('2026-11-26T17:00:00.000Z');
const settings: HealthSettings = configSchema.parse({}).health;

type Call = { op: 'raise'; report: ConditionReport } | { op: 'clear'; kind: TicketKind; subject: string; reason: string };

/**
 * A real, minimal ticket store behind the ConditionSink interface: open tickets keyed by (kind, subject), with
 * gateway_partial and gateway_loss of one gateway as one ticket (RULES.md "One ticket per problem").
 * With `holdOnClear` a cleared ticket stays open until `resolveCleared()` (the real service waits resolveAfter).
 */
class RecordingSink implements ConditionSink {
  readonly calls: Call[] = [];
  readonly open = new Map<string, ConditionReport>();
  private readonly cleared = new Set<string>();
  holdOnClear = false;

  private key(kind: TicketKind, subject: string): string {
    return kind === 'gateway_loss' || kind === 'gateway_partial' ? `gateway|${subject}` : `${kind}|${subject}`;
  }
  raise(report: ConditionReport): void {
    this.calls.push({ op: 'raise', report });
    const k = this.key(report.kind, report.subject);
    this.cleared.delete(k);
    this.open.set(k, report);
  }
  clear(kind: TicketKind, subject: string, reason: string): void {
    this.calls.push({ op: 'clear', kind, subject, reason });
    const k = this.key(kind, subject);
    if (!this.open.has(k)) return;
    if (this.holdOnClear) this.cleared.add(k);
    else this.open.delete(k);
  }
  hasOpen(kinds: readonly TicketKind[], subject: string): boolean {
    return kinds.some((k) => this.open.has(this.key(k, subject)));
  }
  resolveCleared(): void {
    for (const k of this.cleared) this.open.delete(k);
    this.cleared.clear();
  }
  raises(kind?: TicketKind): ConditionReport[] {
    return this.calls.flatMap((c) => (c.op === 'raise' && (!kind || c.report.kind === kind) ? [c.report] : []));
  }
  clears(kind?: TicketKind): { kind: TicketKind; subject: string; reason: string }[] {
    return this.calls.flatMap((c) => (c.op === 'clear' && (!kind || c.kind === kind) ? [{ kind: c.kind, subject: c.subject, reason: c.reason }] : []));
  }
  openFor(kind: TicketKind, subject: string): ConditionReport | undefined {
    return this.open.get(this.key(kind, subject));
  }
}

/** A DeviceDirectory over an array, as the registry would serve it. */
class ArrayDirectory implements DeviceDirectory {
  private readonly listeners = new Set<(d: DeviceRecord) => void>();
  constructor(private readonly devices: DeviceRecord[]) {}
  get(id: string) {
    return this.devices.find((d) => d.id === id);
  }
  all() {
    return this.devices;
  }
  childrenOf(gatewayId: string) {
    return this.devices.filter((d) => d.parent === gatewayId);
  }
  gatewaysOf(customer: string) {
    return this.devices.filter((d) => d.type === 'gateway' && d.customer === customer);
  }
  gatewayCount() {
    return this.devices.filter((d) => d.type === 'gateway' && d.revokedAt === null).length;
  }
  onChange(listener: (d: DeviceRecord) => void) {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }
  update(id: string, change: Partial<DeviceRecord>): void {
    const d = this.get(id)!;
    Object.assign(d, change);
    for (const l of this.listeners) l(d);
  }
}

function device(id: string, type: 'gateway' | 'sensor', customer: string, parent: string | null = null): DeviceRecord {
  return {
    id,
    type,
    parent,
    customer,
    installer: 'minnovation',
    tier: 'xcare',
    subscriptionStart: '2026-07-01',
    subscriptionEnd: '2027-06-30',
    tags: [],
    createdAt: T0 - 86_400_000,
    revokedAt: null,
  };
}

/** acme: gw-1 (sensors s-1a..s-1d), gw-2 (s-2a); globex: gw-3; solo sensor s-x without gateway; 10 more gateways elsewhere. */
function fleet(): DeviceRecord[] {
  const list = [
    device('gw-1', 'gateway', 'acme'),
    ...['s-1a', 's-1b', 's-1c', 's-1d'].map((id) => device(id, 'sensor', 'acme', 'gw-1')),
    device('gw-2', 'gateway', 'acme'),
    device('s-2a', 'sensor', 'acme', 'gw-2'),
    device('gw-3', 'gateway', 'globex'),
    device('s-x', 'sensor', 'globex'),
  ];
  for (let i = 0; i < 10; i++) list.push(device(`gw-o${i}`, 'gateway', `other${i}`));
  return list;
}

function insertDevices(db: Database, devices: DeviceRecord[]): void {
  const insert = db.prepare(
    `INSERT INTO devices (id, type, parent, customer, installer, tier, subscription_start, subscription_end, token_hash, created_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'x', ?)`,
  );
  for (const d of devices) insert.run(d.id, d.type, d.parent, d.customer, d.installer, d.tier, d.subscriptionStart, d.subscriptionEnd, d.createdAt);
}

function hb(extra: Partial<Heartbeat> = {}): Heartbeat {
  return { seq: 1, ts: '2026-11-26T17:00:00.000Z', intervalS: 30, agentVersion: '1.0.0', softwareVersion: '2.3.1', ...extra };
}

const ok = (...ids: string[]) => ids.map((id) => ({ id, ok: true }));

interface Harness {
  clock: ManualClock;
  db: Database;
  dir: ArrayDirectory;
  sink: RecordingSink;
  ev: HealthEvaluator;
  integrity: Map<string, string>;
  /** The one install-grace record, as PatchService feeds it in the daemon. */
  grace: InstallGrace;
}

describe('HealthEvaluator', () => {
  let tmp: ReturnType<typeof tempDir>;
  let h: Harness;
  const extra: HealthEvaluator[] = [];

  function build(opts: { clock?: ManualClock; dir?: ArrayDirectory; sink?: RecordingSink; db?: Database; config?: Partial<HealthSettings>; metrics?: Registry } = {}): Harness {
    const clock = opts.clock ?? new ManualClock(T0);
    const dir = opts.dir ?? new ArrayDirectory(fleet());
    let db = opts.db;
    if (!db) {
      db = openDatabase(join(tmp.path, 'xcare.db'));
      insertDevices(db, [...dir.all()]);
    }
    const sink = opts.sink ?? new RecordingSink();
    const integrity = new Map<string, string>();
    const grace = new InstallGrace({ restartGraceMs: 300_000, maxInstallMs: 600_000 });
    const ev = new HealthEvaluator({
      clock,
      db,
      log: silentLogger(),
      config: { ...settings, ...opts.config },
      directory: dir,
      sink,
      metrics: opts.metrics,
      expectedIntegrity: (v) => integrity.get(v),
      installGraceUntil: (id, now) => grace.graceUntil(id, now),
    });
    ev.start();
    extra.push(ev);
    return { clock, db, dir, sink, ev, integrity, grace };
  }

  /** Heartbeat the given devices every 30 s (gateways listing their sensors) while `ms` passes. */
  function beatFor(ms: number, beats: Record<string, Partial<Heartbeat>>): void {
    const end = h.clock.now() + ms;
    while (h.clock.now() < end) {
      for (const [id, extraHb] of Object.entries(beats)) h.ev.onHeartbeat(id, hb(extraHb), h.clock.now());
      h.clock.advance(Math.min(30_000, end - h.clock.now()));
    }
  }

  const allAlive = (): Record<string, Partial<Heartbeat>> => {
    const beats: Record<string, Partial<Heartbeat>> = {
      'gw-1': { sensors: ok('s-1a', 's-1b', 's-1c', 's-1d') },
      'gw-2': { sensors: ok('s-2a') },
      'gw-3': {},
      's-x': {},
    };
    for (let i = 0; i < 10; i++) beats[`gw-o${i}`] = {};
    return beats;
  };
  const without = (beats: Record<string, Partial<Heartbeat>>, ...ids: string[]) => {
    const copy = { ...beats };
    for (const id of ids) delete copy[id];
    return copy;
  };

  beforeEach(() => {
    tmp = tempDir('xcare-health-');
    h = build();
  });
  afterEach(() => {
    for (const ev of extra.splice(0)) ev.stop();
    if (h.db.open) h.db.close();
    tmp.cleanup();
  });

  it('gateway silence opens gateway_loss (medium) covering its sensors, and the sensors open nothing', () => {
    beatFor(60_000, allAlive());
    const lastGw1 = h.clock.now() - 30_000; // gw-1's last heartbeat
    beatFor(0, {});
    // Everyone but gw-1 keeps beating.
    const rest = without(allAlive(), 'gw-1');
    beatFor(lastGw1 + 90_000 - 1 - h.clock.now(), rest);
    expect(h.sink.raises('gateway_loss')).toEqual([]);
    beatFor(1, rest);
    const [loss, ...more] = h.sink.raises('gateway_loss');
    expect(more).toEqual([]);
    expect(loss).toMatchObject({ kind: 'gateway_loss', subject: 'gw-1', severity: 'medium', classification: 'problem' });
    expect(loss!.covers).toEqual(['s-1a', 's-1b', 's-1c', 's-1d']);
    beatFor(300_000, rest);
    expect(h.sink.raises('sensor_issue')).toEqual([]);
    expect(h.sink.raises().map((r) => r.kind)).toEqual(['gateway_loss']);
    expect(h.ev.snapshot('gw-1')).toMatchObject({ state: 'lost', lostSince: lastGw1 + 90_000, lostReason: 'silence', lastSeen: lastGw1 });
    const row = h.db.prepare('SELECT online, state_changed_at FROM device_state WHERE device_id = ?').get('gw-1') as { online: number; state_changed_at: number };
    expect(row).toEqual({ online: 0, state_changed_at: lastGw1 + 90_000 });
    const events = h.db.prepare("SELECT kind FROM events WHERE device_id = 'gw-1' ORDER BY id").all() as { kind: string }[];
    expect(events.map((e) => e.kind)).toEqual(['online', 'lost']);
  });

  it('a device back clears its condition (clear() called) and logs a back event', () => {
    beatFor(30_000, allAlive());
    beatFor(120_000, without(allAlive(), 'gw-1'));
    expect(h.sink.openFor('gateway_loss', 'gw-1')).toBeDefined();
    beatFor(2_000, allAlive());
    expect(h.sink.clears('gateway_loss')).toEqual([{ kind: 'gateway_loss', subject: 'gw-1', reason: 'gateway healthy again' }]);
    expect(h.ev.snapshot('gw-1')?.state).toBe('online');
    const events = h.db.prepare("SELECT kind FROM events WHERE device_id = 'gw-1' ORDER BY id").all() as { kind: string }[];
    expect(events.map((e) => e.kind)).toEqual(['online', 'lost', 'back']);
  });

  it('a sensor fault reported by its gateway opens sensor_issue (low)', () => {
    const beats = allAlive();
    beats['gw-1'] = { sensors: [...ok('s-1a', 's-1b', 's-1c'), { id: 's-1d', ok: false, detail: 'no reading for 120 s' }] };
    beatFor(2_000, beats);
    const issues = h.sink.raises('sensor_issue');
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ subject: 's-1d', severity: 'low', classification: 'problem' });
    expect(h.sink.raises('gateway_partial')).toEqual([]);
    beatFor(2_000, allAlive());
    expect(h.sink.clears('sensor_issue').map((c) => c.subject)).toEqual(['s-1d']);
  });

  it('a sensor is alive through either source: its own heartbeat or its gateway listing it', () => {
    // s-1a runs its own agent (60 s interval); its gateway stops listing it but it keeps beating itself.
    const beats = allAlive();
    beats['gw-1'] = { sensors: ok('s-1b', 's-1c', 's-1d') };
    beats['s-1a'] = { intervalS: 60 };
    beatFor(600_000, beats);
    expect(h.ev.snapshot('s-1a')?.state).toBe('online');
    // Now it stops beating, but the gateway lists it again: still alive.
    beatFor(600_000, allAlive());
    expect(h.ev.snapshot('s-1a')?.state).toBe('online');
    // Neither source: lost after 3 x its own 60 s interval, with a sensor_issue (its gateway is fine).
    const last = h.clock.now() - 30_000;
    beatFor(149_999, { ...allAlive(), 'gw-1': { sensors: ok('s-1b', 's-1c', 's-1d') } });
    expect(h.ev.snapshot('s-1a')?.state).toBe('online');
    beatFor(1, { ...allAlive(), 'gw-1': { sensors: ok('s-1b', 's-1c', 's-1d') } });
    expect(h.ev.snapshot('s-1a')).toMatchObject({ state: 'lost', lostSince: last + 180_000 });
    expect(h.sink.raises('sensor_issue').map((r) => r.subject)).toEqual(['s-1a']);
  });

  it('half of a gateway\'s sensors lost together opens gateway_partial, and those sensors open nothing of their own', () => {
    beatFor(30_000, allAlive());
    beatFor(150_000, { ...allAlive(), 'gw-1': { sensors: ok('s-1c', 's-1d') } });
    const partial = h.sink.raises('gateway_partial');
    expect(partial).toHaveLength(1);
    expect(partial[0]).toMatchObject({ subject: 'gw-1', severity: 'low' });
    expect(partial[0]!.covers).toEqual(['s-1a', 's-1b']);
    expect(h.sink.raises('sensor_issue')).toEqual([]);
  });

  it('inhibition: while a gateway ticket is open its sensors open nothing; after it resolves they do', () => {
    h.sink.holdOnClear = true;
    const faulty = { name: 'uplink', ok: false, detail: 'lte down' };
    beatFor(2_000, { ...allAlive(), 'gw-1': { subsystems: [faulty], sensors: ok('s-1a', 's-1b', 's-1c', 's-1d') } });
    expect(h.sink.raises('gateway_partial')).toHaveLength(1);
    // A sensor fault while the partial ticket is open: listed on the gateway ticket, no sensor_issue.
    const bad = [...ok('s-1a', 's-1b', 's-1c'), { id: 's-1d', ok: false, detail: 'stuck' }];
    beatFor(2_000, { ...allAlive(), 'gw-1': { subsystems: [faulty], sensors: bad } });
    expect(h.sink.raises('sensor_issue')).toEqual([]);
    expect(h.sink.openFor('gateway_partial', 'gw-1')?.covers).toEqual(['s-1d']);
    // The subsystem recovers: condition cleared, but the ticket stays open until the sink resolves it.
    beatFor(2_000, { ...allAlive(), 'gw-1': { sensors: bad } });
    expect(h.sink.clears('gateway_partial')).toHaveLength(1);
    expect(h.sink.raises('sensor_issue')).toEqual([]);
    h.sink.resolveCleared();
    beatFor(2_000, { ...allAlive(), 'gw-1': { sensors: bad } });
    expect(h.sink.raises('sensor_issue').map((r) => r.subject)).toEqual(['s-1d']);
  });

  it('partial -> full loss of one gateway upgrades in place (a raise, no clear in between)', () => {
    const faulty = { subsystems: [{ name: 'uplink', ok: false, detail: 'lte weak' }], sensors: ok('s-1a', 's-1b', 's-1c', 's-1d') };
    beatFor(30_000, { ...allAlive(), 'gw-1': faulty });
    expect(h.sink.raises('gateway_partial').map((r) => r.subject)).toEqual(['gw-1']);
    beatFor(120_000, without(allAlive(), 'gw-1'));
    expect(h.sink.raises('gateway_loss').map((r) => r.subject)).toEqual(['gw-1']);
    expect(h.sink.clears()).toEqual([]);
    expect(h.sink.openFor('gateway_loss', 'gw-1')?.kind).toBe('gateway_loss');
  });

  it('a sensor_issue is cleared as covered when its gateway is then lost', () => {
    // s-1a runs its own agent with a short interval and is not listed by its gateway.
    const beats = { ...allAlive(), 'gw-1': { sensors: ok('s-1b', 's-1c', 's-1d') }, 's-1a': { intervalS: 10 } };
    beatFor(30_000, beats);
    beatFor(60_000, without(beats, 's-1a'));
    beatFor(0, {});
    expect(h.sink.raises('sensor_issue').map((r) => r.subject)).toEqual(['s-1a']);
    beatFor(120_000, without(allAlive(), 'gw-1'));
    expect(h.sink.clears('sensor_issue')).toEqual([{ kind: 'sensor_issue', subject: 's-1a', reason: 'covered by gateway gw-1' }]);
    expect(h.sink.openFor('gateway_loss', 'gw-1')?.covers).toContain('s-1a');
  });

  it('all gateways of a customer lost: cloud_loss_complete (high) covering them, plus their gateway_loss', () => {
    beatFor(30_000, allAlive());
    beatFor(120_000, without(allAlive(), 'gw-1', 'gw-2'));
    const complete = h.sink.raises('cloud_loss_complete');
    expect(complete).toHaveLength(1);
    expect(complete[0]).toMatchObject({ subject: 'customer:acme', severity: 'high', classification: 'problem' });
    expect(complete[0]!.covers).toEqual(['gw-1', 'gw-2']);
    expect(h.sink.raises('gateway_loss').map((r) => r.subject).sort()).toEqual(['gw-1', 'gw-2']);
    expect(h.sink.raises('major_outage')).toEqual([]); // 2 of 13 gateways
    beatFor(2_000, allAlive());
    expect(h.sink.clears('cloud_loss_complete').map((c) => c.subject)).toEqual(['customer:acme']);
  });

  it('3 of 13 gateways lost (23 %) is no major_outage', () => {
    beatFor(30_000, allAlive());
    beatFor(300_000, without(allAlive(), 'gw-o0', 'gw-o1', 'gw-o2'));
    expect(h.sink.raises('gateway_loss')).toHaveLength(3);
    expect(h.sink.raises('major_outage')).toEqual([]);
  });

  it('4 of 13 gateways lost within the window (31 % >= 30 %) open major_outage (urgent) covering them', () => {
    beatFor(30_000, allAlive());
    const down = ['gw-o0', 'gw-o1', 'gw-o2', 'gw-o3'];
    beatFor(120_000, without(allAlive(), ...down));
    const outage = h.sink.raises('major_outage');
    expect(outage).toHaveLength(1);
    expect(outage[0]).toMatchObject({ subject: 'fleet', severity: 'urgent', classification: 'problem' });
    expect(outage[0]!.covers).toEqual(down);
    beatFor(2_000, allAlive());
    expect(h.sink.clears('major_outage').map((c) => c.subject)).toEqual(['fleet']);
  });

  it('a device reconnecting within the Last Will grace opens nothing; one not back is lost at will + grace', () => {
    beatFor(10_000, allAlive());
    h.ev.onState('gw-3', false, h.clock.now());
    beatFor(20_000, without(allAlive(), 'gw-3'));
    h.ev.onState('gw-3', true, h.clock.now());
    beatFor(60_000, allAlive());
    expect(h.sink.raises()).toEqual([]);
    // Now a will and no return: not lost 1 ms before the grace ends, lost at it.
    h.ev.onState('gw-3', false, h.clock.now());
    const willAt = h.clock.now();
    const rest = without(allAlive(), 'gw-3');
    beatFor(29_999, rest);
    expect(h.sink.raises('gateway_loss')).toEqual([]);
    expect(h.ev.snapshot('gw-3')?.state).toBe('offline');
    beatFor(1, rest);
    expect(h.sink.raises('gateway_loss').map((r) => r.subject)).toEqual(['gw-3']);
    expect(h.ev.snapshot('gw-3')).toMatchObject({ state: 'lost', lostReason: 'will', lostSince: willAt + 30_000 });
  });

  it('a flapping device opens one flapping ticket (3 changes no, 4 yes)', () => {
    beatFor(10_000, allAlive());
    // will + back within the grace = 2 changes each.
    h.ev.onState('gw-3', false, h.clock.now());
    beatFor(5_000, without(allAlive(), 'gw-3'));
    h.ev.onState('gw-3', true, h.clock.now());
    beatFor(5_000, allAlive());
    h.ev.onState('gw-3', false, h.clock.now());
    beatFor(5_000, without(allAlive(), 'gw-3'));
    expect(h.sink.raises('flapping')).toEqual([]); // 3 changes
    h.ev.onState('gw-3', true, h.clock.now());
    beatFor(5_000, allAlive());
    for (let i = 0; i < 3; i++) {
      h.ev.onState('gw-3', false, h.clock.now());
      beatFor(5_000, without(allAlive(), 'gw-3'));
      h.ev.onState('gw-3', true, h.clock.now());
      beatFor(5_000, allAlive());
    }
    const flapping = h.sink.raises('flapping');
    expect(flapping).toHaveLength(1);
    expect(flapping[0]).toMatchObject({ subject: 'gw-3', severity: 'low', classification: 'problem' });
    expect(h.sink.raises('gateway_loss')).toEqual([]);
    // Stable for the window: cleared.
    beatFor(600_000, allAlive());
    expect(h.sink.clears('flapping').map((c) => c.subject)).toEqual(['gw-3']);
  });

  it('after a restart nothing new is raised before a fresh interval; a device lost before it stays lost since then', () => {
    beatFor(30_000, allAlive());
    beatFor(120_000, without(allAlive(), 'gw-3'));
    expect(h.sink.raises('gateway_loss').map((r) => r.subject)).toEqual(['gw-3']);
    const lostSince = h.ev.snapshot('gw-3')!.lostSince;
    // The ingest writer stores heartbeats in device_state; emulate its columns for the devices we beat.
    const upsert = h.db.prepare(
      `INSERT INTO device_state (device_id, last_seen, interval_s) VALUES (?, ?, 30)
       ON CONFLICT(device_id) DO UPDATE SET last_seen = excluded.last_seen, interval_s = excluded.interval_s`,
    );
    for (const id of Object.keys(allAlive())) upsert.run(id, id === 'gw-3' ? T0 : h.clock.now() - 30_000);
    h.ev.stop();

    // The daemon was down for an hour; every device is silent since.
    const clock = new ManualClock(h.clock.now() + 3_600_000);
    const sink = h.sink; // the ticket service keeps its open tickets
    sink.calls.length = 0;
    const restarted = build({ clock, dir: h.dir, sink, db: h.db });
    clock.advance(89_999);
    // gw-3 was lost before the restart (its stored state and `lost` event): still lost since then, its condition
    // re-checked into its open ticket (the sink dedupes); nothing else is raised before a fresh interval.
    expect(sink.calls.map((c) => (c.op === 'raise' ? `${c.report.kind}:${c.report.subject}` : c.op))).toEqual(['gateway_loss:gw-3']);
    expect(restarted.ev.snapshot('gw-3')).toMatchObject({ state: 'lost', lostSince });
    clock.advance(1);
    // The others, silent since the start, are judged lost at start + 90 s; gw-3 is not judged a second time.
    expect(sink.raises('gateway_loss').filter((r) => r.subject === 'gw-3')).toHaveLength(1);
    expect(sink.raises('gateway_loss').length).toBeGreaterThan(1);
    expect(restarted.ev.snapshot('gw-3')).toMatchObject({ state: 'lost', lostSince });
    expect(h.db.prepare("SELECT COUNT(*) AS n FROM events WHERE device_id = 'gw-3' AND kind = 'lost'").get()).toEqual({ n: 1 });
  });

  it('after a restart a device that came back during the downtime clears its old ticket on its first heartbeat', () => {
    beatFor(30_000, allAlive());
    beatFor(120_000, without(allAlive(), 'gw-3'));
    h.ev.stop();
    const clock = new ManualClock(h.clock.now() + 600_000);
    const sink = h.sink;
    sink.calls.length = 0;
    const restarted = build({ clock, dir: h.dir, sink, db: h.db });
    restarted.ev.onHeartbeat('gw-3', hb(), clock.now());
    clock.advance(1_000);
    expect(sink.clears('gateway_loss').map((c) => c.subject)).toEqual(['gw-3']);
    expect(sink.hasOpen(['gateway_loss'], 'gw-3')).toBe(false);
    const events = h.db.prepare("SELECT kind FROM events WHERE device_id = 'gw-3' ORDER BY id").all() as { kind: string }[];
    expect(events.map((e) => e.kind)).toEqual(['online', 'lost', 'back']);
  });

  // RULES.md "Updates and alerting work together", through the one record (InstallGrace, fed with transitions as
  // PatchService does) and the evaluator's inputs as ingest calls them.
  it('a device installing a patch, then restarting after `installed`, opens no loss ticket until the restart grace ends', () => {
    beatFor(30_000, allAlive());
    h.grace.onTransition('gw-3', 'installing', h.clock.now());
    h.ev.onPatchStatus('gw-3', { patchId: 'gw-2.3.2', state: 'installing' }, h.clock.now());
    const rest = without(allAlive(), 'gw-3');
    beatFor(240_000, rest);
    expect(h.sink.raises('gateway_loss')).toEqual([]);
    expect(h.ev.snapshot('gw-3')?.state).toBe('restarting');
    // `installed` arrives (PatchStatus, no heartbeat yet): the grace is now the restart grace, shorter than the
    // install bound; the evaluator judges again at its end, not at the bound.
    const installedAt = h.clock.now();
    h.grace.onTransition('gw-3', 'installed', installedAt);
    h.ev.onPatchStatus('gw-3', { patchId: 'gw-2.3.2', state: 'installed' }, installedAt);
    beatFor(installedAt + 300_000 - 1 - h.clock.now(), rest);
    h.clock.advance(0);
    expect(h.sink.raises('gateway_loss')).toEqual([]);
    beatFor(2_000, rest);
    expect(h.sink.raises('gateway_loss').map((r) => r.subject)).toEqual(['gw-3']);
    expect(h.ev.snapshot('gw-3')?.lostSince).toBeGreaterThanOrEqual(installedAt + 300_000);
  });

  it('a device stuck installing is judged again after the install bound', () => {
    beatFor(30_000, allAlive());
    const since = h.clock.now();
    h.grace.onTransition('gw-3', 'installing', since);
    beatFor(590_000, without(allAlive(), 'gw-3'));
    expect(h.sink.raises('gateway_loss')).toEqual([]);
    expect(h.ev.snapshot('gw-3')?.state).toBe('restarting');
    beatFor(since + 600_000 + 2_000 - h.clock.now(), without(allAlive(), 'gw-3'));
    expect(h.sink.raises('gateway_loss').map((r) => r.subject)).toEqual(['gw-3']);
  });

  it('the first heartbeat after `installed` closes the grace; a repeated `installed` after a reconnect never reopens it', () => {
    beatFor(30_000, allAlive());
    h.grace.onTransition('gw-3', 'installing', h.clock.now());
    beatFor(60_000, without(allAlive(), 'gw-3'));
    h.grace.onTransition('gw-3', 'installed', h.clock.now());
    // Back on the new version: every heartbeat repeats `installed`; PatchService stores no transition for it.
    const back = { ...allAlive(), 'gw-3': { patch: { patchId: 'gw-2.3.2', state: 'installed' as const } } };
    for (let i = 0; i < 3; i++) {
      for (const [id, extraHb] of Object.entries(back)) h.ev.onHeartbeat(id, hb(extraHb), h.clock.now());
      h.grace.onHeartbeat('gw-3', h.clock.now());
      h.ev.onPatchStatus('gw-3', { patchId: 'gw-2.3.2', state: 'installed' }, h.clock.now()); // the repeat on patch/status
      h.clock.advance(30_000);
    }
    expect(h.grace.isInstallingOrRestarting('gw-3', h.clock.now())).toBe(false);
    const lastBeat = h.clock.now() - 30_000;
    beatFor(120_000, without(allAlive(), 'gw-3'));
    // Lost on time: missedHeartbeats x interval after its last heartbeat (3 x 30 s), not the 300 s restart grace.
    expect(h.sink.raises('gateway_loss').map((r) => r.subject)).toEqual(['gw-3']);
    expect(h.ev.snapshot('gw-3')?.lostSince).toBeLessThanOrEqual(lastBeat + 90_000 + settings.tickMs);
  });

  it('a burst of failed CONNECTs opens one fleet security_incident and clears after the window', () => {
    for (let i = 0; i < 19; i++) h.ev.onSecurityEvent({ kind: 'auth_failure', deviceId: `x${i}` }, h.clock.now());
    h.clock.advance(1_000);
    expect(h.sink.raises('security_incident')).toEqual([]);
    h.ev.onSecurityEvent({ kind: 'auth_failure' }, h.clock.now());
    h.clock.advance(1_000);
    for (let i = 0; i < 5; i++) h.ev.onSecurityEvent({ kind: 'auth_failure' }, h.clock.now());
    h.clock.advance(1_000);
    const incidents = h.sink.raises('security_incident');
    expect(incidents).toHaveLength(1);
    expect(incidents[0]).toMatchObject({ subject: 'fleet', severity: 'urgent', classification: 'problem' });
    h.clock.advance(60_000);
    expect(h.sink.clears('security_incident').map((c) => c.subject)).toEqual(['fleet']);
  });

  it('a patch rejected for a bad signature opens a security_incident on that device', () => {
    h.ev.onPatchStatus('gw-2', { patchId: 'p', state: 'rejected', detail: 'manifest expired' }, h.clock.now());
    h.clock.advance(1_000);
    expect(h.sink.raises('security_incident')).toEqual([]);
    h.ev.onPatchStatus('gw-2', { patchId: 'p', state: 'rejected', detail: 'signature does not verify' }, h.clock.now());
    h.clock.advance(1_000);
    expect(h.sink.raises('security_incident').map((r) => r.subject)).toEqual(['gw-2']);
  });

  it('integrity mismatches on 3 devices at once open a fleet security_incident covering them', () => {
    h.integrity.set('2.3.1', `sha256:${'a'.repeat(64)}`);
    const bad = `sha256:${'b'.repeat(64)}`;
    h.ev.onHeartbeat('gw-1', hb({ integrity: `sha256:${'a'.repeat(64)}` }), h.clock.now());
    h.ev.onHeartbeat('gw-2', hb({ integrity: bad }), h.clock.now());
    h.ev.onHeartbeat('gw-3', hb({ integrity: bad }), h.clock.now());
    h.clock.advance(1_000);
    expect(h.sink.raises('security_incident')).toEqual([]);
    h.ev.onHeartbeat('gw-o1', hb({ integrity: bad }), h.clock.now());
    // The same device repeating the same digest is one signal, not three.
    h.ev.onHeartbeat('gw-2', hb({ integrity: bad }), h.clock.now());
    h.clock.advance(1_000);
    const [incident] = h.sink.raises('security_incident');
    expect(incident).toMatchObject({ subject: 'fleet', severity: 'urgent' });
    expect(incident!.covers).toEqual(['gw-2', 'gw-3', 'gw-o1']);
  });

  it('drops a heartbeat from an unknown device and counts it', async () => {
    const metrics = new Registry();
    h.ev.stop();
    h = { ...h, ...build({ db: h.db, dir: h.dir, metrics }) };
    h.ev.onHeartbeat('ghost', hb(), h.clock.now());
    h.clock.advance(1_000);
    expect(h.ev.snapshot('ghost')).toBeUndefined();
    expect(await metrics.getSingleMetricAsString('fleet_health_dropped_total')).toContain('fleet_health_dropped_total{reason="unknown_device"} 1');
  });

  it('ignores a gateway listing a sensor that is not its own, and counts it', async () => {
    const metrics = new Registry();
    h.ev.stop();
    h = { ...h, ...build({ db: h.db, dir: h.dir, metrics }) };
    h.ev.onHeartbeat('gw-2', hb({ sensors: ok('s-1a') }), h.clock.now());
    h.clock.advance(1_000);
    expect(h.ev.snapshot('s-1a')?.state).toBe('unknown');
    expect(await metrics.getSingleMetricAsString('fleet_health_dropped_total')).toContain('reason="sensor_not_child"} 1');
  });

  it('drops a security event of an unknown kind', async () => {
    const metrics = new Registry();
    h.ev.stop();
    h = { ...h, ...build({ db: h.db, dir: h.dir, metrics }) };
    h.ev.onSecurityEvent({ kind: 'bogus' } as never, h.clock.now());
    h.ev.onSecurityEvent({ kind: 'integrity_mismatch' }, h.clock.now());
    h.clock.advance(1_000);
    expect(h.sink.calls).toEqual([]);
    expect(await metrics.getSingleMetricAsString('fleet_health_dropped_total')).toContain('reason="bad_security_event"} 2');
  });

  it('countsByState follows the fleet and the gauge exports it', async () => {
    const metrics = new Registry();
    h.ev.stop();
    h = { ...h, ...build({ db: h.db, dir: h.dir, metrics }) };
    expect(h.ev.countsByState()).toEqual({ unknown: 19, online: 0, offline: 0, restarting: 0, lost: 0 });
    beatFor(30_000, allAlive());
    beatFor(120_000, without(allAlive(), 'gw-3'));
    expect(h.ev.countsByState()).toEqual({ unknown: 0, online: 18, offline: 0, restarting: 0, lost: 1 });
    expect(await metrics.getSingleMetricAsString('fleet_health_devices')).toContain('fleet_health_devices{state="lost"} 1');
  });

  it('a revoked device is forgotten and its condition cleared', () => {
    beatFor(30_000, allAlive());
    beatFor(120_000, without(allAlive(), 'gw-3'));
    h.dir.update('gw-3', { revokedAt: h.clock.now() });
    expect(h.sink.clears('gateway_loss')).toEqual([{ kind: 'gateway_loss', subject: 'gw-3', reason: 'device revoked' }]);
    expect(h.ev.snapshot('gw-3')).toBeUndefined();
  });
});
