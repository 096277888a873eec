import type { Clock } from '../clock.js';
import type { Database } from './database.js';
import type { PgPool } from './pg/pg-database.js';
import { PgCustomerStore, SqliteCustomerStore, type CustomerStore } from '../customers/customer-store.js';
import { PgTokenStore, SqliteTokenStore, type TokenStore } from '../access/token-store.js';
import { PgSessionStore, SqliteSessionStore, type SessionStore } from '../access/session-store.js';
import { PgAuditLog, SqliteAuditLog, type AuditLog } from '../audit/audit-log.js';

/**
 * Where the state lives (issue 13, item 2): SQLite under the data dir (the default), or PostgreSQL
 * (`store.url`). app.ts picks one, once. The owners below are async with an implementation per engine;
 * the synchronous owners run on either through the `Database` API (better-sqlite3, or PgSyncDatabase).
 */
export type StoreEngine = { kind: 'sqlite'; db: Database } | { kind: 'postgres'; pool: PgPool };

/** The table owners that run on either engine, each behind its async interface. */
export interface OwnerStores {
  customers: CustomerStore;
  tokens: TokenStore;
  sessions: SessionStore;
  audit: AuditLog;
}

/**
 * Every ported owner on `engine`: the one place an implementation is chosen by engine. `sessionTtlS`: console
 * session lifetime (s); `customersFollowMs`: how often the customers' in-memory view is re-read (cluster mode).
 */
export function ownerStores(engine: StoreEngine, deps: { clock: Clock; sessionTtlS: number; customersFollowMs?: number }): OwnerStores {
  const { clock, sessionTtlS: ttlS } = deps;
  const follow = deps.customersFollowMs ? { followMs: deps.customersFollowMs } : {};
  if (engine.kind === 'sqlite') {
    const { db } = engine;
    return {
      customers: new SqliteCustomerStore({ db, clock, ...follow }),
      tokens: new SqliteTokenStore({ db, clock }),
      sessions: new SqliteSessionStore({ db, clock, ttlS }),
      audit: new SqliteAuditLog({ db, clock }),
    };
  }
  const { pool } = engine;
  return {
    customers: new PgCustomerStore({ pool, clock, ...follow }),
    tokens: new PgTokenStore({ pool, clock }),
    sessions: new PgSessionStore({ pool, clock, ttlS }),
    audit: new PgAuditLog({ pool, clock }),
  };
}
