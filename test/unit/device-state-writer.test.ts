import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { openDatabase, type Database, type SqliteDatabase } from '../../src/db/database.js';
import { DeviceRegistry } from '../../src/registry/device-registry.js';
import { parseDeviceInput } from '../../src/registry/device-input.js';
import { DeviceStateWriter } from '../../src/ingest/device-state-writer.js';
import { ManualClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import type { Heartbeat } from '../../src/protocol/types.js';
import { tempDir } from '../helpers/temp-dir.js';

const hb = (seq: number, extra: Partial<Heartbeat> = {}): Heartbeat => ({
  seq,
  ts: '2026-11-26T17:00:00.000Z',
  intervalS: 1,
  agentVersion: '1.0.0',
  softwareVersion: '2.3.1',
  ...extra,
});

/** Issue 12: a row that would only say "still alive" is rewritten at most every refreshMs. */
describe('DeviceStateWriter refreshMs', () => {
  let dir: ReturnType<typeof tempDir>;
  let db: Database;
  let clock: ManualClock;
  let writer: DeviceStateWriter;
  const row = () =>
    db.prepare('SELECT seq, software_version v, heartbeats n, last_seen, connected FROM device_state WHERE device_id = ?').get('gw-1') as {
      seq: number;
      v: string;
      n: number;
      last_seen: number;
      connected: number;
    };

  beforeEach(async () => {
    dir = tempDir();
    db = openDatabase(join(dir.path, 'x.db'));
    clock = new ManualClock('2026-11-26T17:00:00Z');
    const registry = new DeviceRegistry({ db, clock, log: silentLogger(), fiscalYearEnd: () => '2027-06-30' });
    registry.start();
    await registry.add([parseDeviceInput({ id: 'gw-1', type: 'gateway', customer: 'a', installer: 'i' })]);
    writer = new DeviceStateWriter({ db, clock, log: silentLogger(), flushIntervalMs: 500, maxBatch: 1000, refreshMs: 5000 });
    writer.start();
  });
  afterEach(async () => {
    await writer.stop();
    db.close();
    dir.cleanup();
  });

  it('a flush that fails (the store locked past its busy timeout) is written again at the next one: no beat, count or connection lost', () => {
    (db as SqliteDatabase).pragma('busy_timeout = 10');
    writer.heartbeat('gw-1', hb(1), clock.now());
    clock.advance(500);
    expect(row()).toMatchObject({ seq: 1, n: 1 });
    // Another connection holds the write lock; a new version (a whole row) and a connection change arrive.
    const other = new BetterSqlite3(join(dir.path, 'x.db'));
    other.exec('BEGIN IMMEDIATE');
    writer.heartbeat('gw-1', hb(2, { softwareVersion: '2.4.0' }), clock.now());
    writer.connected('gw-1', false);
    clock.advance(500);
    expect(writer.pendingCount()).toBe(1);
    other.exec('COMMIT');
    other.close();
    clock.advance(500);
    expect(row()).toMatchObject({ seq: 2, v: '2.4.0', n: 2, connected: 0 });
    expect(writer.pendingCount()).toBe(0);
  });

  it('writes the first heartbeat at the next flush, then liveness-only ones only after refreshMs/2 to refreshMs, counting all', () => {
    writer.heartbeat('gw-1', hb(1), clock.now());
    clock.advance(500);
    expect(row()).toMatchObject({ seq: 1, n: 1 });
    const firstWrite = clock.now();
    let seq = 1;
    while (row().seq === 1 && seq < 20) {
      writer.heartbeat('gw-1', hb(++seq), clock.now());
      clock.advance(500);
    }
    // Each device's refresh is spread within [refreshMs/2, refreshMs] so a fleet does not come due in one flush.
    const waited = clock.now() - firstWrite;
    expect(waited).toBeGreaterThanOrEqual(2500);
    expect(waited).toBeLessThanOrEqual(5000);
    expect(row()).toMatchObject({ seq, n: seq }); // the beats that waited are counted when written
  });

  it.each([
    ['a new software version', { softwareVersion: '2.4.0' }],
    ['a new agent version', { agentVersion: '1.1.0' }],
    ['a new integrity digest', { integrity: `sha256:${'b'.repeat(64)}` }],
    ['a new boot', { bootId: 'boot-2' }],
    ['a new interval', { intervalS: 30 }],
    ['a patch state', { patch: { patchId: 'p1', state: 'installing' as const } }],
  ])('writes %s at the next flush, whatever refreshMs says', (_what, change) => {
    writer.heartbeat('gw-1', hb(1), clock.now());
    clock.advance(500);
    writer.heartbeat('gw-1', hb(2, change), clock.now());
    clock.advance(500);
    expect(row()).toMatchObject({ seq: 2, n: 2 });
  });

  it('a device that goes quiet after beats that waited: its last seen, seq and count are written once due, its JSON kept', () => {
    writer.heartbeat('gw-1', hb(1, { health: { cpu: 0.5 } }), clock.now());
    clock.advance(500);
    const heartbeatJson = () => (db.prepare('SELECT heartbeat FROM device_state WHERE device_id = ?').get('gw-1') as { heartbeat: string }).heartbeat;
    expect(JSON.parse(heartbeatJson())).toMatchObject({ seq: 1, health: { cpu: 0.5 } });
    writer.heartbeat('gw-1', hb(2, { health: { cpu: 0.6 } }), clock.now());
    const lastBeat = clock.now();
    clock.advance(500);
    expect(row()).toMatchObject({ seq: 1, n: 1 });
    // No further beat: the timer writes the waiting figures within refreshMs.
    clock.advance(5000);
    expect(row()).toMatchObject({ seq: 2, n: 2, last_seen: lastBeat });
    expect(JSON.parse(heartbeatJson())).toMatchObject({ seq: 1 });
    expect(writer.pendingCount()).toBe(0);
  });

  it('writes a connection change at the next flush, with the pending heartbeat', () => {
    writer.heartbeat('gw-1', hb(1), clock.now());
    clock.advance(500);
    writer.heartbeat('gw-1', hb(2), clock.now());
    writer.connected('gw-1', false);
    clock.advance(500);
    expect(row()).toMatchObject({ seq: 2, connected: 0 });
  });

  it('stop() writes what waits (graceful shutdown loses nothing)', async () => {
    writer.heartbeat('gw-1', hb(1), clock.now());
    clock.advance(500);
    writer.heartbeat('gw-1', hb(2), clock.now());
    clock.advance(500);
    expect(row().seq).toBe(1);
    await writer.stop();
    expect(row()).toMatchObject({ seq: 2, n: 2 });
  });
});
