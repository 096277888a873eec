import { describe, it, expect, afterEach } from 'vitest';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Registry } from 'prom-client';
import { ManualClock } from '../../src/clock.js';
import { validateConfig } from '../../src/config/load.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { openDatabase, StoreHealth, StoreMonitor, type Database, type SqliteDatabase } from '../../src/db/database.js';
import { silentLogger } from '../../src/log.js';
import { DeviceRegistry } from '../../src/registry/device-registry.js';
import { fiscalYearEnd } from '../../src/subscriptions/fiscal-year.js';
import { IntegrityRegistry } from '../../src/subscriptions/integrity-registry.js';
import { SubscriptionService } from '../../src/subscriptions/subscription-service.js';
import { LatestSoftware } from '../../src/subscriptions/latest-software.js';
import { Outbox } from '../../src/helpdesk/outbox.js';
import { TicketService } from '../../src/tickets/ticket-service.js';
import { HealthEvaluator } from '../../src/health/health-evaluator.js';
import { SqliteCustomerStore } from '../../src/customers/customer-store.js';
import type { Heartbeat, PatchStatus } from '../../src/protocol/types.js';
import { PatchService } from '../../src/patches/patch-service.js';
import { PatchRepository } from '../../src/patches/patch-repository.js';
import { ArtifactStore } from '../../src/patches/artifact-store.js';
import { createPatchMetrics } from '../../src/patches/patch-metrics.js';
import { manifestBytes } from '../../patches/manifest.js';
import { makeKey, manifestFor } from '../helpers/patch-fixtures.js';
import { signBytes } from '../../patches/signing.js';
import { tempDir } from '../helpers/temp-dir.js';

/**
 * Issue 8 with the real parts: the health evaluator on its own timers, the real ticket service, registry,
 * eligibility and outbox on a real SQLite file; time driven by a ManualClock (stalls, wall-clock steps).
 */
const DIGEST = `sha256:${'a'.repeat(64)}`;
const T0 = '2027-06-29T12:00:00.000Z';
const S = 1000;

interface Seed {
  id: string;
  type?: 'gateway' | 'sensor';
  parent?: string;
  customer?: string;
  tier?: 'none' | 'xcare' | 'xcare_pro';
}

const dirs: ReturnType<typeof tempDir>[] = [];
const stops: (() => void)[] = [];
afterEach(() => {
  for (const s of stops.splice(0)) s();
  for (const d of dirs.splice(0)) d.cleanup();
});

function harness(opts: { devices: Seed[]; config?: ConfigInput; db?: SqliteDatabase; clock?: ManualClock; file?: string; online?: string[]; intervals?: Record<string, number> }) {
  const tmp = tempDir('xcare-detect-');
  dirs.push(tmp);
  const config = validateConfig({ health: { tickMs: 100 }, ...opts.config });
  const clock = opts.clock ?? new ManualClock(T0);
  const log = silentLogger();
  const file = opts.file ?? join(tmp.path, 'xcare.db');
  const db = opts.db ?? openDatabase(file);
  if (!opts.db) {
    const insert = db.prepare(
      `INSERT INTO devices (id, type, parent, customer, installer, tier, subscription_start, subscription_end, tags, token_hash, created_at)
       VALUES (?, ?, ?, ?, 'minnovation', ?, '2026-07-01', '2027-06-30', '[]', 'unused', ?)`,
    );
    for (const d of opts.devices) insert.run(d.id, d.type ?? 'gateway', d.parent ?? null, d.customer ?? 'acme', d.tier ?? 'xcare', clock.now());
    // Devices online when the daemon "last stopped" (a restart scenario).
    const state = db.prepare('INSERT INTO device_state (device_id, online, last_seen, interval_s, state_changed_at) VALUES (?, 1, ?, 1, ?)');
    for (const id of opts.online ?? []) state.run(id, clock.now() - 2 * S, clock.now() - 60 * S);
  }
  const metrics = new Registry();
  const registry = new DeviceRegistry({ db, clock, log, fiscalYearEnd, authCacheSize: 0 });
  registry.start();
  const integrity = new IntegrityRegistry({ db, clock });
  if (!integrity.expected('2.3.1')) integrity.register('2.3.1', DIGEST, 'test');
  const latest = new LatestSoftware();
  const subscriptions = new SubscriptionService({
    db,
    clock,
    log,
    config: config.subscriptions,
    directory: registry,
    integrity,
    onDeviceChanged: (id) => registry.reload(id),
    latest: (id) => latest.get(id),
  });
  const outbox = new Outbox({ db, clock });
  const customers = new SqliteCustomerStore({ db, clock });
  const storeHealth = new StoreHealth(() => clock.now());
  const tickets = new TicketService({
    db,
    clock,
    config: config.tickets,
    log,
    directory: registry,
    eligibilityOf: (id) => subscriptions.eligibilityOf(id),
    outbox,
    successEngineerOf: (c) => customers.successEngineerOf(c),
    storeHealth,
  });
  tickets.start();
  // The one install-grace record, wired as src/app.ts does: PatchService records statuses (heartbeat `patch`
  // field and patch/status), the evaluator asks it when a device's grace ends.
  const patchRepo = new PatchRepository({ db });
  if (!patchRepo.exists('gw-2.3.2')) {
    const key = makeKey(tmp.path, 'k');
    const m = manifestFor({ sha256: 'b'.repeat(64), size: 10 }, key, { id: 'gw-2.3.2', version: '2.3.2' });
    // Stored as publishing stores it, signed: offering it builds a PatchOffer from the signatures.
    const signature = signBytes(manifestBytes(m), key.privateKey).toString('base64');
    const signatures = JSON.stringify([{ keyId: key.keyId, signature }]);
    patchRepo.insert({ id: 'gw-2.3.2', version: '2.3.2', manifest: manifestBytes(m), signatures, sha256: 'b'.repeat(64), size: 10, integrity: null, created_at: 0, expires_at: clock.now() + 86_400_000 });
  }
  const patches = new PatchService({
    repo: patchRepo, artifacts: new ArtifactStore({ dir: join(tmp.path, 'artifacts') }), clock, log, results: createPatchMetrics(new Registry()).results,
    releaseKeys: [], threshold: 1, maxArtifactBytes: 1024, registerIntegrity: () => {}, sendToDevice: () => {},
    installGrace: { restartGraceMs: config.health.expectedRestartGraceS * 1000, maxInstallMs: 3_600_000 },
  });
  patches.start();
  const health = new HealthEvaluator({
    clock,
    db,
    log,
    config: config.health,
    directory: registry,
    sink: tickets,
    metrics,
    expectedIntegrity: (v) => integrity.expected(v),
    installGraceUntil: (id, now) => patches.installGraceUntil(id, now),
    storeHealth,
  });
  health.start();
  stops.push(() => {
    health.stop();
    tickets.stop();
  });
  const hb = (over: Partial<Heartbeat> = {}): Heartbeat => ({
    seq: 1,
    ts: '2027-06-29T12:00:00Z',
    intervalS: 1,
    agentVersion: '1.0.0',
    softwareVersion: '2.3.1',
    integrity: DIGEST,
    ...over,
  });
  const beat = (id: string, over: Partial<Heartbeat> = {}) => {
    const h = hb({ intervalS: opts.intervals?.[id] ?? 1, ...over });
    latest.onHeartbeat(id, h);
    health.onHeartbeat(id, h, clock.now());
    if (h.patch) patches.recordStatus(id, h.patch, clock.now());
    patches.noteHeartbeat(id, clock.now());
  };
  /** A patch/status message, to both listeners in the daemon's order. */
  const patchStatus = (id: string, status: PatchStatus) => {
    health.onPatchStatus(id, status, clock.now());
    patches.recordStatus(id, status, clock.now());
  };
  /** Heartbeat `ids` every second for `seconds`, letting the evaluator's timers run. */
  const beatFor = (seconds: number, ids: string[]) => {
    for (let i = 0; i < seconds; i++) {
      for (const id of ids) beat(id);
      clock.advance(S);
    }
  };
  const count = (sql: string, ...args: unknown[]) => (db.prepare(sql).get(...args) as { n: number }).n;
  const gaps = async (cause: string) => (await metrics.getSingleMetric('fleet_health_own_gaps_total')!.get()).values.find((v) => v.labels.cause === cause)?.value ?? 0;
  return { db, file, clock, config, registry, tickets, health, patches, patchStatus, storeHealth, customers, latest, beat, beatFor, count, gaps, subscriptions, metrics };
}

const yieldToLoop = () => new Promise((resolve) => setImmediate(resolve));
const FOUR = ['gw-1', 'gw-2', 'gw-3', 'gw-4'];

describe('issue 8, fault 2: our own stall or a wall-clock step pages nobody', () => {
  it('the daemon stalls 8 s (SIGSTOP) with 4 gateways at 1 s: zero tickets, the gap is logged and counted', async () => {
    const h = harness({ devices: FOUR.map((id) => ({ id })) });
    h.beatFor(10, FOUR);
    // The process stands still; the heartbeats sent meanwhile wait in the socket buffers.
    h.clock.stall(8 * S);
    h.clock.advance(0); // the overdue tick fires late ...
    await yieldToLoop(); // ... yields to I/O, which reads the queued heartbeats
    for (const id of FOUR) h.beat(id);
    h.beatFor(10, FOUR);
    await yieldToLoop();
    expect(h.tickets.unresolved()).toEqual([]);
    expect(h.count('SELECT COUNT(*) AS n FROM tickets')).toBe(0);
    expect(h.count(`SELECT COUNT(*) AS n FROM events WHERE kind = 'lost'`)).toBe(0);
    expect(await h.gaps('stall')).toBe(1);
  });

  it('a stall still finds a gateway that really died: lost a fresh interval after the stall', async () => {
    const h = harness({ devices: FOUR.map((id) => ({ id })) });
    h.beatFor(5, FOUR);
    h.clock.stall(8 * S);
    h.clock.advance(0);
    await yieldToLoop();
    h.beatFor(2, FOUR.slice(1)); // gw-1 died during the stall
    expect(h.tickets.unresolved()).toEqual([]);
    h.beatFor(2, FOUR.slice(1));
    await yieldToLoop();
    expect(h.tickets.unresolved().map((t) => `${t.kind}:${t.subject}`)).toEqual(['gateway_loss:gw-1']);
  });

  it.each([
    ['forward an hour (NTP correction, VM restore)', 3_600_000],
    ['backward ten minutes', -600_000],
  ])('the wall clock steps %s: zero tickets; a real loss is still found on time', async (_name, step) => {
    const h = harness({ devices: FOUR.map((id) => ({ id })) });
    h.beatFor(5, FOUR);
    h.clock.stepWall(step);
    h.beatFor(10, FOUR);
    expect(h.tickets.unresolved()).toEqual([]);
    expect(await h.gaps('wall_step')).toBe(1);
    // gw-4 dies: lost after 3 x 1 s of monotonic time, whatever the wall clock did.
    h.beatFor(1, FOUR.slice(0, 3));
    expect(h.tickets.unresolved()).toEqual([]);
    h.beatFor(2, FOUR.slice(0, 3));
    expect(h.tickets.unresolved().map((t) => t.subject)).toEqual(['gw-4']);
  });
});

describe('issue 8, fault 3: a tick is all or nothing; nothing is lost on a storage fault', () => {
  it('another connection holds the write lock past the busy timeout while a gateway dies: the ticket and events follow the release', () => {
    const h = harness({ devices: FOUR.map((id) => ({ id })) });
    h.db.pragma('busy_timeout = 20'); // keep the test fast; the daemon waits 5 s
    h.beatFor(5, FOUR);
    const other = new BetterSqlite3(h.file);
    other.pragma('busy_timeout = 0');
    other.exec('BEGIN IMMEDIATE');
    h.health.onState('gw-2', false, h.clock.now()); // a Last Will while the store is locked: its `offline` event must survive
    h.beatFor(5, FOUR.slice(2)); // gw-1 and gw-2 silent: both lost (3 x 1 s) while locked
    expect(h.health.snapshot('gw-1')?.state).toBe('lost');
    expect(h.storeHealth.current().map((f) => `${f.source}:${f.reason}`)).toContain('health:locked');
    other.exec('COMMIT');
    h.clock.advance(S);
    expect(h.storeHealth.healthy()).toBe(true);
    expect(h.tickets.unresolved().map((t) => `${t.kind}:${t.subject}`).sort()).toEqual(['gateway_loss:gw-1', 'gateway_loss:gw-2']);
    expect(h.count(`SELECT COUNT(*) AS n FROM events WHERE device_id = 'gw-1' AND kind = 'lost'`)).toBe(1);
    expect(h.count(`SELECT COUNT(*) AS n FROM events WHERE device_id = 'gw-2' AND kind = 'offline'`)).toBe(1);
    expect(h.count(`SELECT COUNT(*) AS n FROM events WHERE device_id = 'gw-2' AND kind = 'lost'`)).toBe(1);
    expect(h.count(`SELECT COUNT(*) AS n FROM device_state WHERE device_id IN ('gw-1', 'gw-2') AND online = 0`)).toBe(2);
    // Once, not once per retried tick.
    expect(h.count(`SELECT COUNT(*) AS n FROM ticket_events WHERE type = 'opened'`)).toBe(2);
    other.close();
  });

  it('a full store (SQLite max_page_count reached) fails the tick; ticket and event follow once there is room', () => {
    const h = harness({ devices: FOUR.map((id) => ({ id })) });
    h.beatFor(5, FOUR);
    const pages = h.db.pragma('page_count', { simple: true }) as number;
    h.db.pragma(`max_page_count = ${pages}`);
    // Fill the events table's last free space, so the tick's next event needs a page the store cannot give.
    const filler = h.db.prepare(`INSERT INTO events (ts, device_id, kind, data) VALUES (0, 'gw-4', 'filler', ?)`);
    for (const size of [200, 20, 0]) {
      expect(() => {
        for (let i = 0; i < 100_000; i++) filler.run('x'.repeat(size));
      }).toThrow(/full/);
    }
    h.beatFor(5, FOUR.slice(1));
    expect(h.storeHealth.current().map((f) => f.reason)).toContain('disk_full');
    expect(h.tickets.unresolved()).toEqual([]);
    h.db.exec(`DELETE FROM events WHERE kind = 'filler'`);
    h.db.pragma('max_page_count = 1000000');
    h.clock.advance(S);
    expect(h.tickets.unresolved().map((t) => t.subject)).toEqual(['gw-1']);
    expect(h.count(`SELECT COUNT(*) AS n FROM events WHERE device_id = 'gw-1' AND kind = 'lost'`)).toBe(1);
    expect(h.storeHealth.healthy()).toBe(true);
  });

  it('a read-only store is reported by the probe with its reason, and recovery clears it', () => {
    const tmp = tempDir('xcare-ro-');
    dirs.push(tmp);
    const file = join(tmp.path, 'xcare.db');
    openDatabase(file).close();
    const ro = new BetterSqlite3(file, { readonly: true });
    const clock = new ManualClock(T0);
    const health = new StoreHealth();
    const metrics = new Registry();
    const monitor = new StoreMonitor({ db: ro, clock, log: silentLogger(), health, metrics, intervalMs: 1000 });
    monitor.start();
    expect(health.current()).toMatchObject([{ source: 'probe', reason: 'read_only' }]);
    monitor.stop();
    ro.close();
    const rw = openDatabase(file);
    const again = new StoreMonitor({ db: rw, clock, log: silentLogger(), health, intervalMs: 1000 });
    again.start();
    expect(health.healthy()).toBe(true);
    again.stop();
    rw.close();
  });
});

describe('issue 8, fault 5: our own restart opens nothing', () => {
  const TEN = Array.from({ length: 10 }, (_, i) => `gw-${i}`);

  it('a herd that trickles back over 55 s after a restart opens no loss and no flapping; one never back is lost after the grace', async () => {
    const h = harness({ devices: TEN.map((id) => ({ id })), online: TEN });
    const back: string[] = [];
    for (let s = 0; s < 58; s++) {
      // One device returns every 6 s; some drop again once (a CONNACK timeout and a Last Will) before staying.
      if (s % 6 === 0 && back.length < 9) {
        const id = TEN[back.length]!;
        back.push(id);
        h.beat(id);
        h.health.onState(id, false, h.clock.now());
        h.health.onState(id, true, h.clock.now());
        h.health.onState(id, false, h.clock.now());
      }
      h.beatFor(1, back);
    }
    expect(h.tickets.unresolved()).toEqual([]);
    expect(h.health.startupGraceEndsAt()).not.toBeNull();
    // gw-9 never comes back: judged once the herd has been quiet for herdQuietS.
    for (let s = 0; s < 20 && h.tickets.unresolved().length === 0; s++) h.beatFor(1, back);
    expect(h.tickets.unresolved().map((t) => `${t.kind}:${t.subject}`)).toEqual(['gateway_loss:gw-9']);
  });
});

describe('issue 8, fault 6: a child is never delivered before its parent', () => {
  it('a gateway within its Last Will grace: its frozen sensor is not judged alone; only the gateway ticket opens', () => {
    const h = harness({
      devices: [{ id: 'gw-1' }, { id: 's-1', type: 'sensor', parent: 'gw-1' }, { id: 'gw-2' }],
      config: { health: { tickMs: 100, lastWillGraceS: 10 } },
      intervals: { 'gw-1': 30 },
    });
    h.beatFor(5, ['gw-1', 's-1', 'gw-2']);
    h.health.onState('gw-1', false, h.clock.now());
    for (let s = 0; s < 9; s++) h.beatFor(1, ['gw-2']);
    expect(h.tickets.unresolved()).toEqual([]);
    h.beatFor(3, ['gw-2']);
    expect(h.tickets.unresolved().map((t) => `${t.kind}:${t.subject}`)).toEqual(['gateway_loss:gw-1']);
    expect(h.tickets.unresolved()[0]!.covers).toEqual(['s-1']);
    expect(h.count(`SELECT COUNT(*) AS n FROM tickets WHERE kind = 'sensor_issue'`)).toBe(0);
  });

  it('a gateway back within its grace: the sensor that really froze is judged then, after the gateway', () => {
    const h = harness({
      devices: [{ id: 'gw-1' }, { id: 's-1', type: 'sensor', parent: 'gw-1' }],
      config: { health: { tickMs: 100, lastWillGraceS: 10 } },
      intervals: { 'gw-1': 30 },
    });
    h.beatFor(5, ['gw-1', 's-1']);
    h.health.onState('gw-1', false, h.clock.now());
    h.beatFor(6, []);
    expect(h.tickets.unresolved()).toEqual([]);
    h.beatFor(3, ['gw-1']);
    expect(h.tickets.unresolved().map((t) => `${t.kind}:${t.subject}`)).toEqual(['sensor_issue:s-1']);
  });
});

describe('issue 8, fault 7: eligibility from the heartbeat that raised the ticket', () => {
  it('the very first heartbeat (digest registered, failing subsystem) opens a ticket judged eligible, before any device_state row', () => {
    const h = harness({ devices: [{ id: 'gw-1', tier: 'xcare_pro' }] });
    expect(h.count(`SELECT COUNT(*) AS n FROM device_state WHERE device_id = 'gw-1'`)).toBe(0);
    h.beat('gw-1', { subsystems: [{ name: 'modbus', ok: false, detail: 'timeout' }] });
    h.clock.advance(S);
    const [t] = h.tickets.unresolved();
    expect(t).toMatchObject({ kind: 'gateway_partial', eligible: true, tier: 'xcare_pro', band: 'paid', ineligibleReasons: [] });
  });
});

describe('issue 8, faults 8-10 and customers: tickets against people and time', () => {
  it('fault 8: a paid ticket opened before the June 30 expiry stays paid and xcare when updated after it; reasons record the expiry', () => {
    const h = harness({ devices: [{ id: 'gw-1' }] });
    h.beat('gw-1', { subsystems: [{ name: 'modbus', ok: false, detail: 'timeout' }] });
    h.clock.advance(S);
    expect(h.tickets.unresolved()[0]).toMatchObject({ band: 'paid', tier: 'xcare' });
    h.clock.stepWall(Date.parse('2027-07-01T08:00:00.000Z') - h.clock.now()); // the daemon's date passes June 30
    h.beat('gw-1', { subsystems: [{ name: 'modbus', ok: false, detail: 'bus error' }, { name: 'lte', ok: false }] });
    h.clock.advance(S);
    const t = h.tickets.unresolved()[0]!;
    expect(t).toMatchObject({ band: 'paid', tier: 'xcare', eligible: true });
    expect(t.ineligibleReasons.join(' ')).toMatch(/expired on 2027-06-30/);
    expect(h.tickets.events(t.id).map((e) => e.type)).toContain('updated');
  });

  it('fault 9: over the fair-use cap, a machine event folds into the newest automatic ticket, never into a person\'s question', () => {
    const h = harness({ devices: [{ id: 'gw-1' }], config: { health: { tickMs: 100 }, tickets: { maxTicketsPerDay: 1, reopenWindowS: 1, resolveAfterS: 1 } } });
    h.beat('gw-1', { subsystems: [{ name: 'modbus', ok: false }] });
    h.clock.advance(S);
    const auto = h.tickets.unresolved()[0]!;
    const question = h.tickets.openByPerson({ subject: 'gw-1', classification: 'consultative', summary: 'how do I rotate tokens?' });
    h.beatFor(5, ['gw-1']); // healthy: the automatic ticket resolves, the question stays
    expect(h.tickets.get(auto.id)?.status).toBe('resolved');
    // The gateway dies: over the cap (1 a day), folded into the automatic ticket, not the newer question.
    h.beatFor(5, []);
    expect(h.tickets.get(question.id)).toMatchObject({ status: 'open', severity: 'low', kind: 'manual' });
    expect(h.tickets.events(question.id).map((e) => e.type)).toEqual(['opened']);
    expect(h.tickets.get(auto.id)).toMatchObject({ status: 'open', severity: 'medium' });
    expect(h.tickets.events(auto.id).map((e) => e.type)).toContain('folded');
    // The gateway returns: the machine resolves its own ticket, never the person's.
    h.beatFor(5, ['gw-1']);
    expect(h.tickets.get(auto.id)?.status).toBe('resolved');
    expect(h.tickets.get(question.id)?.status).toBe('open');
  });

  it('fault 10: a person resolves a ticket whose gateway is still lost: it reopens at the next evaluation, saying so', () => {
    const h = harness({ devices: FOUR.map((id) => ({ id })) });
    h.beatFor(5, FOUR);
    h.beatFor(4, FOUR.slice(1));
    const [t] = h.tickets.unresolved();
    expect(t).toMatchObject({ kind: 'gateway_loss', subject: 'gw-1' });
    h.tickets.resolve(t!.id, 'looked fine to me');
    expect(h.tickets.get(t!.id)?.status).toBe('resolved');
    h.beatFor(1, FOUR.slice(1));
    expect(h.tickets.get(t!.id)?.status).toBe('open');
    const reopened = h.tickets.events(t!.id).find((e) => e.type === 'reopened');
    expect(reopened?.data).toMatchObject({ cause: 'resolved_while_holding' });
  });

  it('customers: an xcare_pro ticket and its helpdesk payload carry the customer\'s success engineer', async () => {
    const h = harness({ devices: [{ id: 'gw-1', tier: 'xcare_pro', customer: 'acme' }, { id: 'gw-2', tier: 'xcare', customer: 'acme' }] });
    await h.customers.set({ name: 'acme', engineerName: 'Ada Lovelace', engineerEmail: 'ada@minnovation.example', engineerPhone: '+44 20 7946 0000' });
    h.beatFor(3, ['gw-1', 'gw-2']);
    h.beat('gw-1', { subsystems: [{ name: 'modbus', ok: false }] });
    h.beat('gw-2', { subsystems: [{ name: 'modbus', ok: false }] });
    h.clock.advance(S);
    const pro = h.tickets.queue().find((q) => q.subject === 'gw-1')!;
    const plain = h.tickets.queue().find((q) => q.subject === 'gw-2')!;
    expect(pro.successEngineer).toEqual({ name: 'Ada Lovelace', email: 'ada@minnovation.example', phone: '+44 20 7946 0000' });
    expect(plain.successEngineer).toBeUndefined();
    const payload = JSON.parse((h.db.prepare(`SELECT payload FROM outbox WHERE ticket_id = ? ORDER BY id LIMIT 1`).get(pro.id) as { payload: string }).payload);
    expect(payload.ticket.successEngineer.name).toBe('Ada Lovelace');
  });
});

describe('the one install-grace record (PatchService) follows RULES.md "Updates and alerting work together"', () => {
  it('a patch state repeated after a reconnect (`installed`, heartbeat and patch/status) opens no grace: a kill -9 is lost on time', () => {
    const h = harness({ devices: FOUR.map((id) => ({ id })) });
    h.beatFor(3, FOUR);
    void h.patches.offer('gw-1', 'gw-2.3.2'); // states count only for a patch the device was offered
    // A real install first: installing -> installed -> back on the new version.
    h.patchStatus('gw-1', { patchId: 'gw-2.3.2', state: 'installing' });
    h.beatFor(5, FOUR.slice(1));
    h.patchStatus('gw-1', { patchId: 'gw-2.3.2', state: 'installed' });
    h.beat('gw-1', { patch: { patchId: 'gw-2.3.2', state: 'installed' } });
    h.beatFor(3, FOUR);
    expect(h.tickets.unresolved()).toEqual([]);
    // The agent reconnects and repeats its latest patch state.
    h.patchStatus('gw-1', { patchId: 'gw-2.3.2', state: 'installed' });
    h.beat('gw-1', { patch: { patchId: 'gw-2.3.2', state: 'installed' } });
    h.beatFor(1, FOUR);
    h.beatFor(4, FOUR.slice(1)); // then it dies
    expect(h.tickets.unresolved().map((t) => t.subject)).toEqual(['gw-1']);
  });

  it('installing -> installed -> its first heartbeat closes the grace; later silence is lost on time, not 5 min later', () => {
    const h = harness({ devices: FOUR.map((id) => ({ id })) });
    h.beatFor(3, FOUR);
    void h.patches.offer('gw-1', 'gw-2.3.2'); // states count only for a patch the device was offered
    h.patchStatus('gw-1', { patchId: 'gw-2.3.2', state: 'installing' });
    h.beatFor(20, FOUR.slice(1)); // restarting: silent, no ticket
    expect(h.tickets.unresolved()).toEqual([]);
    expect(h.health.snapshot('gw-1')?.state).toBe('restarting');
    h.patchStatus('gw-1', { patchId: 'gw-2.3.2', state: 'installed' });
    h.patchStatus('gw-1', { patchId: 'gw-2.3.2', state: 'installed' }); // a repeat: nothing
    h.beatFor(3, FOUR); // back on the new version: the grace is over
    h.beatFor(4, FOUR.slice(1));
    expect(h.tickets.unresolved().map((t) => t.subject)).toEqual(['gw-1']);
  });
});

describe('auto-resolve runs on the monotonic clock too', () => {
  it('a wall-clock step forward an hour neither resolves a cleared ticket early nor loses its resolution', () => {
    const h = harness({ devices: FOUR.map((id) => ({ id })), config: { health: { tickMs: 100 }, tickets: { resolveAfterS: 60 } } });
    h.beatFor(3, FOUR);
    h.beatFor(4, FOUR.slice(2)); // gw-1 and gw-2 lost
    const [a, b] = ['gw-1', 'gw-2'].map((id) => h.tickets.unresolved().find((t) => t.subject === id)!);
    h.beatFor(2, ['gw-1', 'gw-3', 'gw-4']); // gw-1 back: its ticket resolves 60 s later
    h.beatFor(30, ['gw-1', 'gw-3', 'gw-4']);
    h.beatFor(2, FOUR); // gw-2 back 30 s later
    h.clock.stepWall(3_600_000);
    h.beatFor(30, FOUR); // gw-1's ticket is due: resolved; gw-2's is not, whatever the wall clock says
    expect(h.tickets.get(a!.id)?.status).toBe('resolved');
    expect(h.tickets.get(b!.id)?.status).toBe('open');
    h.beatFor(32, FOUR);
    expect(h.tickets.get(b!.id)?.status).toBe('resolved');
  });
});

describe('the aftermath of our own stall is not flapping', () => {
  it('after an 8 s stall, devices dropped by their keepalive reconnect (will, online, will, online): no flapping ticket', async () => {
    const h = harness({ devices: FOUR.map((id) => ({ id })) });
    h.beatFor(5, FOUR);
    h.clock.stall(8 * S);
    h.clock.advance(0);
    await yieldToLoop();
    for (let i = 0; i < 3; i++) {
      for (const id of FOUR) {
        h.health.onState(id, false, h.clock.now());
        h.health.onState(id, true, h.clock.now());
      }
      h.beatFor(1, FOUR);
    }
    h.beatFor(5, FOUR);
    expect(h.tickets.unresolved()).toEqual([]);
  });
});

describe('issue 8: a device lost before our restart stays lost since its original time', () => {
  const STOPCO = ['g1', 'g2', 'g3'];
  const ALL = [...STOPCO, 'g4', 'g5'];
  const seeds = ALL.map((id) => ({ id, customer: STOPCO.includes(id) ? 'stopco' : 'acme' }));

  /** kill -9 and start again: the first instance's timers die with it, a new one opens the same file. */
  function restart(h: ReturnType<typeof harness>, downS: number) {
    // What the ingest writer stores of each heartbeat (this harness has none): last_seen and interval_s.
    const ingest = h.db.prepare('UPDATE device_state SET last_seen = ?, interval_s = 1 WHERE device_id = ?');
    for (const id of ALL) ingest.run(h.health.snapshot(id)!.lastSeen, id);
    h.health.stop();
    h.tickets.stop();
    h.db.close();
    h.clock.advance(downS * S);
    return harness({ devices: [], db: openDatabase(h.file), clock: h.clock });
  }

  it('g1 lost, daemon restarted, two more stopco gateways lost ~2 min later: no major_outage, one `lost` event, lostSince kept', () => {
    const h = harness({ devices: seeds });
    h.beatFor(5, ALL);
    h.beatFor(60, ALL.filter((id) => id !== 'g1'));
    expect(h.tickets.unresolved().map((t) => `${t.kind}:${t.subject}`)).toEqual(['gateway_loss:g1']);
    const lostAt = h.health.snapshot('g1')!.lostSince!;
    expect(lostAt).not.toBeNull();
    const g1Outbox = `SELECT COUNT(*) AS n FROM outbox o JOIN tickets t ON t.id = o.ticket_id WHERE t.subject = 'g1'`;
    const delivered = h.count(g1Outbox);

    const h2 = restart(h, 3);
    const others = ALL.filter((id) => id !== 'g1');
    h2.beatFor(70, others);
    expect(h2.health.startupGraceEndsAt()).toBeNull();
    expect(h2.health.snapshot('g1')).toMatchObject({ state: 'lost', lostSince: lostAt });
    // The restart sends the helpdesk nothing about g1.
    expect(h2.count(g1Outbox)).toBe(delivered);
    // g2 and g3 go silent: lost > correlationWindowS after g1's original loss, so they are no outage with it.
    h2.beatFor(15, ['g4', 'g5']);
    const kinds = h2.tickets.unresolved().map((t) => `${t.kind}:${t.subject}`).sort();
    expect(kinds).toEqual(['gateway_loss:g1', 'gateway_loss:g2', 'gateway_loss:g3']);
    expect(h2.count(`SELECT COUNT(*) AS n FROM tickets WHERE kind IN ('major_outage', 'cloud_loss_complete', 'cloud_loss_partial')`)).toBe(0);
    expect(h2.count(`SELECT COUNT(*) AS n FROM events WHERE device_id = 'g1' AND kind = 'lost'`)).toBe(1);
    expect(h2.health.snapshot('g1')!.lostSince).toBe(lostAt);
    expect(h2.count(`SELECT COUNT(*) AS n FROM tickets WHERE subject = 'g1'`)).toBe(1);
  });

  it('a gateway lost before the restart that comes back afterwards is `back` once, never lost twice', () => {
    const h = harness({ devices: seeds });
    h.beatFor(5, ALL);
    h.beatFor(10, ALL.filter((id) => id !== 'g1'));
    const h2 = restart(h, 3);
    h2.beatFor(5, ALL);
    expect(h2.health.snapshot('g1')).toMatchObject({ state: 'online', lostSince: null });
    expect(h2.count(`SELECT COUNT(*) AS n FROM events WHERE device_id = 'g1' AND kind = 'back'`)).toBe(1);
    expect(h2.count(`SELECT COUNT(*) AS n FROM events WHERE device_id = 'g1' AND kind = 'lost'`)).toBe(1);
    expect(h2.tickets.unresolved().map((t) => `${t.kind}:${t.subject}`)).toEqual(['gateway_loss:g1']);
  });
});

describe('RULES.md: a child ticket is never delivered before the parent that would inhibit it (outbox order)', () => {
  /** The outbox's `opened` rows in queue order, as `kind:subject`, and each ticket's parent. */
  function openedOrder(h: ReturnType<typeof harness>) {
    return h.db
      .prepare(
        `SELECT t.kind || ':' || t.subject AS name, t.id AS id, t.parent_id AS parent FROM outbox o JOIN tickets t ON t.id = o.ticket_id
         WHERE o.event_type = 'opened' ORDER BY o.id`,
      )
      .all() as { name: string; id: number; parent: number | null }[];
  }

  it('a customer loses all its gateways in one tick: cloud_loss_complete is queued before the gateway_loss tickets it covers', () => {
    const h = harness({ devices: [{ id: 'c-1', customer: 'stopco' }, { id: 'c-2', customer: 'stopco' }, ...['a-1', 'a-2', 'a-3', 'a-4', 'a-5', 'a-6'].map((id) => ({ id }))] });
    const acme = ['a-1', 'a-2', 'a-3', 'a-4', 'a-5', 'a-6'];
    h.beatFor(5, [...acme, 'c-1', 'c-2']);
    h.beatFor(10, acme);
    const rows = openedOrder(h);
    expect(rows.map((r) => r.name)).toEqual(['cloud_loss_complete:customer:stopco', 'gateway_loss:c-1', 'gateway_loss:c-2']);
    expect(rows.slice(1).map((r) => r.parent)).toEqual([rows[0]!.id, rows[0]!.id]);
  });

  it('a major outage: major_outage first, then the customer ticket, then the gateway tickets, all attached', () => {
    const h = harness({ devices: ['g-1', 'g-2', 'g-3', 'g-4'].map((id) => ({ id })) });
    h.beatFor(5, ['g-1', 'g-2', 'g-3', 'g-4']);
    h.beatFor(10, []);
    const rows = openedOrder(h);
    expect(rows.slice(0, 2).map((r) => r.name)).toEqual(['major_outage:fleet', 'cloud_loss_complete:customer:acme']);
    // The gateways among themselves come in deadline order.
    expect(rows.slice(2).map((r) => r.name).sort()).toEqual(['gateway_loss:g-1', 'gateway_loss:g-2', 'gateway_loss:g-3', 'gateway_loss:g-4']);
    for (const r of rows.slice(2)) expect(r.parent).toBe(rows[0]!.id);
  });
});
