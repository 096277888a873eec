import type { Database } from '../db/database.js';
import type { Clock } from '../clock.js';
import { NotFoundError, ValidationError } from '../errors.js';

/** A customer record (RULES.md "Subscriptions": customers are records of their own). */
export interface Customer {
  /** The same string devices carry in `customer`. */
  name: string;
  /** The dedicated success engineer of an xcare_pro customer; null fields when not named. */
  successEngineer: { name: string | null; email: string | null; phone: string | null };
  notes: string;
  createdAt: string;
  updatedAt: string;
}

/** What `set` takes: every field optional except the name; a field left out keeps its stored value. */
export interface CustomerInput {
  name?: unknown;
  engineerName?: unknown;
  engineerEmail?: unknown;
  engineerPhone?: unknown;
  notes?: unknown;
}

interface Row {
  name: string;
  engineer_name: string | null;
  engineer_email: string | null;
  engineer_phone: string | null;
  notes: string;
  created_at: number;
  updated_at: number;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9 ._:@&'-]{0,127}$/;
const EMAIL = /^[^\s@]{1,64}@[^\s@]{1,255}\.[^\s@]{2,63}$/;
const PHONE = /^\+?[0-9 ()./-]{3,32}$/;

/** null/'' clears a field; undefined keeps it; anything else must be a string matching `pattern`. */
function optional(value: unknown, key: string, pattern: RegExp, what: string): string | null | undefined {
  if (value === undefined) return undefined;
  if (value === null || value === '') return null;
  if (typeof value !== 'string') throw new ValidationError(`${key}: expected ${what}`);
  const v = value.trim();
  if (!pattern.test(v)) throw new ValidationError(`${key}: expected ${what}`);
  return v;
}

/**
 * The `customers` table's one owner (migration 005). A customer needs no record to exist (devices name customers
 * freely); the record adds the success engineer and notes. Names are validated; a bad input changes nothing.
 */
export class CustomerStore {
  private readonly cache = new Map<string, Customer | null>();

  constructor(private readonly deps: { db: Database; clock: Clock }) {}

  /** Create or update; returns the stored record. */
  set(input: CustomerInput): Customer {
    if (!input || typeof input !== 'object' || Array.isArray(input)) throw new ValidationError('body: expected a JSON object');
    const name = typeof input.name === 'string' ? input.name.trim() : input.name;
    if (typeof name !== 'string' || !NAME.test(name)) throw new ValidationError('name: expected 1-128 letters, digits, spaces or ._:@&\'-');
    const engineerName = optional(input.engineerName, 'engineerName', /^[^\u0000-\u001f]{1,200}$/, 'a name of at most 200 characters');
    const engineerEmail = optional(input.engineerEmail, 'engineerEmail', EMAIL, 'an email address');
    const engineerPhone = optional(input.engineerPhone, 'engineerPhone', PHONE, 'a phone number (digits, spaces, + ( ) . / -)');
    if (input.notes !== undefined && input.notes !== null && typeof input.notes !== 'string') throw new ValidationError('notes: expected a string');
    if (typeof input.notes === 'string' && input.notes.length > 4000) throw new ValidationError('notes: at most 4000 characters');
    const existing = this.row(name);
    const now = this.deps.clock.now();
    const next: Row = {
      name,
      engineer_name: engineerName === undefined ? (existing?.engineer_name ?? null) : engineerName,
      engineer_email: engineerEmail === undefined ? (existing?.engineer_email ?? null) : engineerEmail,
      engineer_phone: engineerPhone === undefined ? (existing?.engineer_phone ?? null) : engineerPhone,
      notes: input.notes === undefined ? (existing?.notes ?? '') : ((input.notes as string | null) ?? ''),
      created_at: existing?.created_at ?? now,
      updated_at: now,
    };
    this.deps.db
      .prepare(
        `INSERT INTO customers (name, engineer_name, engineer_email, engineer_phone, notes, created_at, updated_at)
         VALUES (@name, @engineer_name, @engineer_email, @engineer_phone, @notes, @created_at, @updated_at)
         ON CONFLICT(name) DO UPDATE SET engineer_name = excluded.engineer_name, engineer_email = excluded.engineer_email,
           engineer_phone = excluded.engineer_phone, notes = excluded.notes, updated_at = excluded.updated_at`,
      )
      .run(next);
    this.cache.delete(name);
    return toCustomer(next);
  }

  get(name: string): Customer | undefined {
    if (this.cache.has(name)) return this.cache.get(name) ?? undefined;
    const row = this.row(name);
    const c = row ? toCustomer(row) : null;
    this.cache.set(name, c);
    return c ?? undefined;
  }

  require(name: string): Customer {
    const c = this.get(name);
    if (!c) throw new NotFoundError(`customer ${name} not found`);
    return c;
  }

  list(): Customer[] {
    return (this.deps.db.prepare('SELECT * FROM customers ORDER BY name').all() as Row[]).map(toCustomer);
  }

  /** The success engineer named on a customer, if any field of it is set (cached; tickets ask on every event). */
  successEngineerOf(name: string): Customer['successEngineer'] | undefined {
    const e = this.get(name)?.successEngineer;
    return e && (e.name || e.email || e.phone) ? e : undefined;
  }

  private row(name: string): Row | undefined {
    return this.deps.db.prepare('SELECT * FROM customers WHERE name = ?').get(name) as Row | undefined;
  }
}

function toCustomer(r: Row): Customer {
  return {
    name: r.name,
    successEngineer: { name: r.engineer_name, email: r.engineer_email, phone: r.engineer_phone },
    notes: r.notes,
    createdAt: new Date(r.created_at).toISOString(),
    updatedAt: new Date(r.updated_at).toISOString(),
  };
}
