import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { PgLeaseStore, SqliteLeaseStore, type LeaseStore } from '../../src/cluster/lease-store.js';
import { engines } from '../helpers/store-engines.js';

const T0 = Date.parse('2026-11-30T02:00:00Z');
const TTL = 10_000;

/**
 * The leader lease (issue 13, item 3) on each engine: one statement decides, so two instances racing
 * for a free or expired lease never both win, a renewal keeps the term, and every change of holder
 * raises the fencing token.
 */
describe.each(engines<LeaseStore>({ sqlite: (db) => new SqliteLeaseStore(db), postgres: (pool) => new PgLeaseStore(pool) }))('lease store on $name', (engine) => {
  let store: LeaseStore;
  let close: () => Promise<void>;

  beforeEach(async () => {
    ({ store, close } = await engine.open());
  });
  afterEach(async () => close());

  it('a free lease goes to the first asker in term 1', async () => {
    expect(await store.read('leader')).toBeUndefined();
    expect(await store.acquire('leader', 'a', T0, TTL)).toEqual({ holder: 'a', token: 1, expiresAt: T0 + TTL });
  });

  it('an unexpired lease stays with its holder: another asker gets the holder back, not the lease', async () => {
    await store.acquire('leader', 'a', T0, TTL);
    expect(await store.acquire('leader', 'b', T0 + TTL - 1, TTL)).toEqual({ holder: 'a', token: 1, expiresAt: T0 + TTL });
  });

  it('the holder renews in the same term', async () => {
    await store.acquire('leader', 'a', T0, TTL);
    expect(await store.acquire('leader', 'a', T0 + 3000, TTL)).toEqual({ holder: 'a', token: 1, expiresAt: T0 + 3000 + TTL });
  });

  it('an expired lease is taken over exactly at its expiry, under the next token', async () => {
    await store.acquire('leader', 'a', T0, TTL);
    expect(await store.acquire('leader', 'b', T0 + TTL, TTL)).toEqual({ holder: 'b', token: 2, expiresAt: T0 + 2 * TTL });
    // The old holder is now refused and learns who leads.
    expect(await store.acquire('leader', 'a', T0 + TTL + 1, TTL)).toMatchObject({ holder: 'b', token: 2 });
  });

  it('a holder coming back after its own lease ran out starts a new term', async () => {
    await store.acquire('leader', 'a', T0, TTL);
    expect(await store.acquire('leader', 'a', T0 + TTL + 5, TTL)).toMatchObject({ holder: 'a', token: 2 });
  });

  it('release frees the lease for the next asker at once; a stale release changes nothing', async () => {
    await store.acquire('leader', 'a', T0, TTL);
    await store.release('leader', 'b', 1);
    await store.release('leader', 'a', 7);
    expect(await store.acquire('leader', 'b', T0 + 1, TTL)).toMatchObject({ holder: 'a' });
    await store.release('leader', 'a', 1);
    expect(await store.acquire('leader', 'b', T0 + 2, TTL)).toEqual({ holder: 'b', token: 2, expiresAt: T0 + 2 + TTL });
  });

  it('many instances racing for an expired lease: exactly one wins', async () => {
    await store.acquire('leader', 'old', T0, TTL);
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => store.acquire('leader', `i${i}`, T0 + TTL + 1, TTL)));
    const winners = new Set(results.map((r) => r.holder));
    expect(winners.size).toBe(1);
    expect(results.every((r) => r.token === 2)).toBe(true);
  });

  it('leases of different names are independent', async () => {
    await store.acquire('leader', 'a', T0, TTL);
    expect(await store.acquire('other', 'b', T0, TTL)).toMatchObject({ holder: 'b', token: 1 });
  });
});
