import { Counter, Gauge, type Registry } from 'prom-client';
import type { Database } from '../db/database.js';
import type { Clock } from '../clock.js';
import { SEVERITIES, CLASSIFICATIONS, TICKET_KINDS, AUTOMATIC_TICKETS, type TicketKind, type Severity } from '../tickets/types.js';
import { TIERS, type Tier } from '../protocol/names.js';
import { subscriptionState } from '../subscriptions/fiscal-year.js';
import type { WebhookMetricsSink } from '../helpdesk/webhook-delivery.js';

/**
 * Every (severity, kind) a ticket can open with: each automatic kind at its RULES.md severity, and every severity for
 * `rollout_aborted` (it follows the blast radius) and `manual` (people choose). `fleet_tickets_opened_total` exports
 * all of them at 0 from the start (issue 10): a series born at its first ticket has no earlier sample, so `rate()` and
 * `increase()` would miss that ticket.
 */
export function openedTicketLabelPairs(): { severity: Severity; kind: TicketKind }[] {
  const pairs: { severity: Severity; kind: TicketKind }[] = [];
  for (const kind of TICKET_KINDS) {
    if (kind === 'manual' || kind === 'rollout_aborted') for (const severity of SEVERITIES) pairs.push({ severity, kind });
    else pairs.push({ severity: AUTOMATIC_TICKETS[kind].severity, kind });
  }
  return pairs;
}

export interface TicketMetricsDeps {
  registry: Registry;
  db: Database;
  clock: Clock;
  /** config.subscriptions.expiringWithinDays: the `expiring` state of fleet_subscriptions. */
  expiringWithinDays: number;
}

/**
 * Ticket, helpdesk and subscription metrics. Gauges mirror SQLite and are computed in collect() at scrape time with
 * indexed queries (STYLE.md). `fleet_tickets_opened_total` is a counter read from the tickets table itself: each
 * scrape adds the tickets with an id above the last one counted (a primary-key range), so the first scrape after a
 * restart starts from the full history and the counter never resets with the daemon. It counts each ticket once,
 * under the kind and severity it opened with. `fleet_webhook_deliveries_total` counts attempts in this process
 * (a plain counter; Prometheus handles its reset at restart); the dead letters stored are in
 * `fleet_webhook_outbox_dead`, which survives restarts.
 */
export function registerTicketMetrics(deps: TicketMetricsDeps): WebhookMetricsSink {
  const { registry, db, clock } = deps;
  // A scrape during shutdown (database closed) reports the last values rather than failing the whole scrape.
  const safe = <T>(fn: (this: T) => void) =>
    function (this: T) {
      if (db.open) fn.call(this);
    };

  new Gauge({
    name: 'fleet_tickets_open',
    help: 'Unresolved tickets (open or acknowledged, children included) by severity and classification',
    labelNames: ['severity', 'classification'] as const,
    registers: [registry],
    collect: safe(function (this: Gauge<'severity' | 'classification'>) {
      const rows = db
        .prepare(`SELECT severity, classification, COUNT(*) AS n FROM tickets WHERE status != 'resolved' GROUP BY severity, classification`)
        .all() as { severity: string; classification: string; n: number }[];
      this.reset();
      for (const severity of SEVERITIES) for (const classification of CLASSIFICATIONS) this.set({ severity, classification }, 0);
      for (const r of rows) this.set({ severity: r.severity, classification: r.classification }, r.n);
    }),
  });

  let lastCountedId = 0;
  const opened = new Counter({
    name: 'fleet_tickets_opened_total',
    help: 'Tickets opened, by the severity and kind they opened with (read from the tickets table; survives restarts)',
    labelNames: ['severity', 'kind'] as const,
    registers: [registry],
    collect: safe(function (this: Counter<'severity' | 'kind'>) {
      const rows = db
        .prepare('SELECT opened_severity AS severity, opened_kind AS kind, COUNT(*) AS n, MAX(id) AS maxId FROM tickets WHERE id > ? GROUP BY opened_severity, opened_kind')
        .all(lastCountedId) as { severity: string; kind: string; n: number; maxId: number }[];
      for (const r of rows) {
        this.inc({ severity: r.severity, kind: r.kind }, r.n);
        lastCountedId = Math.max(lastCountedId, r.maxId);
      }
    }),
  });
  for (const labels of openedTicketLabelPairs()) opened.inc(labels, 0);

  new Gauge({
    name: 'fleet_ticket_oldest_open_seconds',
    help: 'Age of the oldest unresolved ticket by severity (0 when none)',
    labelNames: ['severity'] as const,
    registers: [registry],
    collect: safe(function (this: Gauge<'severity'>) {
      const rows = db
        .prepare(`SELECT severity, MIN(opened_at) AS oldest FROM tickets WHERE status != 'resolved' GROUP BY severity`)
        .all() as { severity: string; oldest: number }[];
      const now = clock.now();
      for (const severity of SEVERITIES) this.set({ severity }, 0);
      for (const r of rows) this.set({ severity: r.severity }, Math.max(0, (now - r.oldest) / 1000));
    }),
  });

  const deliveries = new Counter({
    name: 'fleet_webhook_deliveries_total',
    help: 'Helpdesk webhook results: delivered and failed per attempt, dead per event given up after maxAttempts',
    labelNames: ['result'] as const,
    registers: [registry],
  });
  for (const result of ['delivered', 'failed', 'dead']) deliveries.inc({ result }, 0);

  new Gauge({
    name: 'fleet_webhook_outbox_pending',
    help: 'Ticket events waiting for delivery to the helpdesk (not delivered, not dead)',
    registers: [registry],
    collect: safe(function (this: Gauge) {
      this.set((db.prepare('SELECT COUNT(*) AS n FROM outbox WHERE delivered_at IS NULL AND dead_at IS NULL').get() as { n: number }).n);
    }),
  });

  new Gauge({
    name: 'fleet_webhook_outbox_dead',
    help: 'Ticket events given up after maxAttempts (dead letters), until retried',
    registers: [registry],
    collect: safe(function (this: Gauge) {
      this.set((db.prepare('SELECT COUNT(*) AS n FROM outbox WHERE dead_at IS NOT NULL').get() as { n: number }).n);
    }),
  });

  new Gauge({
    name: 'fleet_subscriptions',
    help: 'Registered devices by contracted tier and subscription state (active, expiring within expiringWithinDays, expired, none)',
    labelNames: ['tier', 'state'] as const,
    registers: [registry],
    collect: safe(function (this: Gauge<'tier' | 'state'>) {
      // Grouped by end date in SQL: a handful of distinct June 30s however large the fleet.
      const rows = db
        .prepare('SELECT tier, subscription_end AS subscriptionEnd, COUNT(*) AS n FROM devices WHERE revoked_at IS NULL GROUP BY tier, subscription_end')
        .all() as { tier: Tier; subscriptionEnd: string | null; n: number }[];
      const now = clock.now();
      this.reset();
      for (const tier of TIERS) {
        if (tier === 'none') this.set({ tier, state: 'none' }, 0);
        else for (const state of ['active', 'expiring', 'expired']) this.set({ tier, state }, 0);
      }
      const counts = new Map<string, number>();
      for (const r of rows) {
        let state: string;
        try {
          state = subscriptionState(r, now, deps.expiringWithinDays);
        } catch {
          continue; // a malformed date cannot be classified; the registry validates dates on write
        }
        const key = `${r.tier}|${state}`;
        counts.set(key, (counts.get(key) ?? 0) + r.n);
      }
      for (const [key, n] of counts) {
        const [tier, state] = key.split('|') as [string, string];
        this.set({ tier, state }, n);
      }
    }),
  });

  return { deliveries };
}
