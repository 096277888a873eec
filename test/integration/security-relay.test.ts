import { describe, it, expect, afterEach } from 'vitest';
import { join } from 'node:path';
import { openDatabase, type Database } from '../../src/db/database.js';
import { ManualClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import { SecurityRelay, type RelayedSignal } from '../../src/cluster/security-relay.js';
import { tempDir } from '../helpers/temp-dir.js';

/**
 * SecurityRelay on one real SQLite file shared by two relays (a follower and a leader), time driven by a
 * ManualClock: what the follower buffers reaches the leader's evaluator once per signal, never twice.
 */
describe('SecurityRelay', () => {
  const dirs: { cleanup(): void }[] = [];
  const dbs: Database[] = [];
  afterEach(() => {
    for (const db of dbs.splice(0)) db.close();
    for (const d of dirs.splice(0)) d.cleanup();
  });

  function setup() {
    const dir = tempDir('xcare-relay-');
    dirs.push(dir);
    const file = join(dir.path, 'xcare.db');
    const dbA = openDatabase(file);
    const dbB = openDatabase(file);
    dbs.push(dbA, dbB);
    const clock = new ManualClock(Date.UTC(2026, 10, 30));
    let leaderIs: 'a' | 'b' = 'a';
    const got = { a: [] as RelayedSignal[], b: [] as RelayedSignal[] };
    const relay = (name: 'a' | 'b', db: Database) =>
      new SecurityRelay({ db, clock, log: silentLogger(), intervalMs: 1000, leading: () => leaderIs === name, deliver: (s) => got[name].push(s) });
    const a = relay('a', dbA);
    const b = relay('b', dbB);
    a.start();
    b.start();
    return { a, b, clock, got, dbA, setLeader: (n: 'a' | 'b') => (leaderIs = n) };
  }

  it('the leader delivers its own signals at once and writes nothing', () => {
    const { a, got, dbA } = setup();
    a.report({ kind: 'auth_failure', deviceId: 'gw-1' });
    expect(got.a).toEqual([{ kind: 'auth_failure', deviceId: 'gw-1' }]);
    expect((dbA.prepare(`SELECT COUNT(*) AS n FROM events`).get() as { n: number }).n).toBe(0);
  });

  it("a follower's signals reach the leader once per signal, at the next passes; the claimed id of a refused CONNECT is dropped", () => {
    const { a, b, clock, got } = setup();
    for (let i = 0; i < 5; i++) b.report({ kind: 'auth_failure', deviceId: 'gw-claimed', detail: '10.0.0.1' });
    b.report({ kind: 'acl_violation', deviceId: 'gw-2', detail: 'fleet/v1/gw-3/heartbeat' });
    b.report({ kind: 'acl_violation', deviceId: '../bad id' });
    expect(got.b).toEqual([]);
    clock.advance(1000); // both pass: b writes, a may read before or after; a second pass settles it
    clock.advance(1000);
    expect(got.a.filter((s) => s.kind === 'auth_failure')).toEqual(Array(5).fill({ kind: 'auth_failure', detail: '10.0.0.1' }));
    expect(got.a.filter((s) => s.kind === 'acl_violation')).toEqual([{ kind: 'acl_violation', deviceId: 'gw-2', detail: 'fleet/v1/gw-3/heartbeat' }, { kind: 'acl_violation' }]);
    clock.advance(5000);
    expect(got.a).toHaveLength(7);
    a.stop();
    b.stop();
  });

  it('malformed security_signal rows are ignored, the next ones still delivered', () => {
    const { b, a, clock, got, dbA } = setup();
    const insert = dbA.prepare(`INSERT INTO events (ts, device_id, kind, data) VALUES (0, ?, 'security_signal', ?)`);
    insert.run(null, '{nope');
    insert.run(null, JSON.stringify({ kind: 'patch_rejected', count: 1 }));
    insert.run(null, JSON.stringify({ kind: 'auth_failure', count: 0 }));
    insert.run(null, JSON.stringify({ kind: 'auth_failure', count: 1e9 }));
    insert.run('bad id!', JSON.stringify({ kind: 'acl_violation', count: 1 }));
    insert.run(null, JSON.stringify({ kind: 'auth_failure', count: 2 }));
    clock.advance(1000);
    expect(got.a).toEqual([{ kind: 'auth_failure' }, { kind: 'auth_failure' }]);
    a.stop();
    b.stop();
  });

  it('taking over: what the new leader buffered is delivered, rows its predecessor judged are not replayed', () => {
    const { a, b, clock, got, setLeader } = setup();
    b.report({ kind: 'auth_failure' });
    clock.advance(1000);
    clock.advance(1000);
    expect(got.a).toHaveLength(1); // judged by a
    b.report({ kind: 'auth_failure' }); // buffered, not yet written
    setLeader('b');
    clock.advance(1000);
    expect(got.b).toEqual([{ kind: 'auth_failure' }]);
    expect(got.a).toHaveLength(1);
    a.stop();
    b.stop();
  });

  it('a clean stop of a follower writes what it buffered', () => {
    const { b, a, clock, got } = setup();
    b.report({ kind: 'acl_violation', deviceId: 'gw-9' });
    b.stop();
    clock.advance(1000);
    expect(got.a).toEqual([{ kind: 'acl_violation', deviceId: 'gw-9' }]);
    a.stop();
  });
});
