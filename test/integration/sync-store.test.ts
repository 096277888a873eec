import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import pg from 'pg';
import type { Database } from '../../src/db/database.js';
import { PgSyncDatabase, translate } from '../../src/db/pg/pg-sync.js';
import { fromStorageError } from '../../src/errors.js';
import { EventsTail } from '../../src/cluster/events-tail.js';
import { ManualClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import { PG_URL, pgSchema, syncEngines } from '../helpers/store-engines.js';

/**
 * The synchronous store API the state owners write to (registry, device state, tickets and outbox, patches,
 * rollouts, integrity), on both engines: the same behaviour from better-sqlite3 and from PgSyncDatabase
 * (issue 13, item 2). Real SQLite files and a real PostgreSQL (`XCARE_TEST_DATABASE_URL`).
 */
describe.each(syncEngines())('the synchronous store on $name', (engine) => {
  let db: Database;
  let url: string | undefined;
  let close: () => Promise<void>;
  beforeEach(async () => {
    const opened = await engine.open();
    db = opened.store.db;
    url = opened.store.url;
    close = opened.close;
  });
  afterEach(async () => close());

  const seed = () => {
    const add = db.prepare(`INSERT INTO events (ts, device_id, kind, data) VALUES (?, ?, ?, ?)`);
    add.run(1000, 'gw-1', 'provisioned', '{}');
    add.run(2000, 'gw-1', 'online', '{}');
    add.run(3000, null, 'note', '{"a":1}');
  };

  it('binds ? and @name, returns rows, undefined for no row, and counts changes', () => {
    seed();
    const row = db.prepare('SELECT kind, ts FROM events WHERE device_id = @device AND ts > @after ORDER BY id').get({ device: 'gw-1', after: 1500 });
    expect(row).toEqual({ kind: 'online', ts: 2000 });
    expect(db.prepare('SELECT kind FROM events WHERE ts > ? ORDER BY ts').all(1500)).toEqual([{ kind: 'online' }, { kind: 'note' }]);
    expect(db.prepare('SELECT kind FROM events WHERE ts = ?').get(1)).toBeUndefined();
    expect(db.prepare(`UPDATE events SET data = ? WHERE device_id = ?`).run('{}', 'gw-1').changes).toBe(2);
    // One name used twice binds one value.
    expect(db.prepare('SELECT COUNT(*) AS n FROM events WHERE ts >= @t OR ts + @t < 3500').get({ t: 2000 })).toEqual({ n: 3 });
  });

  it('gives numbers for counts, sums and BIGINT columns, keeps the alias case, and 1/0 for truth values', () => {
    seed();
    const r = db.prepare('SELECT COUNT(*) AS total, SUM(ts) AS sumTs, MAX(id) AS maxId, MIN(ts) = 1000 AS isFirst FROM events').get() as Record<string, unknown>;
    expect(r.total).toBe(3);
    expect(r.sumTs).toBe(6000);
    expect(typeof r.maxId).toBe('number');
    expect(r.isFirst).toBe(1);
  });

  it('RETURNING gives the new id', () => {
    const a = db.prepare(`INSERT INTO events (ts, kind) VALUES (?, 'x') RETURNING id`).get(1) as { id: number };
    const b = db.prepare(`INSERT INTO events (ts, kind) VALUES (?, 'x') RETURNING id`).get(2) as { id: number };
    expect(b.id).toBeGreaterThan(a.id);
  });

  it('a transaction is all or nothing; a nested one is a savepoint', () => {
    const add = db.prepare(`INSERT INTO events (ts, kind) VALUES (?, 'tx')`);
    const count = () => (db.prepare(`SELECT COUNT(*) AS n FROM events WHERE kind = 'tx'`).get() as { n: number }).n;
    db.transaction(() => {
      add.run(1);
      add.run(2);
    })();
    expect(count()).toBe(2);
    expect(() =>
      db.transaction(() => {
        add.run(3);
        throw new Error('boom');
      })(),
    ).toThrow('boom');
    expect(count()).toBe(2);
    expect(db.inTransaction).toBe(false);
    db.transaction(() => {
      add.run(4);
      try {
        db.transaction(() => {
          add.run(5);
          throw new Error('inner');
        })();
      } catch {
        // the inner change alone is undone
      }
      add.run(6);
    })();
    expect((db.prepare(`SELECT ts FROM events WHERE kind = 'tx' ORDER BY ts`).all() as { ts: number }[]).map((r) => r.ts)).toEqual([1, 2, 4, 6]);
    // A savepoint already sent (a read inside it flushed it) is rolled back on the server; the rest commits.
    db.transaction(() => {
      add.run(7);
      try {
        db.transaction(() => {
          add.run(8);
          expect(count()).toBe(6);
          throw new Error('inner after a read');
        })();
      } catch {
        // undone
      }
      expect(count()).toBe(5);
      add.run(9);
    })();
    expect((db.prepare(`SELECT ts FROM events WHERE kind = 'tx' ORDER BY ts`).all() as { ts: number }[]).map((r) => r.ts)).toEqual([1, 2, 4, 6, 7, 9]);
    // An empty transaction and one that throws before anything was sent leave nothing behind.
    db.transaction(() => undefined)();
    expect(() => db.transaction(() => { add.run(10); throw new Error('early'); })()).toThrow('early');
    expect(count()).toBe(6);
    expect(db.inTransaction).toBe(false);
  });

  it('writes inside a transaction: read back inside it, counted, and hostile text and bytes stored as given', () => {
    const hostile = `x'); DROP TABLE events; -- \\ \u00e9 $1 ? @p "q" \u{1F600}`;
    const bytes = Buffer.from([0, 1, 0x27, 0x5c, 0xff]);
    const changed = db.transaction(() => {
      db.prepare(`INSERT INTO events (ts, device_id, kind, data) VALUES (?, ?, 'w', ?)`).run(1, 'gw-1', hostile);
      db.prepare(`INSERT INTO events (ts, device_id, kind, data) VALUES (?, ?, 'w', ?)`).run(2, 'gw-2', '{}');
      // A read inside the transaction sees the writes before it.
      expect((db.prepare(`SELECT COUNT(*) AS n FROM events WHERE kind = 'w'`).get() as { n: number }).n).toBe(2);
      db.prepare(`INSERT INTO patches (id, version, manifest, signatures, sha256, size, created_at, expires_at) VALUES (?, '1.0.0', ?, '[]', ?, 5, 1, 2)`).run('p1', bytes, 'a'.repeat(64));
      return db.prepare(`UPDATE events SET ts = ts + 10 WHERE kind = 'w'`).run().changes;
    })();
    expect(changed).toBe(2);
    expect(db.prepare(`SELECT data FROM events WHERE device_id = 'gw-1'`).get()).toEqual({ data: hostile });
    expect((db.prepare(`SELECT manifest FROM patches WHERE id = 'p1'`).get() as { manifest: Buffer }).manifest.equals(bytes)).toBe(true);
    expect((db.prepare(`SELECT COUNT(*) AS n FROM events`).get() as { n: number }).n).toBe(2);
  });

  it('a negative number written inside a transaction is a value, never SQL: n-? with -5 subtracts it, on that row only', () => {
    db.prepare(`INSERT INTO events (ts, device_id, kind) VALUES (10, 'gw-a', 'n')`).run();
    db.prepare(`INSERT INTO events (ts, device_id, kind) VALUES (10, 'gw-b', 'n')`).run();
    // Queued writes travel with their values written into the SQL on PostgreSQL: -5 after a minus read as a comment.
    db.transaction(() => db.prepare(`UPDATE events SET ts = ts-? WHERE device_id = 'gw-a'`).run(-5))();
    db.transaction(() => db.prepare(`UPDATE events SET ts = ts-@d WHERE device_id = 'gw-b'`).run({ d: -3 }))();
    expect(db.prepare(`SELECT device_id, ts FROM events WHERE kind = 'n' ORDER BY device_id`).all()).toEqual([
      { device_id: 'gw-a', ts: 15 },
      { device_id: 'gw-b', ts: 13 },
    ]);
  });

  it('a write that fails inside a transaction fails all of it, whenever it is sent', () => {
    db.prepare(`INSERT INTO store_probe (id, at) VALUES (1, 1)`).run();
    expect(() =>
      db.transaction(() => {
        db.prepare(`INSERT INTO events (ts, kind) VALUES (1, 'doomed')`).run();
        db.prepare(`INSERT INTO store_probe (id, at) VALUES (1, 2)`).run();
        db.prepare(`INSERT INTO events (ts, kind) VALUES (2, 'doomed')`).run();
      })(),
    ).toThrow();
    expect(db.prepare(`SELECT COUNT(*) AS n FROM events WHERE kind = 'doomed'`).get()).toEqual({ n: 0 });
    expect(db.prepare(`SELECT at FROM store_probe WHERE id = 1`).get()).toEqual({ at: 1 });
    expect(db.inTransaction).toBe(false);
  });

  it('reserved ids (PostgreSQL) increase, and rows inserted with them coexist with ids the table gives itself', () => {
    const reserve = db.reserveId?.bind(db);
    if (!reserve) return; // SQLite: RETURNING is free there, nothing is reserved
    const a = reserve('events');
    const b = reserve('events');
    expect(b).toBeGreaterThan(a);
    db.transaction(() => {
      db.prepare(`INSERT INTO events (id, ts, kind) VALUES (?, 1, 'named')`).run(a);
      db.prepare(`INSERT INTO events (id, ts, kind) VALUES (?, 2, 'named')`).run(b);
    })();
    const own = db.prepare(`INSERT INTO events (ts, kind) VALUES (3, 'own') RETURNING id`).get() as { id: number };
    expect(own.id).toBeGreaterThan(b);
    expect(() => reserve('events; DROP TABLE events')).toThrow(/not a table name/);
  });

  it('refuses a transaction function that returns a promise', () => {
    expect(() => db.transaction(() => Promise.resolve(1))()).toThrow(/promise/);
  });

  it('a unique violation maps to 409 CONFLICT naming the constraint, whatever the engine', () => {
    db.prepare(`INSERT INTO store_probe (id, at) VALUES (1, 1)`).run();
    let caught: unknown;
    try {
      db.prepare(`INSERT INTO store_probe (id, at) VALUES (1, 2)`).run();
    } catch (err) {
      caught = err;
    }
    const mapped = fromStorageError(caught) as { status?: number; code?: string };
    expect(mapped.status).toBe(409);
    expect(mapped.code).toBe('CONFLICT');
  });

  it('EventsTail returns each row of its kinds once, also an id that commits after a later one (PostgreSQL)', async () => {
    const clock = new ManualClock(1_000_000);
    const tail = new EventsTail({ db, clock, log: silentLogger(), intervalMs: 1000, failure: 'x', kinds: ['revoked'], pass: () => {} });
    tail.start();
    tail.stop();
    if (!url) {
      db.prepare(`INSERT INTO events (ts, device_id, kind) VALUES (1, 'gw-1', 'revoked')`).run();
      expect(tail.read().map((r) => r.device_id)).toEqual(['gw-1']);
      expect(tail.read()).toEqual([]);
      return;
    }
    // Instance A takes an id and has not committed; instance B takes the next one and commits first.
    const a = new pg.Client({ connectionString: url });
    await a.connect();
    try {
      await a.query('BEGIN');
      await a.query(`INSERT INTO events (ts, device_id, kind) VALUES (1, 'gw-a', 'revoked')`);
      db.prepare(`INSERT INTO events (ts, device_id, kind) VALUES (2, 'gw-b', 'revoked')`).run();
      expect(tail.read().map((r) => r.device_id)).toEqual(['gw-b']);
      await a.query('COMMIT');
      expect(tail.read().map((r) => r.device_id)).toEqual(['gw-a']);
      expect(tail.read()).toEqual([]);
      // A reader that starts while an earlier id is still uncommitted (another instance's open transaction)
      // reads it once it commits: a revocation in flight at a follower's start is not lost.
      await a.query('BEGIN');
      await a.query(`INSERT INTO events (ts, device_id, kind) VALUES (1, 'gw-e', 'revoked')`);
      db.prepare(`INSERT INTO events (ts, device_id, kind) VALUES (2, 'gw-f', 'revoked')`).run();
      const late = new EventsTail({ db, clock, log: silentLogger(), intervalMs: 1000, failure: 'x', kinds: ['revoked'], pass: () => {} });
      late.start();
      late.stop();
      expect(late.read()).toEqual([]);
      await a.query('COMMIT');
      expect(late.read().map((r) => r.device_id)).toEqual(['gw-e']);
      expect(late.read()).toEqual([]);
      expect(tail.read().map((r) => r.device_id)).toEqual(['gw-e', 'gw-f']);
      // A rolled-back id is waited for a minute, then forgotten.
      await a.query('BEGIN');
      await a.query(`INSERT INTO events (ts, device_id, kind) VALUES (3, 'gw-c', 'revoked')`);
      db.prepare(`INSERT INTO events (ts, device_id, kind) VALUES (4, 'gw-d', 'revoked')`).run();
      expect(tail.read().map((r) => r.device_id)).toEqual(['gw-d']);
      await a.query('ROLLBACK');
      clock.advance(61_000);
      expect(tail.read()).toEqual([]);
      expect(tail.read()).toEqual([]);
    } finally {
      await a.end();
    }
  });
});

describe.skipIf(!PG_URL)('PgSyncDatabase: PostgreSQL failing under it', () => {
  let db: PgSyncDatabase;
  let url: string;
  let drop: () => Promise<void>;
  beforeEach(async () => {
    ({ url, drop } = await pgSchema('f'));
  });
  afterEach(async () => {
    db?.close();
    await drop();
  });

  it('a connection lost inside a transaction fails the rest of it and stores none of it; the next statement reconnects', async () => {
    db = new PgSyncDatabase(url);
    const pid = (db.prepare('SELECT pg_backend_pid() AS pid').get() as { pid: number }).pid;
    const add = db.prepare(`INSERT INTO events (ts, kind) VALUES (?, 'lost')`);
    expect(() =>
      db.transaction(() => {
        add.run(1);
        // A read sends BEGIN and the first write: the transaction is open on the server now.
        expect(db.prepare(`SELECT COUNT(*) AS n FROM events WHERE kind = 'lost'`).get()).toEqual({ n: 1 });
        // Another session kills ours mid-transaction (a failover of the database, a network cut), and waits
        // until it is gone (pg_terminate_backend only signals it).
        const killer = new PgSyncDatabase(url);
        killer.prepare('SELECT pg_terminate_backend(?)').get(pid);
        const deadline = Date.now() + 10_000;
        while (killer.prepare('SELECT 1 AS alive FROM pg_stat_activity WHERE pid = ?').get(pid) && Date.now() < deadline) {
          // polling the catalogue: the backend exits within milliseconds
        }
        killer.close();
        add.run(2);
      })(),
    ).toThrow();
    expect(db.inTransaction).toBe(false);
    // Reconnects in the background; statements fail fast (08001) until then.
    let n: number | undefined;
    const deadline = Date.now() + 10_000;
    while (n === undefined && Date.now() < deadline) {
      try {
        n = (db.prepare(`SELECT COUNT(*) AS n FROM events WHERE kind = 'lost'`).get() as { n: number }).n;
      } catch (err) {
        expect(String((err as { code?: string }).code)).toMatch(/^(08|57)/);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    expect(n).toBe(0);
  });

  it('a statement over the timeout is cancelled with 57014 and the store answers again', () => {
    db = new PgSyncDatabase(url, { statementTimeoutMs: 300 });
    const t0 = performance.now();
    expect(() => db.prepare('SELECT pg_sleep(5)').get()).toThrow(expect.objectContaining({ code: '57014' }));
    expect(performance.now() - t0).toBeLessThan(3000);
    expect(db.prepare('SELECT 1 AS one').get()).toEqual({ one: 1 });
  });

  it('a database that is down fails at start with the cause', () => {
    const down = new URL(PG_URL!);
    down.port = '1';
    expect(() => new PgSyncDatabase(down.toString(), { connectTimeoutMs: 500 })).toThrow(/ECONNREFUSED|connect/);
  });
});

describe('translate: better-sqlite3 parameters to PostgreSQL', () => {
  it('numbers ? in order, then each @name once, and leaves literals and comments alone', () => {
    const t = translate(`SELECT '?', "@x", a FROM t WHERE b = ? AND c = @c AND d = @d AND e = @c -- ? @z\nAND f = ?`);
    expect(t.text).toBe(`SELECT '?', "@x", a FROM t WHERE b = $1 AND c = $3 AND d = $4 AND e = $3 -- ? @z\nAND f = $2`);
    expect(t.positional).toBe(2);
    expect(t.names).toEqual(['c', 'd']);
  });
  it('remembers the case of aliases, not of SQL words', () => {
    const t = translate('SELECT MAX(id) AS maxId, COUNT(*) AS n FROM tickets');
    expect(t.keyCase.get('maxid')).toBe('maxId');
    expect(t.keyCase.has('select')).toBe(false);
    expect(t.keyCase.has('count')).toBe(false);
  });
});
