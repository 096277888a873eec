import type { Database } from '../db/database.js';
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import type { Config } from '../config/schema.js';
import { ConflictError, NotFoundError, ValidationError } from '../errors.js';
import type { DeviceDirectory, DeviceRecord } from '../registry/types.js';
import { eligibility, type Eligibility, type LiveSoftware } from './eligibility.js';
import { expiresAt, parseDate, proRataQuote, renewal, subscriptionState, type Quote, type Renewal, type SubscriptionState } from './fiscal-year.js';
import type { IntegrityRegistry } from './integrity-registry.js';

export interface SubscriptionServiceDeps {
  db: Database;
  clock: Clock;
  log: Logger;
  config: Config['subscriptions'];
  directory: DeviceDirectory;
  integrity: IntegrityRegistry;
  /**
   * Called after a renewal is committed to `devices`: the registry keeps an in-memory cache and must reload
   * the row (app.ts wires `(id) => registry.reload(id)`).
   */
  onDeviceChanged(deviceId: string): void;
  /** The software a device last reported; defaults to reading `device_state` (primary-key lookup). */
  live?(deviceId: string): LiveSoftware | undefined;
  /**
   * The software of its latest heartbeat as ingest saw it, before the batched `device_state` write (issue 8,
   * fault 7: eligibility from the heartbeat that raised a ticket). Consulted first when given.
   */
  latest?(deviceId: string): LiveSoftware | undefined;
}

/** The answer to a renewal: `renewed: false` (and `charged: 0`) when it had already been applied. */
export interface RenewResult {
  device: DeviceRecord;
  renewed: boolean;
  /** The June 30 the request named. */
  to: string;
  /** The amount this request billed: 0 for a repeat. */
  charged: number;
  renewal?: Renewal;
  quote?: Quote;
}

export interface DeviceEligibility extends Eligibility {
  state: SubscriptionState;
}

/** Subscriptions and eligibility as the tickets, the API and (later) rollouts ask for them. */
export class SubscriptionService {
  constructor(private readonly deps: SubscriptionServiceDeps) {}

  /** Live software of a device: its latest heartbeat seen by ingest, else the latest stored one. */
  live(deviceId: string): LiveSoftware | undefined {
    const latest = this.deps.latest?.(deviceId);
    if (latest) return latest;
    if (this.deps.live) return this.deps.live(deviceId);
    const row = this.deps.db
      .prepare('SELECT software_version AS softwareVersion, integrity FROM device_state WHERE device_id = ?')
      .get(deviceId) as LiveSoftware | undefined;
    return row;
  }

  /** Eligibility of a registered device now; undefined for an unknown id. */
  eligibilityOf(deviceId: string): DeviceEligibility | undefined {
    const device = this.deps.directory.get(deviceId);
    if (!device) return undefined;
    const now = this.deps.clock.now();
    const result = eligibility(device, this.live(deviceId), now, {
      approvedInstallers: this.deps.config.approvedInstallers,
      expectedIntegrity: (v) => this.deps.integrity.expected(v),
    });
    if (device.revokedAt !== null) {
      result.eligible = false;
      result.reasons.push('device is revoked');
    }
    return { ...result, state: subscriptionState(device, now, this.deps.config.expiringWithinDays) };
  }

  quote(tier: string, start: string, devices?: number): Quote {
    return proRataQuote({ tier, start, devices, prices: this.deps.config.annualPrice, currency: this.deps.config.currency });
  }

  /**
   * Renew to the next June 30 (RULES.md "Subscriptions"), committed before the registry is told.
   *
   * Idempotent (issue 10 fault 7: a retried script extended and billed twice): the request names the
   * June 30 it renews to (`to`). When the subscription already runs to `to` or later, nothing changes and
   * nothing is charged (`renewed: false`). A `to` other than the one this renewal reaches (a skipped or a
   * past year) is a ConflictError naming the right one; a missing `to` is a ValidationError naming it too.
   */
  renew(deviceId: string, request: { to?: string; tier?: string }): RenewResult {
    const device = this.deps.directory.get(deviceId);
    if (!device) throw new NotFoundError(`device ${deviceId} not found`);
    if (device.revokedAt !== null) throw new ValidationError(`device ${deviceId} is revoked`);
    const now = this.deps.clock.now();
    const next = renewal(device, now, request.tier);
    if (request.to === undefined) {
      throw new ValidationError(`to: required: the June 30 this renewal runs to (now ${next.subscriptionEnd}), so that a retry renews nothing twice`);
    }
    const to = request.to;
    parseDate(to, 'to');
    if (!to.endsWith('-06-30')) throw new ValidationError(`to: subscriptions end on June 30, got ${to}`);
    const running = device.tier !== 'none' && device.subscriptionEnd !== null && now < expiresAt(device.subscriptionEnd);
    if (running && device.subscriptionEnd! >= to) {
      if (request.tier !== undefined && request.tier !== device.tier) {
        throw new ConflictError(`tier: the subscription already runs to ${device.subscriptionEnd} as ${device.tier}; a renewal to ${to} cannot change it`);
      }
      this.deps.log.info({ deviceId, to, end: device.subscriptionEnd }, 'renewal repeated; nothing changed or charged');
      return { device, renewed: false, to, charged: 0 };
    }
    if (next.subscriptionEnd !== to) {
      throw new ConflictError(`to: this renewal runs to ${next.subscriptionEnd}, not ${to} (the subscription ${running ? `runs to ${device.subscriptionEnd}` : 'is not running'})`);
    }
    const quote = this.quote(next.tier, next.billedFrom);
    const db = this.deps.db;
    db.transaction(() => {
      db.prepare('UPDATE devices SET tier = ?, subscription_start = ?, subscription_end = ? WHERE id = ?').run(
        next.tier,
        next.subscriptionStart,
        next.subscriptionEnd,
        deviceId,
      );
      db.prepare(`INSERT INTO events (ts, device_id, kind, data) VALUES (?, ?, 'renewed', ?)`).run(
        now,
        deviceId,
        JSON.stringify({ from: { tier: device.tier, end: device.subscriptionEnd }, to: next, amount: quote.amount }),
      );
    })();
    this.deps.log.info({ deviceId, tier: next.tier, end: next.subscriptionEnd }, 'subscription renewed');
    this.deps.onDeviceChanged(deviceId);
    return {
      device: { ...device, tier: next.tier, subscriptionStart: next.subscriptionStart, subscriptionEnd: next.subscriptionEnd },
      renewed: true,
      to,
      charged: quote.amount,
      renewal: next,
      quote,
    };
  }
}
