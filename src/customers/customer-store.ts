import type { Database } from '../db/database.js';
import type { PgPool } from '../db/pg/pg-database.js';
import { pgRunner, sqliteRunner, type SqlRunner } from '../db/pg/sql-runner.js';
import type { Clock, TimerHandle } from '../clock.js';
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

/**
 * The `customers` table's one owner (migration 005), behind an async interface with a SQLite and a
 * PostgreSQL implementation (the engine is chosen once, src/db/store-engine.ts). A customer needs no
 * record to exist (devices name customers freely); the record adds the success engineer and notes.
 * Names and fields are validated before anything is written; a bad input changes nothing.
 *
 * `successEngineerOf` is synchronous (TicketService asks it inside the health tick): it answers from an
 * in-memory view of every customer's engineer, loaded by `start()` and kept in step by this store's own
 * `set`. Several daemons on one store (cluster mode): with `followMs` the view is re-read that often, so
 * another instance's edit reaches it within `followMs`; `get` and `list` always read the store.
 */
export interface CustomerStore {
  /** Loads the in-memory view of success engineers (then re-reads it every `followMs`, when set). */
  start(): Promise<void>;
  /** Stops re-reading the view. */
  stop(): void;
  /** Re-reads the view now; a failed read keeps the view as it was (the next one retries). */
  refresh(): Promise<void>;
  /** Creates or updates in one atomic statement; returns the stored record. ValidationError (400) on bad input. */
  set(input: CustomerInput): Promise<Customer>;
  get(name: string): Promise<Customer | undefined>;
  /** As `get`; NotFoundError (404) when there is no record. */
  require(name: string): Promise<Customer>;
  /** Every record, by name. */
  list(): Promise<Customer[]>;
  /** The success engineer named on a customer, if any field of it is set (from the in-memory view). */
  successEngineerOf(name: string): Customer['successEngineer'] | undefined;
}

interface Row {
  name: string;
  engineer_name: string | null;
  engineer_email: string | null;
  engineer_phone: string | null;
  notes: string;
  created_at: number | string;
  updated_at: number | string;
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

/** A validated `set`: undefined = keep the stored value. */
interface CustomerChange {
  name: string;
  engineerName: string | null | undefined;
  engineerEmail: string | null | undefined;
  engineerPhone: string | null | undefined;
  notes: string | undefined;
}

/** Checks every field of a `set` (ValidationError naming the field); pure, so both engines refuse alike. */
export function validateCustomerInput(input: CustomerInput): CustomerChange {
  if (!input || typeof input !== 'object' || Array.isArray(input)) throw new ValidationError('body: expected a JSON object');
  const name = typeof input.name === 'string' ? input.name.trim() : input.name;
  if (typeof name !== 'string' || !NAME.test(name)) throw new ValidationError('name: expected 1-128 letters, digits, spaces or ._:@&\'-');
  const engineerName = optional(input.engineerName, 'engineerName', /^[^\u0000-\u001f]{1,200}$/, 'a name of at most 200 characters');
  const engineerEmail = optional(input.engineerEmail, 'engineerEmail', EMAIL, 'an email address');
  const engineerPhone = optional(input.engineerPhone, 'engineerPhone', PHONE, 'a phone number (digits, spaces, + ( ) . / -)');
  if (input.notes !== undefined && input.notes !== null && typeof input.notes !== 'string') throw new ValidationError('notes: expected a string');
  if (typeof input.notes === 'string' && input.notes.length > 4000) throw new ValidationError('notes: at most 4000 characters');
  const notes = input.notes === undefined ? undefined : ((input.notes as string | null) ?? '');
  return { name, engineerName, engineerEmail, engineerPhone, notes };
}

// One statement creates or updates, so two concurrent edits of different fields both stick (no read-then-write).
// $7..$10 say which fields were given (1) or are kept (0); created_at is never touched on update.
const UPSERT = `
INSERT INTO customers (name, engineer_name, engineer_email, engineer_phone, notes, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $6)
ON CONFLICT (name) DO UPDATE SET
  engineer_name = CASE WHEN $7 = 1 THEN excluded.engineer_name ELSE customers.engineer_name END,
  engineer_email = CASE WHEN $8 = 1 THEN excluded.engineer_email ELSE customers.engineer_email END,
  engineer_phone = CASE WHEN $9 = 1 THEN excluded.engineer_phone ELSE customers.engineer_phone END,
  notes = CASE WHEN $10 = 1 THEN excluded.notes ELSE customers.notes END,
  updated_at = excluded.updated_at
RETURNING name, engineer_name, engineer_email, engineer_phone, notes, created_at, updated_at`;
const SELECT_ONE = 'SELECT name, engineer_name, engineer_email, engineer_phone, notes, created_at, updated_at FROM customers WHERE name = $1';
const SELECT_ALL = 'SELECT name, engineer_name, engineer_email, engineer_phone, notes, created_at, updated_at FROM customers ORDER BY name';

function toCustomer(r: Row): Customer {
  return {
    name: r.name,
    successEngineer: { name: r.engineer_name, email: r.engineer_email, phone: r.engineer_phone },
    notes: r.notes,
    createdAt: new Date(Number(r.created_at)).toISOString(),
    updatedAt: new Date(Number(r.updated_at)).toISOString(),
  };
}

/** The statements, written once over either engine's runner. */
class SqlCustomerStore implements CustomerStore {
  private engineers = new Map<string, Customer['successEngineer']>();
  /** Counts this store's own writes: a re-read that overlapped one is dropped (it may predate the write). */
  private writes = 0;
  private timer: TimerHandle | undefined;
  private running = false;

  constructor(private readonly deps: CustomerStoreDeps & { sql: SqlRunner }) {}

  async start(): Promise<void> {
    // A write overlapping the first read drops it (see load): read again until one stands.
    while (!(await this.load()));
    this.running = true;
    this.schedule();
  }

  stop(): void {
    this.running = false;
    this.deps.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  async refresh(): Promise<void> {
    try {
      await this.load();
    } catch {
      // The store is away (the store monitor reports that); the view stays as it was until the next read.
    }
  }

  /** Replaces the view with the stored records; false (view unchanged) when one of our writes overlapped the read. */
  private async load(): Promise<boolean> {
    const writes = this.writes;
    const rows = await this.deps.sql.rows<Row>(SELECT_ALL);
    if (writes !== this.writes) return false;
    const next = new Map<string, Customer['successEngineer']>();
    for (const r of rows) {
      const c = toCustomer(r);
      if (hasEngineer(c)) next.set(c.name, c.successEngineer);
    }
    this.engineers = next;
    return true;
  }

  private schedule(): void {
    const { followMs } = this.deps;
    if (!this.running || !followMs) return;
    this.timer = this.deps.clock.setTimeout(() => void this.refresh().finally(() => this.schedule()), followMs);
  }

  async set(input: CustomerInput): Promise<Customer> {
    const c = validateCustomerInput(input);
    const given = (v: unknown) => (v === undefined ? 0 : 1);
    const [row] = await this.deps.sql.rows<Row>(UPSERT, [
      c.name,
      c.engineerName ?? null,
      c.engineerEmail ?? null,
      c.engineerPhone ?? null,
      c.notes ?? '',
      this.deps.clock.now(),
      given(c.engineerName),
      given(c.engineerEmail),
      given(c.engineerPhone),
      given(c.notes),
    ]);
    const customer = toCustomer(row!);
    this.writes++;
    this.remember(customer);
    return customer;
  }

  async get(name: string): Promise<Customer | undefined> {
    const [row] = await this.deps.sql.rows<Row>(SELECT_ONE, [name]);
    return row ? toCustomer(row) : undefined;
  }

  async require(name: string): Promise<Customer> {
    const c = await this.get(name);
    if (!c) throw new NotFoundError(`customer ${name} not found`);
    return c;
  }

  async list(): Promise<Customer[]> {
    return (await this.deps.sql.rows<Row>(SELECT_ALL)).map(toCustomer);
  }

  successEngineerOf(name: string): Customer['successEngineer'] | undefined {
    return this.engineers.get(name);
  }

  private remember(c: Customer): void {
    if (hasEngineer(c)) this.engineers.set(c.name, c.successEngineer);
    else this.engineers.delete(c.name);
  }
}

function hasEngineer(c: Customer): boolean {
  const e = c.successEngineer;
  return Boolean(e.name || e.email || e.phone);
}

/** The clock (record times, view re-reads) and how often to re-read the view (ms; absent: only at start). */
export interface CustomerStoreDeps {
  clock: Clock;
  followMs?: number;
}

/** Customers on the embedded SQLite store. */
export class SqliteCustomerStore extends SqlCustomerStore {
  constructor(deps: CustomerStoreDeps & { db: Database }) {
    super({ ...deps, sql: sqliteRunner(deps.db) });
  }
}

/** Customers on PostgreSQL (or a compatible distributed SQL database). */
export class PgCustomerStore extends SqlCustomerStore {
  constructor(deps: CustomerStoreDeps & { pool: PgPool }) {
    super({ ...deps, sql: pgRunner(deps.pool) });
  }
}
