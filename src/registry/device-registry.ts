import type { Database } from '../db/database.js';
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import { ConflictError, NotFoundError, ValidationError } from '../errors.js';
import type { DeviceRecord, DeviceDirectory } from './types.js';
import type { DeviceInput } from './device-input.js';
import { generateToken, hashToken, verifyToken, tokenFingerprint } from './device-token.js';
import type { Tier } from '../protocol/names.js';

export interface DeviceRegistryDeps {
  db: Database;
  clock: Clock;
  log: Logger;
  /** The June 30 a subscription that starts on this date ends on (RULES.md "Subscriptions"). */
  fiscalYearEnd(startDate: string): string;
  /** Max cached successful token verifications (reconnects then cost no scrypt). */
  authCacheSize: number;
}

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
  private readonly verified = new Map<string, string>();
  private readonly listeners = new Set<(d: DeviceRecord) => void>();
  private gateways = 0;

  constructor(private readonly deps: DeviceRegistryDeps) {}

  start(): void {
    const rows = this.deps.db.prepare('SELECT * FROM devices').all() as DeviceRow[];
    for (const row of rows) this.index(toRecord(row), row.token_hash);
    this.deps.log.info({ devices: rows.length }, 'registry loaded');
  }

  stop(): void {
    this.verified.clear();
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
      if (this.byId.has(input.id) || seen.has(input.id)) throw new ConflictError(`device ${input.id} already exists`);
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
        return { record, token, hash: await hashToken(token) };
      }),
    );
    const insert = this.deps.db.prepare(
      `INSERT INTO devices (id, type, parent, customer, installer, tier, subscription_start, subscription_end, tags, token_hash, created_at)
       VALUES (@id, @type, @parent, @customer, @installer, @tier, @subscriptionStart, @subscriptionEnd, @tags, @hash, @createdAt)`,
    );
    const event = this.deps.db.prepare(`INSERT INTO events (ts, device_id, kind, data) VALUES (?, ?, 'provisioned', ?)`);
    this.deps.db.transaction(() => {
      for (const { record, hash } of prepared) {
        insert.run({ ...record, tags: JSON.stringify(record.tags), hash });
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
    this.verified.delete(id);
    this.index(updated, this.hashes.get(id)!);
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

  /** CONNECT check: the device exists, is not revoked, and the token matches its scrypt hash. */
  async authenticate(id: string, token: string): Promise<boolean> {
    const device = this.byId.get(id);
    if (!device || device.revokedAt !== null) return false;
    const fingerprint = tokenFingerprint(token);
    if (this.verified.get(id) === fingerprint) return true;
    const ok = await verifyToken(token, this.hashes.get(id)!);
    // Re-check: the device may have been revoked while scrypt ran.
    if (!ok || this.byId.get(id)?.revokedAt !== null) return false;
    if (this.deps.authCacheSize > 0) {
      if (this.verified.size >= this.deps.authCacheSize) this.verified.delete(this.verified.keys().next().value!);
      this.verified.set(id, fingerprint);
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
