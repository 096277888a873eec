import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { ManualClock } from '../../src/clock.js';
import { openDatabase, type Database } from '../../src/db/database.js';
import { LeaderElector } from '../../src/cluster/leader-elector.js';
import { SqliteLeaseStore, type Lease, type LeaseStore } from '../../src/cluster/lease-store.js';
import { silentLogger } from '../../src/log.js';
import { tempDir } from '../helpers/temp-dir.js';

const LEASE = 6000;
const RENEW = 2000;

/** Lets the elector's async store calls settle between clock steps. */
const settle = () => new Promise((r) => setImmediate(r));

async function advance(clock: ManualClock, ms: number, step = 500): Promise<void> {
  for (let t = 0; t < ms; t += step) {
    clock.advance(Math.min(step, ms - t));
    await settle();
    await settle();
  }
}

/** A store whose calls fail on demand: the leader's database going away. */
class FlakyStore implements LeaseStore {
  down = false;
  constructor(private readonly inner: LeaseStore) {}
  acquire(name: string, holder: string, now: number, ttlMs: number): Promise<Lease> {
    return this.down ? Promise.reject(new Error('connection refused')) : this.inner.acquire(name, holder, now, ttlMs);
  }
  release(name: string, holder: string, token: number): Promise<void> {
    return this.inner.release(name, holder, token);
  }
  read(name: string): Promise<Lease | undefined> {
    return this.inner.read(name);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

describe('leader election on a ManualClock (two instances, one real SQLite lease)', () => {
  const dir = tempDir('xcare-elector-');
  let db: Database;
  let clock: ManualClock;
  const events: string[] = [];

  const elector = (id: string, store: LeaseStore) =>
    new LeaderElector({
      store,
      clock,
      log: silentLogger(),
      metrics: new Registry(),
      instanceId: id,
      leaseMs: LEASE,
      renewMs: RENEW,
      onElected: (term) => void events.push(`${id} elected ${term}`),
      onLost: (reason) => void events.push(`${id} lost: ${reason}`),
    });

  beforeEach(() => {
    db = openDatabase(join(dir.path, `lease-${Date.now()}-${Math.random()}.db`));
    clock = new ManualClock('2026-11-30T02:00:00Z');
    events.length = 0;
  });
  afterEach(() => db.close());

  it('the first instance leads, the second follows, and renewals keep it so', async () => {
    const a = elector('a', new SqliteLeaseStore(db));
    const b = elector('b', new SqliteLeaseStore(db));
    a.start();
    await settle();
    b.start();
    await advance(clock, 30_000);
    expect(a.isLeader()).toBe(true);
    expect(b.isLeader()).toBe(false);
    expect(b.view()).toMatchObject({ holder: 'a', term: 1, leader: false });
    expect(events).toEqual(['a elected 1']);
    await a.stop();
    await b.stop();
  });

  it('a leader that stops renewing (dead) is replaced after the lease, not before, under a new term', async () => {
    const a = elector('a', new SqliteLeaseStore(db));
    const b = elector('b', new SqliteLeaseStore(db));
    a.start();
    await settle();
    b.start();
    await advance(clock, 4000);
    // kill -9: no release, no more renewals.
    (a as unknown as { stopped: boolean }).stopped = true;
    const lastRenewal = (await new SqliteLeaseStore(db).read('leader'))!;
    await advance(clock, lastRenewal.expiresAt - clock.now() - 500);
    expect(b.isLeader()).toBe(false);
    await advance(clock, RENEW + 500);
    expect(b.isLeader()).toBe(true);
    expect(b.term()).toBe(2);
    expect(events).toEqual(['a elected 1', 'b elected 2']);
    await b.stop();
  });

  it('a graceful stop releases the lease: the follower takes over at its next attempt', async () => {
    const a = elector('a', new SqliteLeaseStore(db));
    const b = elector('b', new SqliteLeaseStore(db));
    a.start();
    await settle();
    b.start();
    await advance(clock, 3000);
    await a.stop();
    await advance(clock, RENEW);
    expect(b.isLeader()).toBe(true);
    await b.stop();
  });

  it('a leader cut off from the store steps down before its lease can pass to another instance', async () => {
    const flaky = new FlakyStore(new SqliteLeaseStore(db));
    const a = elector('a', flaky);
    const b = elector('b', new SqliteLeaseStore(db));
    a.start();
    await settle();
    b.start();
    await advance(clock, 2000);
    flaky.down = true;
    let lostAt: number | undefined;
    let bElectedAt: number | undefined;
    for (let i = 0; i < 40 && bElectedAt === undefined; i++) {
      await advance(clock, 250, 250);
      if (lostAt === undefined && events.some((e) => e.startsWith('a lost'))) lostAt = clock.now();
      if (b.isLeader()) bElectedAt = clock.now();
    }
    expect(lostAt).toBeDefined();
    expect(bElectedAt).toBeDefined();
    expect(lostAt!).toBeLessThan(bElectedAt!);
    expect(a.isLeader()).toBe(false);
    await b.stop();
  });
});
