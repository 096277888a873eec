import { describe, it, expect, afterEach } from 'vitest';
import { join } from 'node:path';
import { openDatabase, type Database } from '../../src/db/database.js';
import { silentLogger } from '../../src/log.js';
import { HealthStateWriter } from '../../src/health/health-state-writer.js';
import { StoredLiveness } from '../../src/cluster/stored-liveness.js';
import { tempDir } from '../helpers/temp-dir.js';

/**
 * A cluster follower reads liveness back from what the leader's evaluator stored: written here by the
 * evaluator's own writer (HealthStateWriter) into a real SQLite file, read by StoredLiveness from another
 * connection, as a follower process would.
 */
describe('StoredLiveness', () => {
  let db: Database;
  let reader: Database;
  let dir: { path: string; cleanup(): void };
  afterEach(() => {
    db?.close();
    reader?.close();
    dir?.cleanup();
  });

  function setup() {
    dir = tempDir('xcare-stored-liveness-');
    const file = join(dir.path, 'xcare.db');
    db = openDatabase(file);
    reader = openDatabase(file);
    db.prepare(
      `INSERT INTO devices (id, type, parent, customer, installer, tier, subscription_start, subscription_end, tags, token_hash, created_at)
       VALUES (?, 'gateway', NULL, 'acme', 'minnovation', 'xcare', NULL, NULL, '[]', 'x', 0)`,
    ).run('gw-1');
    const writer = new HealthStateWriter({ db, log: silentLogger() });
    writer.start();
    const commit = () => db.transaction(() => writer.write(writer.take()))();
    return { writer, commit, liveness: new StoredLiveness(reader) };
  }

  it('unknown before the leader judged the device, also when ingest already wrote its row', () => {
    const { liveness } = setup();
    expect(liveness.stateOf('gw-1')).toEqual({ state: 'unknown', at: null });
    db.prepare('INSERT INTO device_state (device_id, last_seen, heartbeats) VALUES (?, ?, 1)').run('gw-1', 1000);
    expect(liveness.stateOf('gw-1')).toEqual({ state: 'unknown', at: null });
    expect(liveness.stateOf('gw-nobody')).toEqual({ state: 'unknown', at: null });
  });

  it('follows online, offline (Last Will within its grace), lost and back, with the time of each change', () => {
    const { writer, commit, liveness } = setup();
    writer.change('gw-1', true, 1000, 'online');
    commit();
    expect(liveness.stateOf('gw-1')).toEqual({ state: 'online', at: 1000 });
    writer.change('gw-1', false, 2000, 'offline');
    commit();
    expect(liveness.stateOf('gw-1')).toEqual({ state: 'offline', at: 2000 });
    writer.change('gw-1', false, 3000, 'lost', { reason: 'will' });
    commit();
    expect(liveness.stateOf('gw-1')).toEqual({ state: 'lost', at: 3000 });
    writer.change('gw-1', true, 4000, 'back');
    commit();
    expect(liveness.stateOf('gw-1')).toEqual({ state: 'online', at: 4000 });
  });
});
