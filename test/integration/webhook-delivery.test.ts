import { describe, it, expect, afterEach } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { ManualClock } from '../../src/clock.js';
import { openDatabase, type Database } from '../../src/db/database.js';
import { silentLogger } from '../../src/log.js';
import { validateConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { DeviceRegistry } from '../../src/registry/device-registry.js';
import { fiscalYearEnd } from '../../src/subscriptions/fiscal-year.js';
import { IntegrityRegistry } from '../../src/subscriptions/integrity-registry.js';
import { SubscriptionService } from '../../src/subscriptions/subscription-service.js';
import { Outbox } from '../../src/helpdesk/outbox.js';
import { WebhookDelivery } from '../../src/helpdesk/webhook-delivery.js';
import { verifySignature } from '../../src/helpdesk/signature.js';
import { registerTicketMetrics } from '../../src/metrics/ticket-metrics.js';
import { TicketService } from '../../src/tickets/ticket-service.js';
import { AUTOMATIC_TICKETS, type TicketKind } from '../../src/tickets/types.js';
import { ConfigError } from '../../src/errors.js';

const SECRET = 'helpdesk-shared-secret';
const DIGEST = `sha256:${'c'.repeat(64)}`;

interface Received {
  key: string;
  event: string;
  signatureOk: boolean;
  status: number;
  ticketId: number;
  eventId: number;
}

/** A real helpdesk on loopback: records every request, answers `failNext` of them with 500 first. */
class Helpdesk {
  received: Received[] = [];
  failNext = 0;
  alwaysStatus: number | null = null;
  hang = false;
  private server?: Server;
  port = 0;

  async listen(port = 0): Promise<void> {
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (this.hang) return; // never answers: the sender's timeout must fire
        const raw = Buffer.concat(chunks);
        const body = JSON.parse(raw.toString('utf8')) as { event: { id: number }; ticket: { id: number } };
        let status = 200;
        if (this.alwaysStatus !== null) status = this.alwaysStatus;
        else if (this.failNext > 0) {
          this.failNext--;
          status = 500;
        }
        this.received.push({
          key: String(req.headers['x-xcare-idempotency-key']),
          event: String(req.headers['x-xcare-event']),
          signatureOk: verifySignature(SECRET, raw, req.headers['x-xcare-signature'] as string | undefined),
          status,
          ticketId: body.ticket.id,
          eventId: body.event.id,
        });
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end('{}');
      });
    });
    this.server = server;
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    this.port = (server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** What a helpdesk keeps after de-duplicating by idempotency key, in arrival order of the accepted copy. */
  accepted(): Received[] {
    const seen = new Set<string>();
    return this.received.filter((r) => r.status < 300 && !seen.has(r.key) && (seen.add(r.key), true));
  }
}

const dirs: string[] = [];
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDb(): string {
  const dir = mkdtempSync(join(tmpdir(), 'xcare-webhook-'));
  dirs.push(dir);
  return join(dir, 'fleet.db');
}

function seed(db: Database): void {
  const insert = db.prepare(
    `INSERT INTO devices (id, type, parent, customer, installer, tier, subscription_start, subscription_end, tags, token_hash, created_at)
     VALUES (?, 'gateway', NULL, 'acme', 'minnovation', 'xcare', '2026-07-01', '2027-06-30', '[]', 'unused', 0)`,
  );
  for (const id of ['gw-1', 'gw-2', 'gw-3']) {
    insert.run(id);
    db.prepare('INSERT INTO device_state (device_id, software_version, integrity) VALUES (?, ?, ?)').run(id, '2.3.1', DIGEST);
  }
}

/** One "daemon": database, ticket service, outbox and delivery over one SQLite file. */
function daemon(file: string, clock: ManualClock, webhook: Partial<Config['webhook']>, metricsRegistry = new Registry()) {
  const config = validateConfig({});
  const log = silentLogger();
  const db = openDatabase(file);
  if ((db.prepare('SELECT COUNT(*) AS n FROM devices').get() as { n: number }).n === 0) seed(db);
  const registry = new DeviceRegistry({ db, clock, log, fiscalYearEnd, authCacheSize: 0 });
  registry.start();
  const integrity = new IntegrityRegistry({ db, clock });
  integrity.register('2.3.1', DIGEST, 'test');
  const subscriptions = new SubscriptionService({ db, clock, log, config: config.subscriptions, directory: registry, integrity, onDeviceChanged: (id) => registry.reload(id) });
  const outbox = new Outbox({ db, clock });
  const tickets = new TicketService({ db, clock, config: config.tickets, log, directory: registry, eligibilityOf: (id) => subscriptions.eligibilityOf(id), outbox });
  tickets.load();
  const metrics = registerTicketMetrics({ registry: metricsRegistry, db, clock, expiringWithinDays: 30 });
  const delivery = new WebhookDelivery({
    db,
    clock,
    config: { ...config.webhook, secret: SECRET, timeoutMs: 2000, maxAttempts: 10, backoffBaseMs: 1000, backoffMaxMs: 8000, ...webhook },
    log,
    metrics,
    random: () => 1,
  });
  const raise = (kind: Exclude<TicketKind, 'manual'>, subject: string, summary = `${kind} on ${subject}`) =>
    tickets.raise({ kind, subject, ...AUTOMATIC_TICKETS[kind], summary });
  return { db, outbox, tickets, delivery, raise, metricsRegistry };
}

/** Poll, move the clock past any backoff, and poll again until the outbox is empty (bounded). */
async function drain(d: ReturnType<typeof daemon>, clock: ManualClock, rounds = 30): Promise<void> {
  for (let i = 0; i < rounds && d.outbox.pendingCount() > 0; i++) {
    await d.delivery.poll();
    clock.advance(8000);
  }
}

describe('helpdesk webhook delivery through the durable outbox', () => {
  it('every event arrives, in order per ticket, exactly once after de-duplication, across failures and a restart with the helpdesk down', async () => {
    const helpdesk = new Helpdesk();
    await helpdesk.listen();
    cleanups.push(() => helpdesk.close());
    const url = `http://127.0.0.1:${helpdesk.port}/hooks/xcare`;
    const file = tempDb();
    const clock = new ManualClock('2026-11-26T10:00:00Z');

    // Daemon #1: the helpdesk fails the first three attempts.
    helpdesk.failNext = 3;
    const d1 = daemon(file, clock, { url });
    d1.raise('gateway_partial', 'gw-1');
    d1.raise('gateway_loss', 'gw-1'); // escalated + updated
    d1.raise('flapping', 'gw-2');
    await d1.delivery.poll();
    clock.advance(8000);
    await d1.delivery.poll();
    expect(helpdesk.received.filter((r) => r.status === 500)).toHaveLength(3);

    // The helpdesk goes down; more events happen; the daemon stops and its database is closed.
    await helpdesk.close();
    const gw1 = d1.tickets.unresolved().find((t) => t.subject === 'gw-1')!;
    d1.tickets.ack(gw1.id);
    d1.raise('security_incident', 'gw-3');
    await d1.delivery.poll(); // connection refused: attempts and next_attempt_at are stored
    await d1.delivery.stop();
    d1.db.close();

    // Daemon #2 on the same file, helpdesk still down: retries keep failing and back off.
    const d2 = daemon(file, clock, { url });
    d2.tickets.clear('gateway_loss', 'gw-1', 'back');
    d2.tickets.clear('gateway_partial', 'gw-1', 'back');
    clock.advance(300_000);
    d2.tickets.tick();
    clock.advance(8000);
    await d2.delivery.poll();
    const failing = d2.db.prepare('SELECT attempts, next_attempt_at, last_error FROM outbox WHERE delivered_at IS NULL ORDER BY id LIMIT 1').get() as {
      attempts: number;
      next_attempt_at: number;
      last_error: string;
    };
    expect(failing.attempts).toBeGreaterThan(1);
    expect(failing.next_attempt_at).toBeGreaterThan(clock.now());
    expect(failing.last_error).toMatch(/fetch failed|ECONNREFUSED/);

    // The helpdesk comes back on the same address; everything drains.
    await helpdesk.listen(helpdesk.port);
    await drain(d2, clock);
    expect(d2.outbox.pendingCount()).toBe(0);

    const stored = d2.db.prepare('SELECT id, ticket_id AS ticketId, idempotency_key AS key, event_type AS event FROM outbox ORDER BY id').all() as {
      id: number;
      ticketId: number;
      key: string;
      event: string;
    }[];
    expect(stored.map((s) => s.event)).toEqual(
      expect.arrayContaining(['opened', 'escalated', 'updated', 'acknowledged', 'resolved']),
    );
    const accepted = helpdesk.accepted();
    // Exactly once after de-duplication: the accepted keys are the stored keys, each once.
    expect(accepted.map((r) => r.key).sort()).toEqual(stored.map((s) => s.key).sort());
    // In order per ticket: the accepted copies of a ticket's events arrive in event order.
    for (const ticketId of new Set(stored.map((s) => s.ticketId))) {
      const order = accepted.filter((r) => r.ticketId === ticketId).map((r) => r.eventId);
      expect(order).toEqual([...order].sort((a, b) => a - b));
    }
    // And never event n+1 of a ticket before event n was accepted (checked on every request, failed ones included).
    const acceptedSoFar = new Map<number, number>();
    for (const r of helpdesk.received) {
      const ticketEvents = stored.filter((s) => s.ticketId === r.ticketId).map((s) => s.key);
      const index = ticketEvents.indexOf(r.key);
      expect(index).toBeLessThanOrEqual(acceptedSoFar.get(r.ticketId) ?? 0);
      if (r.status < 300) acceptedSoFar.set(r.ticketId, Math.max(acceptedSoFar.get(r.ticketId) ?? 0, index + 1));
    }
    expect(helpdesk.received.every((r) => r.signatureOk)).toBe(true);
    expect(helpdesk.received.every((r) => r.key.startsWith('xcare-ticket-'))).toBe(true);
    await d2.delivery.stop();
    d2.db.close();
  });

  it('dead-letters after maxAttempts, visible in the outbox and the metrics; later events of that ticket wait; retry delivers both in order', async () => {
    const helpdesk = new Helpdesk();
    await helpdesk.listen();
    cleanups.push(() => helpdesk.close());
    helpdesk.alwaysStatus = 503;
    const clock = new ManualClock('2026-11-26T10:00:00Z');
    const d = daemon(tempDb(), clock, { url: `http://127.0.0.1:${helpdesk.port}/`, maxAttempts: 3 });
    cleanups.push(() => void d.db.close());
    d.raise('gateway_loss', 'gw-1');
    for (let i = 0; i < 3; i++) {
      await d.delivery.poll();
      clock.advance(8000);
    }
    const dead = d.outbox.list('dead');
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({ attempts: 3, lastError: 'HTTP 503', eventType: 'opened' });
    expect(helpdesk.received).toHaveLength(3);

    const text = await d.metricsRegistry.metrics();
    expect(text).toContain('fleet_webhook_deliveries_total{result="dead"} 1');
    expect(text).toContain('fleet_webhook_deliveries_total{result="failed"} 3');
    expect(text).toContain('fleet_webhook_outbox_dead 1');

    // A later event of the same ticket is held behind the dead letter (order per ticket).
    d.tickets.ack(d.tickets.unresolved()[0]!.id);
    helpdesk.alwaysStatus = null;
    await d.delivery.poll();
    expect(helpdesk.received).toHaveLength(3);
    expect(d.outbox.pendingCount()).toBe(1);

    d.outbox.retry(dead[0]!.id);
    await d.delivery.poll();
    expect(helpdesk.accepted().map((r) => r.event)).toEqual(['opened', 'acknowledged']);
    expect(d.outbox.pendingCount() + d.outbox.deadCount()).toBe(0);
  });

  it('a helpdesk that never answers times out (AbortSignal) and the attempt is retried later', async () => {
    const helpdesk = new Helpdesk();
    await helpdesk.listen();
    cleanups.push(() => helpdesk.close());
    helpdesk.hang = true;
    const clock = new ManualClock('2026-11-26T10:00:00Z');
    const d = daemon(tempDb(), clock, { url: `http://127.0.0.1:${helpdesk.port}/`, timeoutMs: 200 });
    cleanups.push(() => void d.db.close());
    d.raise('flapping', 'gw-2');
    await d.delivery.poll();
    const row = d.outbox.list('pending')[0]!;
    expect(row).toMatchObject({ attempts: 1, lastError: 'timeout after 200 ms' });
    helpdesk.hang = false;
    clock.advance(1000);
    await d.delivery.poll();
    expect(d.outbox.pendingCount()).toBe(0);
  });

  it('events of different tickets are not held up by one failing ticket', async () => {
    const helpdesk = new Helpdesk();
    await helpdesk.listen();
    cleanups.push(() => helpdesk.close());
    const clock = new ManualClock('2026-11-26T10:00:00Z');
    const d = daemon(tempDb(), clock, { url: `http://127.0.0.1:${helpdesk.port}/` });
    cleanups.push(() => void d.db.close());
    helpdesk.failNext = 1;
    d.raise('gateway_loss', 'gw-1'); // its first attempt fails
    d.raise('flapping', 'gw-2');
    await d.delivery.poll();
    expect(helpdesk.accepted().map((r) => r.event)).toEqual(['opened']);
    expect(helpdesk.accepted()[0]!.ticketId).not.toBe(helpdesk.received[0]!.ticketId);
  });

  it('start() delivers by itself on the clock timer and when tickets change', async () => {
    const helpdesk = new Helpdesk();
    await helpdesk.listen();
    cleanups.push(() => helpdesk.close());
    const clock = new ManualClock('2026-11-26T10:00:00Z');
    const d = daemon(tempDb(), clock, { url: `http://127.0.0.1:${helpdesk.port}/` });
    cleanups.push(() => void d.db.close());
    d.outbox.onCommitted(() => d.delivery.notify());
    d.delivery.start();
    d.raise('gateway_loss', 'gw-1');
    clock.advance(0);
    const waitFor = async (n: number) => {
      for (let i = 0; i < 100 && helpdesk.accepted().length < n; i++) await new Promise((r) => setTimeout(r, 10));
    };
    await waitFor(1);
    expect(helpdesk.accepted()).toHaveLength(1);
    expect(clock.pendingTimers()).toBe(0); // idle: no timer at all

    // A failure arms one timer for the backoff; a clock jump of a month fires it once and delivers.
    helpdesk.failNext = 1;
    d.raise('flapping', 'gw-2');
    clock.advance(0);
    for (let i = 0; i < 100 && helpdesk.received.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    for (let i = 0; i < 100 && clock.pendingTimers() === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(clock.pendingTimers()).toBe(1);
    clock.set('2026-12-26T10:00:00Z');
    await waitFor(2);
    expect(helpdesk.accepted().map((r) => r.event)).toEqual(['opened', 'opened']);
    await d.delivery.stop();
  });

  it('without a URL nothing is sent and events stay in the outbox', async () => {
    const clock = new ManualClock('2026-11-26T10:00:00Z');
    const d = daemon(tempDb(), clock, { url: null });
    cleanups.push(() => void d.db.close());
    d.delivery.start();
    d.raise('gateway_loss', 'gw-1');
    await d.delivery.poll();
    expect(d.outbox.pendingCount()).toBe(1);
  });

  it('a URL without a secret is a configuration error at start', () => {
    const clock = new ManualClock('2026-11-26T10:00:00Z');
    const d = daemon(tempDb(), clock, { url: 'http://127.0.0.1:9/', secret: null });
    cleanups.push(() => void d.db.close());
    expect(() => d.delivery.start()).toThrow(ConfigError);
  });
});
