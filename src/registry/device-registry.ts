import type { Database } from '../db/database.js';
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import { ConflictError, NotFoundError, ValidationError, isUniqueViolation } from '../errors.js';
import type { DeviceRecord, DeviceDirectory } from './types.js';
import type { DeviceInput } from './device-input.js';
import { randomBytes } from 'node:crypto';
import type { Statement } from '../db/database.js';
import {
  generateToken,
  hashTokenHmac,
  storedDigest,
  digestMatches,
  isScryptHash,
  verifyTokenScrypt,
  type TokenKey,
} from './device-token.js';
import { AuthFailureLimiter, type AuthFailureLimits } from './auth-failure-limiter.js';
import type { Tier } from '../protocol/names.js';

/**
 * The answer to a device credential check: `ok`; `refused` (unknown or revoked device, wrong token);
 * `throttled` (the source spent its failure allowance: refused without looking at the token); `retired` (refused:
 * the device's own token that an operator rotated away or revoked within `retiredTokenGraceMs`, before the device
 * came back with a new one: the agent retrying, expected, not a security signal).
 */
export type DeviceAuthResult = 'ok' | 'refused' | 'throttled' | 'retired';

/** Default time a rotated or revoked token is recognised as the device's own retry (15 min). */
export const DEFAULT_RETIRED_TOKEN_GRACE_MS = 15 * 60_000;

/** Default per-source allowance of failed device authentications (see AuthFailureLimiter). */
export const DEFAULT_AUTH_FAILURE_LIMITS: AuthFailureLimits = { burst: 20, perSecond: 5 };

export interface DeviceRegistryDeps {
  db: Database;
  clock: Clock;
  log: Logger;
  /** The June 30 a subscription that starts on this date ends on (RULES.md "Subscriptions"). */
  fiscalYearEnd(startDate: string): string;
  /**
   * The server key device-token digests are keyed with (`loadTokenKey(dataDir)`). Without one (unit
   * tests) the registry makes a random key that lives as long as the process.
   */
  tokenKey?: TokenKey;
  /**
   * How long after a rotation or revocation the old token is recognised as the device's own retry (`retired`, not
   * a failed CONNECT) until the device connects with its new token (mqtt.retiredTokenGraceS; default 15 min).
   */
  retiredTokenGraceMs?: number;
  /** Per-source allowance of failed authentications (default DEFAULT_AUTH_FAILURE_LIMITS). */
  authFailures?: AuthFailureLimits;
  /** @deprecated No effect since tokens are HMAC-checked (issue 12); kept so old callers compile. */
  authCacheSize?: number;
  /**
   * Hand fresh tokens to an external broker's credential store (dynsec) before they are committed;
   * a rejection aborts the provisioning with nothing stored (README "At scale").
   */
  beforeIssue?(issued: { id: string; token: string }[]): Promise<void>;
  /** A rotated token, committed: an external broker's credential store follows (README "At scale"). */
  afterTokenRotated?(id: string, token: string): void;
}

// Unit tests build several registries over one database in a process; they must agree on the key.
let processTokenKey: TokenKey | undefined;

interface DeviceRow {
  id: string;
  type: DeviceRecord['type'];
  parent: string | null;
  customer: string;
  installer: string;
  tier: Tier;
  subscription_start: string | null;
  subscription_end: string | null;
  tags: string;
  token_hash: string;
  created_at: number;
  revoked_at: number | null;
}

function toRecord(row: DeviceRow): DeviceRecord {
  return {
    id: row.id,
    type: row.type,
    parent: row.parent,
    customer: row.customer,
    installer: row.installer,
    tier: row.tier,
    subscriptionStart: row.subscription_start,
    subscriptionEnd: row.subscription_end,
    tags: JSON.parse(row.tags) as string[],
    createdAt: row.created_at,
    revokedAt: row.revoked_at,
  };
}

export interface DeviceFilter {
  type?: string;
  tier?: string;
  customer?: string;
  installer?: string;
  parent?: string;
  tag?: string;
  includeRevoked?: boolean;
}

/**
 * The device registry: SQLite is the truth, an in-memory index serves the hot paths
 * (CONNECT auth, ingest, evaluator) in O(1). Every change is committed before the index moves.
 */
export class DeviceRegistry implements DeviceDirectory {
  private readonly byId = new Map<string, DeviceRecord>();
  private readonly hashes = new Map<string, string>();
  private readonly children = new Map<string, DeviceRecord[]>();
  private readonly gatewaysByCustomer = new Map<string, DeviceRecord[]>();
  private readonly listeners = new Set<(d: DeviceRecord) => void>();
  private readonly tokenKey: TokenKey;
  private readonly limiter: AuthFailureLimiter;
  /** Compared against when the device is unknown, so an unknown id costs what a wrong token does. */
  private readonly decoyDigest = randomBytes(32);
  /**
   * Tokens retired by a rotation or a revocation, per device, until when they count as the device's own retry.
   * An operator rotating or revoking many tokens at once made every agent retry with the old one; that burst of
   * failed CONNECTs opened an urgent security_incident for the operator's own action.
   */
  private readonly retired = new Map<string, { digest: Buffer; until: number }>();
  private migrateStatement?: Statement;
  /** Legacy (scrypt) checks running per source address. */
  private readonly legacyInFlight = new Map<string, number>();
  private readonly limits: AuthFailureLimits;
  private gateways = 0;

  constructor(private readonly deps: DeviceRegistryDeps) {
    this.tokenKey = deps.tokenKey ?? (processTokenKey ??= randomBytes(32));
    this.limits = deps.authFailures ?? DEFAULT_AUTH_FAILURE_LIMITS;
    this.limiter = new AuthFailureLimiter(this.limits);
  }

  start(): void {
    const rows = this.deps.db.prepare('SELECT * FROM devices').all() as DeviceRow[];
    for (const row of rows) this.index(toRecord(row), row.token_hash);
    this.deps.log.info({ devices: rows.length }, 'registry loaded');
  }

  stop(): void {
    this.migrateStatement = undefined;
  }

  get(id: string): DeviceRecord | undefined {
    return this.byId.get(id);
  }

  all(): Iterable<DeviceRecord> {
    return this.byId.values();
  }

  childrenOf(gatewayId: string): readonly DeviceRecord[] {
    return this.children.get(gatewayId) ?? [];
  }

  gatewaysOf(customer: string): readonly DeviceRecord[] {
    return this.gatewaysByCustomer.get(customer) ?? [];
  }

  gatewayCount(): number {
    return this.gateways;
  }

  onChange(listener: (device: DeviceRecord) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  list(filter: DeviceFilter = {}): DeviceRecord[] {
    const out: DeviceRecord[] = [];
    for (const d of this.byId.values()) {
      if (!filter.includeRevoked && d.revokedAt !== null) continue;
      if (filter.type && d.type !== filter.type) continue;
      if (filter.tier && d.tier !== filter.tier) continue;
      if (filter.customer && d.customer !== filter.customer) continue;
      if (filter.installer && d.installer !== filter.installer) continue;
      if (filter.parent && d.parent !== filter.parent) continue;
      if (filter.tag && !d.tags.includes(filter.tag)) continue;
      out.push(d);
    }
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Provision devices; returns each with its token, which is never stored or shown again. */
  async add(inputs: DeviceInput[]): Promise<{ device: DeviceRecord; token: string }[]> {
    const seen = new Set<string>();
    for (const input of inputs) {
      if (this.byId.has(input.id) || seen.has(input.id)) throw new ConflictError(`device ${input.id} already exists`, { id: input.id });
      seen.add(input.id);
    }
    for (const input of inputs) {
      if (!input.parent) continue;
      const parent = this.byId.get(input.parent) ?? inputs.find((i) => i.id === input.parent);
      if (!parent) throw new ValidationError(`parent: gateway ${input.parent} is not registered`);
      if (parent.type !== 'gateway') throw new ValidationError(`parent: ${input.parent} is not a gateway`);
    }
    const now = this.deps.clock.now();
    const prepared = await Promise.all(
      inputs.map(async (input) => {
        const token = generateToken();
        const start = input.tier === 'none' ? null : (input.since ?? new Date(now).toISOString().slice(0, 10));
        const record: DeviceRecord = {
          id: input.id,
          type: input.type,
          parent: input.parent ?? null,
          customer: input.customer,
          installer: input.installer,
          tier: input.tier,
          subscriptionStart: start,
          subscriptionEnd: start ? this.deps.fiscalYearEnd(start) : null,
          tags: input.tags,
          createdAt: now,
          revokedAt: null,
        };
        return { record, token, hash: hashTokenHmac(this.tokenKey, token) };
      }),
    );
    await this.deps.beforeIssue?.(prepared.map(({ record, token }) => ({ id: record.id, token })));
    const insert = this.deps.db.prepare(
      `INSERT INTO devices (id, type, parent, customer, installer, tier, subscription_start, subscription_end, tags, token_hash, created_at)
       VALUES (@id, @type, @parent, @customer, @installer, @tier, @subscriptionStart, @subscriptionEnd, @tags, @hash, @createdAt)`,
    );
    const event = this.deps.db.prepare(`INSERT INTO events (ts, device_id, kind, data) VALUES (?, ?, 'provisioned', ?)`);
    this.deps.db.transaction(() => {
      for (const { record, hash } of prepared) {
        // Checked again here: a concurrent add of the same id may have committed while the tokens
        // were being hashed (issue 11: ten parallel identical creates answered 500, not 409).
        if (this.byId.has(record.id)) throw new ConflictError(`device ${record.id} already exists`, { id: record.id });
        try {
          insert.run({ ...record, tags: JSON.stringify(record.tags), hash });
        } catch (err) {
          if (isUniqueViolation(err)) throw new ConflictError(`device ${record.id} already exists`, { id: record.id }, err);
          throw err;
        }
        event.run(now, record.id, JSON.stringify({ tier: record.tier, customer: record.customer }));
      }
    })();
    for (const { record, hash } of prepared) {
      this.index(record, hash);
      this.emit(record);
    }
    return prepared.map(({ record, token }) => ({ device: record, token }));
  }

  /** Revoke: refused at its next CONNECT; the caller closes its live connection (listeners see revokedAt). */
  revoke(id: string): DeviceRecord {
    const device = this.byId.get(id);
    if (!device) throw new NotFoundError(`device ${id} not found`);
    if (device.revokedAt !== null) return device;
    const now = this.deps.clock.now();
    this.deps.db.transaction(() => {
      this.deps.db.prepare('UPDATE devices SET revoked_at = ? WHERE id = ?').run(now, id);
      this.deps.db.prepare(`INSERT INTO events (ts, device_id, kind, data) VALUES (?, ?, 'revoked', '{}')`).run(now, id);
    })();
    const updated = { ...device, revokedAt: now };
    this.index(updated, this.hashes.get(id)!);
    this.retire(id, this.hashes.get(id), now);
    this.emit(updated);
    return updated;
  }

  /** Update subscription fields after a renewal or tier change (committed by the caller's transaction). */
  reload(id: string): DeviceRecord | undefined {
    const row = this.deps.db.prepare('SELECT * FROM devices WHERE id = ?').get(id) as DeviceRow | undefined;
    if (!row) return undefined;
    const record = toRecord(row);
    this.index(record, row.token_hash);
    this.emit(record);
    return record;
  }

  /**
   * A new token for a device (PROTOCOL.md `device rotate-token ID`, issue 10 fault 6): the old token is
   * refused from the moment this returns, and a revoked device is enabled again. Committed before the
   * index moves; the caller closes the device's live connection. The token is returned once, never stored.
   * Throws NotFoundError for an unknown id.
   */
  rotateToken(id: string): { device: DeviceRecord; token: string; reenabled: boolean } {
    const device = this.byId.get(id);
    if (!device) throw new NotFoundError(`device ${id} not found`);
    const token = generateToken();
    const hash = hashTokenHmac(this.tokenKey, token);
    const now = this.deps.clock.now();
    const reenabled = device.revokedAt !== null;
    const previous = this.hashes.get(id);
    this.deps.db.transaction(() => {
      this.deps.db.prepare('UPDATE devices SET token_hash = ?, revoked_at = NULL WHERE id = ?').run(hash, id);
      this.deps.db
        .prepare(`INSERT INTO events (ts, device_id, kind, data) VALUES (?, ?, 'token_rotated', ?)`)
        .run(now, id, JSON.stringify({ reenabled }));
    })();
    const updated = { ...device, revokedAt: null };
    this.index(updated, hash);
    this.retire(id, previous, now);
    this.emit(updated);
    this.deps.afterTokenRotated?.(id, token);
    return { device: updated, token, reenabled };
  }

  /**
   * The one device credential check (issue 12): the embedded broker's CONNECT, the artifact download's
   * Basic auth and the external broker's auth hook all call it. `source` is the peer address; failures
   * are rate-limited per source (a throttled source is refused before its token is hashed).
   *
   * Cost: one HMAC-SHA-256 and a constant-time compare, the same for a right token, a wrong one of any
   * length and an unknown device. A device still stored with a pre-issue-12 scrypt hash is verified with
   * scrypt once (off the event loop) and its row rewritten as HMAC on that success.
   */
  async verifyDeviceToken(id: string, token: string, source?: string): Promise<DeviceAuthResult> {
    const now = this.deps.clock.now();
    if (!this.limiter.allows(source, now)) return 'throttled';
    const stored = this.hashes.get(id);
    const digest = stored === undefined ? undefined : storedDigest(stored);
    let ok: boolean;
    if (digest) ok = digestMatches(this.tokenKey, token, digest);
    else if (stored !== undefined && isScryptHash(stored)) {
      // scrypt is slow and asynchronous: concurrent attempts would all pass allows() before the first
      // one failed. So each running check holds one failure of the source's allowance: a source runs at
      // most as many at once as it has failures left (successes give theirs back, so a site behind one
      // NAT address reconnecting after the upgrade still gets in, at scrypt's pace).
      const inFlight = source ? (this.legacyInFlight.get(source) ?? 0) : 0;
      if (!this.limiter.allows(source, now, inFlight + 1)) return 'throttled';
      if (source) this.legacyInFlight.set(source, inFlight + 1);
      try {
        ok = await this.verifyLegacy(id, token, stored);
      } finally {
        if (source) {
          const left = (this.legacyInFlight.get(source) ?? 1) - 1;
          if (left > 0) this.legacyInFlight.set(source, left);
          else this.legacyInFlight.delete(source);
        }
      }
    } else {
      digestMatches(this.tokenKey, token, this.decoyDigest); // unknown device: same work, always refused
      ok = false;
    }
    // Checked after the token (same work either way); re-read, the device may have been revoked meanwhile.
    if (ok && this.byId.get(id)?.revokedAt === null) {
      // Back with its current token: from now on the old one is somebody else's.
      this.retired.delete(id);
      return 'ok';
    }
    if (this.isRetired(id, token, now)) return 'retired';
    // The time now, not at the start: a legacy check awaited scrypt in between.
    if (this.limiter.failed(source, this.deps.clock.now())) this.logThrottled(source);
    return 'refused';
  }

  /** Is `token` the one this device had until a rotation or revocation less than the grace ago? */
  private isRetired(id: string, token: string, now: number): boolean {
    const entry = this.retired.get(id);
    if (!entry) return false;
    if (now >= entry.until) {
      this.retired.delete(id);
      return false;
    }
    return digestMatches(this.tokenKey, token, entry.digest);
  }

  private retire(id: string, stored: string | undefined, now: number): void {
    const digest = stored === undefined ? undefined : storedDigest(stored);
    const graceMs = this.deps.retiredTokenGraceMs ?? DEFAULT_RETIRED_TOKEN_GRACE_MS;
    if (digest && graceMs > 0) this.retired.set(id, { digest, until: now + graceMs });
  }

  private logThrottled(source: string | undefined): void {
    this.deps.log.warn({ remote: source, limits: this.limits }, 'too many failed device authentications from one source; throttled');
  }

  /** true when the device exists, is not revoked and the token matches: verifyDeviceToken(...) === 'ok'. */
  async authenticate(id: string, token: string, source?: string): Promise<boolean> {
    return (await this.verifyDeviceToken(id, token, source)) === 'ok';
  }

  /**
   * False while `source` is throttled for failed authentications: the broker closes its new connections
   * at accept, before a client, a parser or a CONNECT exist (the cheapest refusal there is).
   */
  admitsSource(source: string | undefined): boolean {
    return this.limiter.allows(source, this.deps.clock.now());
  }

  /** Sources whose failed authentications are being throttled now (for a gauge). */
  throttledSources(): number {
    return this.limiter.throttledCount(this.deps.clock.now());
  }

  /** scrypt once, then the row becomes HMAC (issue 12 "migrate stored scrypt hashes on the next successful CONNECT"). */
  private async verifyLegacy(id: string, token: string, stored: string): Promise<boolean> {
    if (!(await verifyTokenScrypt(token, stored))) return false;
    // Rotated while scrypt ran: the token checked was the old one.
    if (this.hashes.get(id) !== stored) return false;
    const migrated = hashTokenHmac(this.tokenKey, token);
    try {
      this.migrateStatement ??= this.deps.db.prepare('UPDATE devices SET token_hash = ? WHERE id = ? AND token_hash = ?');
      if (this.migrateStatement.run(migrated, id, stored).changes === 1) {
        this.hashes.set(id, migrated);
        this.deps.log.info({ deviceId: id }, 'device token hash migrated from scrypt to HMAC');
      }
    } catch (err) {
      // The device proved its token; a failed rewrite only means scrypt again next time.
      this.deps.log.error({ err, deviceId: id }, 'device token hash migration failed');
    }
    return true;
  }

  private index(record: DeviceRecord, hash: string): void {
    const previous = this.byId.get(record.id);
    if (previous) this.unindex(previous);
    this.byId.set(record.id, record);
    this.hashes.set(record.id, hash);
    if (record.revokedAt !== null) return;
    if (record.parent) push(this.children, record.parent, record);
    if (record.type === 'gateway') {
      push(this.gatewaysByCustomer, record.customer, record);
      this.gateways++;
    }
  }

  private unindex(record: DeviceRecord): void {
    if (record.revokedAt !== null) return;
    if (record.parent) remove(this.children, record.parent, record.id);
    if (record.type === 'gateway') {
      remove(this.gatewaysByCustomer, record.customer, record.id);
      this.gateways--;
    }
  }

  private emit(record: DeviceRecord): void {
    for (const l of this.listeners) {
      try {
        l(record);
      } catch (err) {
        this.deps.log.error({ err, deviceId: record.id }, 'registry listener failed');
      }
    }
  }
}

function push(map: Map<string, DeviceRecord[]>, key: string, value: DeviceRecord): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

function remove(map: Map<string, DeviceRecord[]>, key: string, id: string): void {
  const list = map.get(key);
  if (!list) return;
  const i = list.findIndex((d) => d.id === id);
  if (i >= 0) list.splice(i, 1);
  if (list.length === 0) map.delete(key);
}
