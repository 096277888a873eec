import { describe, it, expect } from 'vitest';
import { join } from 'node:path';
import { openDatabase } from '../../src/db/database.js';
import { migrations } from '../../src/db/migrations/index.js';
import { tempDir } from '../helpers/temp-dir.js';

/** Migration 006 on a real SQLite file holding data written by migrations 001-004. */
describe('migration 006 (rollout promises)', () => {
  it('keeps rollouts and their devices, folds duplicate offers into one, and allows the failed state', () => {
    const dir = tempDir('xcare-mig6-');
    const file = join(dir.path, 'x.db');
    const old = openDatabase(file, migrations.filter((m) => m.version <= 4));
    old.prepare(`INSERT INTO rollouts (id, patch_id, spec, state, created_at, updated_at) VALUES ('r-1', 'p', '{}', 'running', 1, 1)`).run();
    old.prepare(`INSERT INTO rollout_devices (rollout_id, device_id, wave, state, offered_at) VALUES ('r-1', 'gw-1', 0, 'offered', 5)`).run();
    old.prepare(`INSERT INTO rollout_events (rollout_id, ts, kind) VALUES ('r-1', 1, 'created')`).run();
    old.prepare(`INSERT INTO patch_offers (device_id, patch_id, rollout_id, offered_at) VALUES ('gw-1', 'p', NULL, 1), ('gw-1', 'p', 'r-1', 5)`).run();
    old.close();

    const db = openDatabase(file);
    expect(db.prepare('SELECT COUNT(*) AS n FROM rollout_devices').get()).toEqual({ n: 1 });
    expect(db.prepare('SELECT COUNT(*) AS n FROM rollout_events').get()).toEqual({ n: 1 });
    expect(db.prepare('SELECT attempts FROM rollout_devices').get()).toEqual({ attempts: 1 });
    expect(db.prepare('SELECT rollout_id, offered_at FROM patch_offers').all()).toEqual([{ rollout_id: null, offered_at: 1 }]);
    expect(() => db.prepare(`INSERT INTO patch_offers (device_id, patch_id, offered_at) VALUES ('gw-1', 'p', 9)`).run()).toThrow(/UNIQUE/);
    db.prepare(`UPDATE rollouts SET state = 'failed' WHERE id = 'r-1'`).run();
    expect(() => db.prepare(`UPDATE rollouts SET state = 'bogus' WHERE id = 'r-1'`).run()).toThrow(/CHECK/);
    // The children still belong to the rebuilt table: deleting the rollout cascades.
    db.prepare(`DELETE FROM rollouts WHERE id = 'r-1'`).run();
    expect(db.prepare('SELECT COUNT(*) AS n FROM rollout_devices').get()).toEqual({ n: 0 });
    expect(db.pragma('foreign_key_check')).toEqual([]);
    db.close();
    dir.cleanup();
  });
});
