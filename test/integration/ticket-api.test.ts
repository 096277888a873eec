import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { ManualClock } from '../../src/clock.js';
import { openDatabase, type Database } from '../../src/db/database.js';
import { silentLogger } from '../../src/log.js';
import { validateConfig } from '../../src/config/load.js';
import { DeviceRegistry } from '../../src/registry/device-registry.js';
import { fiscalYearEnd } from '../../src/subscriptions/fiscal-year.js';
import { IntegrityRegistry } from '../../src/subscriptions/integrity-registry.js';
import { SubscriptionService } from '../../src/subscriptions/subscription-service.js';
import { Outbox } from '../../src/helpdesk/outbox.js';
import { TicketService } from '../../src/tickets/ticket-service.js';
import { AUTOMATIC_TICKETS } from '../../src/tickets/types.js';
import { registerTicketMetrics } from '../../src/metrics/ticket-metrics.js';
import { Router } from '../../src/http/router.js';
import { HttpServer } from '../../src/http/server.js';
import { registerTicketRoutes } from '../../src/http/routes/tickets.js';
import { registerSubscriptionRoutes } from '../../src/http/routes/subscriptions.js';
import { createCliContext } from '../../src/cli/cli-context.js';
import { commands as ticketCommands } from '../../src/cli/commands/tickets.js';
import { commands as subscriptionCommands } from '../../src/cli/commands/subscription.js';
import { CliError, type Command } from '../../src/cli/command.js';

const TOKEN = 'test-admin-token-0123456789';
const DIGEST = `sha256:${'d'.repeat(64)}`;

let dir: string;
let file: string;
let db: Database;
let clock: ManualClock;
let registry: DeviceRegistry;
let tickets: TicketService;
let http: HttpServer;
let metrics: Registry;
let base: string;

async function api(method: string, path: string, body?: unknown, token: string | null = TOKEN) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

async function cli(argv: string[], json = false): Promise<string> {
  let out = '';
  const all: Command[] = [...ticketCommands, ...subscriptionCommands];
  const command = all
    .filter((c) => c.name.every((w, i) => argv[i] === w))
    .sort((a, b) => b.name.length - a.name.length)[0];
  if (!command) throw new Error(`no command ${argv.join(' ')}`);
  const ctx = createCliContext({ url: base, token: TOKEN, json, env: {}, cwd: dir, out: (s) => (out += s) });
  await command.run(argv.slice(command.name.length), ctx);
  return out;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'xcare-ticket-api-'));
  file = join(dir, 'fleet.db');
  const config = validateConfig({});
  clock = new ManualClock('2026-11-26T10:00:00.000Z');
  const log = silentLogger();
  db = openDatabase(file);
  const insert = db.prepare(
    `INSERT INTO devices (id, type, parent, customer, installer, tier, subscription_start, subscription_end, tags, token_hash, created_at)
     VALUES (?, 'gateway', NULL, ?, 'minnovation', ?, ?, ?, '[]', 'unused', 0)`,
  );
  insert.run('gw-a', 'acme', 'xcare', '2026-07-01', '2027-06-30');
  insert.run('gw-b', 'acme', 'xcare_pro', '2026-07-01', '2027-06-30');
  insert.run('gw-c', 'beta', 'none', null, null);
  insert.run('gw-old', 'beta', 'xcare', '2025-07-01', '2026-06-30');
  for (const id of ['gw-a', 'gw-b', 'gw-c']) {
    db.prepare('INSERT INTO device_state (device_id, software_version, integrity) VALUES (?, ?, ?)').run(id, '2.3.1', DIGEST);
  }
  registry = new DeviceRegistry({ db, clock, log, fiscalYearEnd, authCacheSize: 0 });
  registry.start();
  const integrity = new IntegrityRegistry({ db, clock });
  integrity.register('2.3.1', DIGEST, 'test');
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
  tickets = new TicketService({ db, clock, config: config.tickets, log, directory: registry, eligibilityOf: (id) => subscriptions.eligibilityOf(id), outbox });
  tickets.start();
  metrics = new Registry();
  registerTicketMetrics({ registry: metrics, db, clock, expiringWithinDays: config.subscriptions.expiringWithinDays });
  const router = new Router();
  registerTicketRoutes(router, { tickets, outbox });
  registerSubscriptionRoutes(router, { subscriptions, integrity });
  http = new HttpServer({ router, log, host: '127.0.0.1', port: 0, adminToken: TOKEN });
  await http.start();
  base = `http://127.0.0.1:${http.port()}`;
});

afterAll(async () => {
  tickets.stop();
  await http.stop();
  if (db.open) db.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('tickets over HTTP (PROTOCOL.md "HTTP")', () => {
  it('GET /api/v1/tickets?status=open returns the queue in priority order with band, score, severity, tier and age', async () => {
    tickets.raise({ kind: 'security_incident', subject: 'gw-c', ...AUTOMATIC_TICKETS.security_incident, summary: 'ACL violations' });
    tickets.raise({ kind: 'flapping', subject: 'gw-a', ...AUTOMATIC_TICKETS.flapping, summary: 'flapping' });
    tickets.raise({ kind: 'gateway_loss', subject: 'gw-b', ...AUTOMATIC_TICKETS.gateway_loss, summary: 'silent' });
    clock.advance(120_000);
    const { status, body } = await api('GET', '/api/v1/tickets?status=open');
    expect(status).toBe(200);
    expect(body.tickets.map((t: any) => [t.rank, t.subject, t.band, t.severity, t.tier, t.ageS])).toEqual([
      [1, 'gw-b', 'paid', 'medium', 'xcare_pro', 120],
      [2, 'gw-a', 'paid', 'low', 'xcare', 120],
      [3, 'gw-c', 'discretionary', 'urgent', 'none', 120],
    ]);
    expect(body.tickets[0].score).toBeCloseTo(212.5 + 5 * (120 / 3600), 2);
  });

  it('POST /api/v1/tickets opens a consultative ticket at low; ack and resolve with a reason; show has the history', async () => {
    const opened = await api('POST', '/api/v1/tickets', { subject: 'gw-a', classification: 'consultative', summary: 'how to add sensors' });
    expect(opened.status).toBe(201);
    expect(opened.body.ticket).toMatchObject({ severity: 'low', classification: 'consultative', kind: 'manual', eligible: true, tier: 'xcare' });
    const id = opened.body.ticket.id;
    expect((await api('POST', `/api/v1/tickets/${id}/ack`)).body.ticket.status).toBe('acknowledged');
    const resolved = await api('POST', `/api/v1/tickets/${id}/resolve`, { reason: 'answered' });
    expect(resolved.body.ticket).toMatchObject({ status: 'resolved', resolveReason: 'answered' });
    const shown = await api('GET', `/api/v1/tickets/${id}`);
    expect(shown.body.events.map((e: any) => e.type)).toEqual(['opened', 'acknowledged', 'resolved']);
    expect(shown.body.ticket).toMatchObject({ band: 'paid', id });
  });

  it('status=all includes resolved tickets; filters narrow the queue', async () => {
    const all = await api('GET', '/api/v1/tickets?status=all');
    expect(all.body.tickets.some((t: any) => t.status === 'resolved')).toBe(true);
    const urgent = await api('GET', '/api/v1/tickets?severity=urgent');
    expect(urgent.body.tickets.map((t: any) => t.subject)).toEqual(['gw-c']);
    const acme = await api('GET', '/api/v1/tickets?customer=acme&kind=flapping');
    expect(acme.body.tickets.map((t: any) => t.subject)).toEqual(['gw-a']);
  });

  it.each([
    ['an unknown status', 'GET', '/api/v1/tickets?status=closed', undefined, 400],
    ['an unknown severity filter', 'GET', '/api/v1/tickets?severity=critical', undefined, 400],
    ['an unknown kind filter', 'GET', '/api/v1/tickets?kind=volcano', undefined, 400],
    ['a non-numeric id', 'GET', '/api/v1/tickets/abc', undefined, 400],
    ['an unknown id', 'GET', '/api/v1/tickets/99999', undefined, 404],
    ['ack of an unknown id', 'POST', '/api/v1/tickets/99999/ack', undefined, 404],
    ['resolve without a reason', 'POST', '/api/v1/tickets/1/resolve', {}, 400],
    ['resolve with a non-object body', 'POST', '/api/v1/tickets/1/resolve', '[1]', 400],
    ['resolve with broken JSON', 'POST', '/api/v1/tickets/1/resolve', '{"reason":', 400],
    ['open without a classification', 'POST', '/api/v1/tickets', { subject: 'gw-a', summary: 'x' }, 400],
    ['open a problem without severity', 'POST', '/api/v1/tickets', { subject: 'gw-a', classification: 'problem', summary: 'x' }, 400],
    ['open on an unknown device', 'POST', '/api/v1/tickets', { subject: 'nope', classification: 'consultative', summary: 'x' }, 400],
    ['outbox with an unknown state', 'GET', '/api/v1/outbox?state=lost', undefined, 400],
    ['retry of an outbox row that is not dead', 'POST', '/api/v1/outbox/1/retry', undefined, 400],
  ])('%s: refused with a JSON error, nothing changed', async (_name, method, path, body, expected) => {
    const before = (db.prepare('SELECT COUNT(*) AS n FROM ticket_events').get() as { n: number }).n;
    const res = await api(method, path, body);
    expect(res.status).toBe(expected);
    expect(typeof res.body.error).toBe('string');
    expect((db.prepare('SELECT COUNT(*) AS n FROM ticket_events').get() as { n: number }).n).toBe(before);
  });

  it('needs the admin token', async () => {
    expect((await api('GET', '/api/v1/tickets', undefined, null)).status).toBe(401);
    expect((await api('GET', '/api/v1/tickets', undefined, 'wrong-token')).status).toBe(401);
  });

  it('GET /api/v1/outbox lists pending events (no webhook configured here)', async () => {
    const res = await api('GET', '/api/v1/outbox?state=pending&limit=5');
    expect(res.body.pending).toBeGreaterThan(0);
    expect(res.body.entries).toHaveLength(5);
    expect(res.body.entries[0].idempotencyKey).toMatch(/^xcare-ticket-\d+-event-\d+$/);
  });
});

describe('subscriptions, renewal and integrity over HTTP', () => {
  it('GET /api/v1/subscriptions/quote prices pro rata to June 30', async () => {
    const res = await api('GET', '/api/v1/subscriptions/quote?tier=xcare&start=2026-11-27&devices=3');
    expect(res.body.quote).toMatchObject({ amount: 213.04, end: '2027-06-30', daysCovered: 216, daysInFiscalYear: 365, currency: 'EUR' });
  });

  // Found from outside: years before 100 went through Date.UTC, which reads 0-99 as 1900-1999, so a quote for
  // 0100-01-01 priced a fiscal year of -693,595 days: a negative amount (-0.03). Every four-digit year prices right.
  it.each([
    ['0000-01-01', '0000-06-30', 182, 366],
    ['0050-07-01', '0051-06-30', 365, 365],
    ['0099-07-01', '0100-06-30', 365, 365],
    ['0100-01-01', '0100-06-30', 181, 365],
    ['0103-07-01', '0104-06-30', 366, 366],
    ['9999-07-01', '10000-06-30', 366, 366],
  ])('quote from %s runs to %s over %i of %i days, never a negative price', async (start, end, covered, yearDays) => {
    const res = await api('GET', `/api/v1/subscriptions/quote?tier=xcare&start=${start}`);
    if (end.length > 10) {
      expect(res.status).toBe(400); // a June 30 past 9999 cannot be written as a date
      return;
    }
    expect(res.body.quote).toMatchObject({ end, daysCovered: covered, daysInFiscalYear: yearDays });
    expect(res.body.quote.amount).toBe(Math.round((12000 * covered) / yearDays) / 100);
  });

  it.each([
    ['tier=none&start=2026-11-27'],
    ['tier=xcare&start=2027-02-29'],
    ['tier=xcare'],
    ['start=2026-11-27'],
    ['tier=xcare&start=2026-11-27&devices=0'],
    ['tier=xcare&start=2026-11-27&devices=two'],
  ])('quote with %s is refused with 400', async (query) => {
    expect((await api('GET', `/api/v1/subscriptions/quote?${query}`)).status).toBe(400);
  });

  it('POST /api/v1/devices/:id/renew writes the new June 30 and the registry cache follows', async () => {
    const res = await api('POST', '/api/v1/devices/gw-a/renew', { to: '2028-06-30' });
    expect(res.status).toBe(200);
    expect(res.body.device.subscriptionEnd).toBe('2028-06-30');
    expect(res.body.quote.amount).toBe(120);
    expect(registry.get('gw-a')!.subscriptionEnd).toBe('2028-06-30');
    expect((db.prepare(`SELECT subscription_end AS e FROM devices WHERE id = 'gw-a'`).get() as { e: string }).e).toBe('2028-06-30');
  });

  it('renewing a lapsed subscription restarts it today, pro rata', async () => {
    const res = await api('POST', '/api/v1/devices/gw-old/renew', { to: '2027-06-30' });
    expect(res.body.device).toMatchObject({ subscriptionStart: '2026-11-26', subscriptionEnd: '2027-06-30' });
    expect(res.body.quote.daysCovered).toBe(217);
  });

  it('renewing tier none needs a tier; unknown devices are 404', async () => {
    expect((await api('POST', '/api/v1/devices/gw-c/renew', { to: '2027-06-30' })).status).toBe(400);
    expect((await api('POST', '/api/v1/devices/nope/renew', { to: '2027-06-30' })).status).toBe(404);
  });

  // Issue 10 fault 7: a retried renewal billed twice.
  it('POST /renew repeated with the same `to` answers renewed:false, charged 0, and changes nothing', async () => {
    const again = await api('POST', '/api/v1/devices/gw-a/renew', { to: '2028-06-30' });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ renewed: false, charged: 0, to: '2028-06-30', device: { subscriptionEnd: '2028-06-30' } });
    expect((db.prepare(`SELECT COUNT(*) AS n FROM events WHERE device_id = 'gw-a' AND kind = 'renewed'`).get() as { n: number }).n).toBe(1);
  });

  it('POST /renew without `to` is 400 naming it; with a skipped year 409; with a non-string 400', async () => {
    const missing = await api('POST', '/api/v1/devices/gw-a/renew', {});
    expect(missing.status).toBe(400);
    expect(missing.body.error).toContain('to: required');
    expect((await api('POST', '/api/v1/devices/gw-a/renew', { to: '2030-06-30' })).status).toBe(409);
    expect((await api('POST', '/api/v1/devices/gw-a/renew', { to: 2029 })).status).toBe(400);
    expect(registry.get('gw-a')!.subscriptionEnd).toBe('2028-06-30');
  });

  it('integrity digests: register, list, conflict, bad digest', async () => {
    const created = await api('POST', '/api/v1/integrity', { version: '2.4.0', digest: `sha256:${'e'.repeat(64)}` });
    expect(created.status).toBe(201);
    expect((await api('GET', '/api/v1/integrity')).body.integrity.map((e: any) => e.version)).toEqual(['2.3.1', '2.4.0']);
    expect((await api('POST', '/api/v1/integrity', { version: '2.4.0', digest: `sha256:${'f'.repeat(64)}` })).status).toBe(409);
    expect((await api('POST', '/api/v1/integrity', { version: '2.4.0', digest: 'md5:abc' })).status).toBe(400);
    expect((await api('POST', '/api/v1/integrity', { digest: DIGEST })).status).toBe(400);
  });

  it('eligibility of one device with its reasons', async () => {
    const res = await api('GET', '/api/v1/devices/gw-c/eligibility');
    expect(res.body).toMatchObject({ eligible: false, reasons: ['no subscription (tier none)'], state: 'none' });
  });
});

describe('xcarectl tickets / ticket / subscription (PROTOCOL.md "Command line")', () => {
  it('tickets prints an aligned table in queue order', async () => {
    const out = await cli(['tickets']);
    const lines = out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^RANK\s+ID\s+BAND\s+SCORE\s+SEVERITY\s+TIER\s+KIND\s+SUBJECT\s+STATUS\s+AGE\s+SUMMARY$/);
    expect(lines[1]).toMatch(/^1\s+\d+\s+paid\s+\d+\.\d\d\s+medium\s+xcare_pro\s+gateway_loss\s+gw-b\s+open\s+2m00s\s+silent$/);
    // Columns line up: every row has BAND at the same offset as the header.
    const col = lines[0]!.indexOf('BAND');
    for (const line of lines.slice(1)) expect(line.slice(col, col + 4)).toMatch(/^(paid|disc)$/);
  });

  it('tickets --json prints the queue for scripts', async () => {
    const parsed = JSON.parse(await cli(['tickets', '--status', 'open'], true)) as any[];
    expect(parsed.map((t) => t.rank)).toEqual([1, 2, 3]);
  });

  it('ticket open / ack / resolve / show', async () => {
    const opened = await cli(['ticket', 'open', '--subject', 'gw-b', '--classification', 'problem', '--severity', 'high', '--summary', 'screen flickers']);
    const id = /ticket (\d+) opened \(high, paid, tier xcare_pro\)/.exec(opened)![1]!;
    expect(await cli(['ticket', 'ack', id])).toBe(`ticket ${id} acknowledged\n`);
    expect(await cli(['ticket', 'resolve', id, '--reason', 'cable replaced'])).toBe(`ticket ${id} resolved\n`);
    const shown = await cli(['ticket', 'show', id]);
    expect(shown).toMatch(/resolveReason\s+cable replaced/);
    expect(shown).toMatch(/acknowledged/);
  });

  it('ticket resolve without --reason is a usage error', async () => {
    await expect(cli(['ticket', 'resolve', '1'])).rejects.toThrow(CliError);
  });

  it('ticket show with a bad id is a usage error', async () => {
    await expect(cli(['ticket', 'show', 'abc'])).rejects.toThrow(/usage/);
  });

  it('a server-side refusal comes back as a one-line CliError', async () => {
    await expect(cli(['ticket', 'ack', '99999'])).rejects.toThrow(/ticket 99999 not found \(HTTP 404\)/);
  });

  it('subscription quote prints the pro-rata price', async () => {
    const out = await cli(['subscription', 'quote', '--tier', 'xcare_pro', '--start', '2028-02-29']);
    expect(out).toContain('123 of 366 days');
    expect(out).toContain('total: 100.82 EUR');
    const json = JSON.parse(await cli(['subscription', 'quote', '--tier', 'xcare', '--start', '2026-07-01', '--devices', '2'], true));
    expect(json.amount).toBe(240);
  });
});

describe('metrics at scrape time', () => {
  it('exports open tickets, opened totals, oldest age, outbox and subscriptions from SQLite', async () => {
    const text = await metrics.metrics();
    expect(text).toContain('fleet_tickets_open{severity="urgent",classification="problem"} 1');
    expect(text).toContain('fleet_tickets_open{severity="low",classification="problem"} 1');
    expect(text).toContain('fleet_tickets_opened_total{severity="medium",kind="gateway_loss"} 1');
    expect(text).toMatch(/fleet_ticket_oldest_open_seconds\{severity="urgent"\} 120/);
    expect(text).toMatch(/fleet_webhook_outbox_pending [1-9]/);
    expect(text).toContain('fleet_subscriptions{tier="xcare",state="active"} 2');
    expect(text).toContain('fleet_subscriptions{tier="xcare_pro",state="active"} 1');
    expect(text).toContain('fleet_subscriptions{tier="none",state="none"} 1');
    // A second scrape does not double-count the opened total.
    const again = await metrics.metrics();
    expect(again).toContain('fleet_tickets_opened_total{severity="medium",kind="gateway_loss"} 1');
  });

  it('fleet_subscriptions counts expiring and expired against the clock', async () => {
    clock.set('2027-06-15T00:00:00.000Z');
    const text = await metrics.metrics();
    expect(text).toContain('fleet_subscriptions{tier="xcare",state="expiring"} 1');
    clock.set('2027-07-01T00:00:00.000Z');
    expect(await metrics.metrics()).toContain('fleet_subscriptions{tier="xcare",state="expired"} 1');
  });
});

describe('durability', () => {
  it('a ticket opened and then the database dropped without any graceful step: ticket and outbox row are there on reopen', async () => {
    const res = await api('POST', '/api/v1/tickets', { subject: 'gw-b', classification: 'problem', severity: 'urgent', summary: 'crash test' });
    const id = res.body.ticket.id as number;
    // No close(), no checkpoint: a second connection opens the same file as a restarted daemon would.
    const reopened = openDatabase(file);
    try {
      const ticket = reopened.prepare('SELECT summary, severity, status FROM tickets WHERE id = ?').get(id);
      expect(ticket).toEqual({ summary: 'crash test', severity: 'urgent', status: 'open' });
      const outbox = reopened.prepare(`SELECT event_type AS type FROM outbox WHERE ticket_id = ?`).all(id);
      expect(outbox).toEqual([{ type: 'opened' }]);
    } finally {
      reopened.close();
    }
  });
});
