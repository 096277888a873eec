import type { Database } from '../db/database.js';
import type { Clock, TimerHandle } from '../clock.js';
import type { Logger } from '../log.js';
import type { Config } from '../config/schema.js';
import { ConfigError } from '../errors.js';
import { backoffDelay } from '../protocol/backoff.js';
import { signBody } from './signature.js';
import type { OutboxRow } from './outbox.js';

export interface WebhookMetricsSink {
  /** fleet_webhook_deliveries_total{result}: one `delivered` or `failed` per attempt, one `dead` per dead letter. */
  deliveries: { inc(labels: { result: 'delivered' | 'failed' | 'dead' }): void };
}

export interface WebhookDeliveryDeps {
  db: Database;
  clock: Clock;
  config: Config['webhook'];
  log: Logger;
  metrics: WebhookMetricsSink;
  /** Deliveries in flight at once, each for a different ticket (default 8). */
  concurrency?: number;
  random?: () => number;
  fetch?: typeof fetch;
}

/**
 * Delivers the outbox to the helpdesk webhook: at least once, in order per ticket (the next event of a ticket is
 * sent only after the previous one is delivered; a dead letter holds its ticket's later events until retried),
 * retried with exponential backoff whose next time is stored in `next_attempt_at`, so it survives restarts.
 */
export class WebhookDelivery {
  private timer?: TimerHandle;
  private running?: Promise<void>;
  private rerun = false;
  /** No timer runs while stopped; poll() still works (tests drive it by hand). */
  private stopped = true;
  /** Set by stop(): the current pass ends after its in-flight deliveries. */
  private halted = false;
  private readonly inflight = new Set<AbortController>();

  constructor(private readonly deps: WebhookDeliveryDeps) {}

  enabled(): boolean {
    return this.deps.config.url !== null;
  }

  start(): void {
    const { url, secret } = this.deps.config;
    if (!url) {
      this.deps.log.info('helpdesk webhook not configured; events stay in the outbox');
      return;
    }
    // The helpdesk must be able to tell our events from forged ones: no URL without a secret.
    if (!secret) throw new ConfigError('webhook.secret: required when webhook.url is set');
    this.stopped = false;
    this.halted = false;
    this.schedule(0);
    this.deps.log.info({ url: redactUrl(url) }, 'helpdesk webhook delivery started');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.halted = true;
    this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
    for (const c of this.inflight) c.abort(new Error('delivery stopped'));
    await this.running;
  }

  /** New rows were committed: deliver them now rather than at the next idle poll. */
  notify(): void {
    if (!this.stopped) this.schedule(0);
  }

  /** One delivery pass over due rows (tests call it directly). Resolves when the pass is done. */
  poll(): Promise<void> {
    if (!this.enabled() || this.halted) return Promise.resolve();
    if (this.running) {
      this.rerun = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.rerun = false;
          await this.drain();
        } while (this.rerun && !this.halted);
      } catch (err) {
        this.deps.log.error({ err }, 'webhook delivery pass failed');
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  /**
   * Timers follow the data, not a period: one timer for the earliest due retry, none when idle (new events wake
   * the delivery through notify()). A clock jump then fires it once, however long the jump.
   */
  private schedule(ms: number): void {
    if (this.stopped) return;
    this.deps.clock.clearTimeout(this.timer);
    this.timer = this.deps.clock.setTimeout(() => {
      this.timer = undefined;
      void this.poll().then(() => this.scheduleNext());
    }, ms);
  }

  private scheduleNext(): void {
    if (this.stopped || this.timer) return;
    const next = this.nextDue();
    if (next !== null) this.schedule(Math.max(0, next - this.deps.clock.now()));
  }

  /** Earliest next attempt among deliverable heads (a head held behind a dead letter is not deliverable). */
  private nextDue(): number | null {
    const row = this.deps.db
      .prepare(
        `SELECT MIN(o.next_attempt_at) AS next FROM outbox o
         WHERE o.delivered_at IS NULL AND o.dead_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.ticket_id = o.ticket_id AND p.delivered_at IS NULL AND p.id < o.id)`,
      )
      .get() as { next: number | null };
    return row.next;
  }

  /** Heads of each ticket's undelivered queue that are due, oldest first. */
  private dueHeads(limit: number): OutboxRow[] {
    return this.deps.db
      .prepare(
        `SELECT o.* FROM outbox o
         WHERE o.delivered_at IS NULL AND o.dead_at IS NULL AND o.next_attempt_at <= ?
           AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.ticket_id = o.ticket_id AND p.delivered_at IS NULL AND p.id < o.id)
         ORDER BY o.id LIMIT ?`,
      )
      .all(this.deps.clock.now(), limit) as OutboxRow[];
  }

  private async drain(): Promise<void> {
    const concurrency = this.deps.concurrency ?? 8;
    for (;;) {
      if (this.halted) return;
      const heads = this.dueHeads(concurrency);
      if (heads.length === 0) return;
      const results = await Promise.all(heads.map((row) => this.deliver(row)));
      // A success may make that ticket's next event due; after only failures, wait for the backoff.
      if (!results.some(Boolean)) return;
    }
  }

  private async deliver(row: OutboxRow): Promise<boolean> {
    const { url, secret, timeoutMs, maxAttempts } = this.deps.config;
    const controller = new AbortController();
    this.inflight.add(controller);
    const attempt = row.attempts + 1;
    let error: string | null = null;
    try {
      const doFetch = this.deps.fetch ?? fetch;
      const res = await doFetch(url!, {
        method: 'POST',
        body: row.payload,
        headers: {
          'content-type': 'application/json',
          'user-agent': 'xcare-fleet-webhook/1',
          'x-xcare-signature': signBody(secret!, row.payload),
          'x-xcare-idempotency-key': row.idempotency_key,
          'x-xcare-event': row.event_type,
          'x-xcare-delivery-attempt': String(attempt),
        },
        // A redirect is not a delivery: 3xx counts as a failure rather than being followed (POST would turn into GET).
        redirect: 'manual',
        signal: AbortSignal.any([controller.signal, AbortSignal.timeout(timeoutMs)]),
      });
      await res.arrayBuffer().catch(() => undefined);
      if (res.status < 200 || res.status >= 300) error = `HTTP ${res.status}`;
    } catch (err) {
      error = err instanceof Error ? (err.name === 'TimeoutError' ? `timeout after ${timeoutMs} ms` : describe(err)) : String(err);
    } finally {
      this.inflight.delete(controller);
    }
    const now = this.deps.clock.now();
    const db = this.deps.db;
    if (error === null) {
      db.prepare('UPDATE outbox SET attempts = ?, delivered_at = ?, last_error = NULL WHERE id = ?').run(attempt, now, row.id);
      this.deps.metrics.deliveries.inc({ result: 'delivered' });
      return true;
    }
    this.deps.metrics.deliveries.inc({ result: 'failed' });
    if (attempt >= maxAttempts) {
      db.prepare('UPDATE outbox SET attempts = ?, dead_at = ?, last_error = ? WHERE id = ?').run(attempt, now, error, row.id);
      this.deps.metrics.deliveries.inc({ result: 'dead' });
      this.deps.log.error({ outboxId: row.id, ticketId: row.ticket_id, attempts: attempt, error }, 'webhook event dead-lettered');
    } else {
      const next = now + backoffDelay(attempt - 1, { baseMs: this.deps.config.backoffBaseMs, maxMs: this.deps.config.backoffMaxMs, jitter: 'equal' }, this.deps.random);
      db.prepare('UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?').run(attempt, next, error, row.id);
      this.deps.log.warn({ outboxId: row.id, ticketId: row.ticket_id, attempts: attempt, error }, 'webhook delivery failed; will retry');
    }
    return false;
  }
}

function describe(err: Error): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ? `${err.message}: ${cause.code}` : err.message;
}

/** Never log credentials that may sit in the URL. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    u.search = '';
    return u.toString();
  } catch {
    return '[invalid url]';
  }
}
