import { describe, it, expect } from 'vitest';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { InstallGrace } from '../../src/patches/install-grace.js';
import { PatchService } from '../../src/patches/patch-service.js';
import { PatchRepository } from '../../src/patches/patch-repository.js';
import { ArtifactStore } from '../../src/patches/artifact-store.js';
import { createPatchMetrics } from '../../src/patches/patch-metrics.js';
import { openDatabase } from '../../src/db/database.js';
import { ManualClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import { manifestBytes } from '../../patches/manifest.js';
import { makeKey, manifestFor } from '../helpers/patch-fixtures.js';
import { tempDir } from '../helpers/temp-dir.js';

/**
 * Issue 8 fault 1 (owned here: the "is this device installing or restarting" fact): only a transition into an
 * install opens the expected-restart grace; a repeated, unchanged or terminal patch state never does; the
 * grace ends at the device's first heartbeat after the install's final status.
 */
const T0 = Date.parse('2026-11-26T12:00:00.000Z');
const S = 1000;
const settings = { restartGraceMs: 300 * S, maxInstallMs: 3600 * S };

describe('InstallGrace (table)', () => {
  type Step = ['transition', string, number] | ['heartbeat', number] | ['ask', number, boolean];
  const rows: [string, Step[]][] = [
    ['installing opens it', [['transition', 'installing', 0], ['ask', 60, true]]],
    ['verifying opens it', [['transition', 'verifying', 0], ['ask', 60, true]]],
    ['bounded by the longest install (a device stuck installing is judged again)', [['transition', 'installing', 0], ['ask', 3599.999, true], ['ask', 3600, false]]],
    ['installed after installing keeps it for the restart grace, not at its end', [['transition', 'installing', 0], ['transition', 'installed', 10], ['ask', 309.999, true], ['ask', 310, false]]],
    ['a repeated installing does not extend it', [['transition', 'installing', 0], ['transition', 'installing', 3000], ['ask', 3600, false]]],
    ['the first heartbeat after the final status ends it', [['transition', 'installing', 0], ['transition', 'installed', 10], ['heartbeat', 12], ['ask', 13, false]]],
    ['a heartbeat while installing does not end it', [['transition', 'installing', 0], ['heartbeat', 5], ['ask', 6, true]]],
    ['rolled_back after installing: grace until the first heartbeat', [['transition', 'installing', 0], ['transition', 'rolled_back', 10], ['ask', 11, true], ['heartbeat', 20], ['ask', 21, false]]],
    ['a terminal state alone (repeated after a reconnect) opens nothing', [['transition', 'installed', 0], ['ask', 1, false]]],
    ['rejected before installing opens nothing', [['transition', 'downloading', 0], ['transition', 'rejected', 1], ['ask', 2, false]]],
    ['downloading opens nothing', [['transition', 'downloading', 0], ['ask', 1, false]]],
  ];
  for (const [name, steps] of rows) {
    it(name, () => {
      const g = new InstallGrace(settings);
      for (const step of steps) {
        if (step[0] === 'transition') g.onTransition('gw-1', step[1], T0 + step[2] * S);
        else if (step[0] === 'heartbeat') g.onHeartbeat('gw-1', T0 + step[1] * S);
        else {
          const now = T0 + step[1] * S;
          const until = g.graceUntil('gw-1', now);
          // graceUntil is the same fact as the predicate, always strictly after now.
          expect(until !== null && until > now, `graceUntil at +${step[1]} s`).toBe(step[2]);
          expect(g.isInstallingOrRestarting('gw-1', now), `at +${step[1]} s`).toBe(step[2]);
        }
      }
      expect(g.isInstallingOrRestarting('gw-other', T0)).toBe(false);
      expect(g.graceUntil('gw-other', T0)).toBeNull();
    });
  }
});

describe('InstallGrace.graceUntil: when the grace ends (the liveness step schedules its next look there)', () => {
  it('the install bound while installing, the restart grace after the final status, null after the first heartbeat', () => {
    const g = new InstallGrace(settings);
    g.onTransition('gw-1', 'installing', T0);
    expect(g.graceUntil('gw-1', T0 + 60 * S)).toBe(T0 + 3600 * S);
    g.onTransition('gw-1', 'installed', T0 + 100 * S);
    expect(g.graceUntil('gw-1', T0 + 101 * S)).toBe(T0 + 400 * S);
    g.onHeartbeat('gw-1', T0 + 102 * S);
    expect(g.graceUntil('gw-1', T0 + 103 * S)).toBeNull();
  });
});

/**
 * A data dir whose store holds patch p-1; `make()` opens it as a daemon start would (a fresh PatchService over
 * the same SQLite file), so calling it again after closing the first is a restart.
 */
function patchStore() {
  const dir = tempDir('xcare-grace-');
  const file = join(dir.path, 'x.db');
  const clock = new ManualClock(T0);
  const key = makeKey(dir.path, 'k');
  const make = () => {
    const db = openDatabase(file);
    const repo = new PatchRepository({ db });
    const service = new PatchService({
      repo, artifacts: new ArtifactStore({ dir: join(dir.path, 'a') }), clock, log: silentLogger(), results: createPatchMetrics(new Registry()).results,
      releaseKeys: [], threshold: 1, maxArtifactBytes: 1024, registerIntegrity: () => {}, sendToDevice: () => {}, installGrace: settings,
    });
    return { db, repo, service };
  };
  const first = make();
  const m = manifestFor({ sha256: 'a'.repeat(64), size: 10 }, key, { id: 'p-1', version: '1.1.0' });
  first.repo.insert({ id: 'p-1', version: '1.1.0', manifest: manifestBytes(m), signatures: '[]', sha256: 'a'.repeat(64), size: 10, integrity: null, created_at: 0, expires_at: T0 + 86_400_000 });
  // The offer records: a state for a patch never offered is dropped (it must open nothing).
  for (const id of ['gw-1', 'gw-2', 'gw-3']) {
    first.repo.upsertDevicePatch({ device_id: id, patch_id: 'p-1', rollout_id: null, state: 'offered', detail: '', counted: '', updated_at: T0 });
  }
  return { dir, clock, first, make };
}

describe('PatchService.isInstallingOrRestarting (real SQLite, a daemon restart in between)', () => {
  it('a patch state repeated by heartbeats after a reconnect or a restart never opens the grace', () => {
    const { dir, clock, first, make } = patchStore();
    const beat = (svc: PatchService, state: 'installing' | 'installed') => {
      svc.recordStatus('gw-1', { patchId: 'p-1', state }, clock.now());
      svc.noteHeartbeat('gw-1', clock.now());
    };
    first.service.recordStatus('gw-1', { patchId: 'p-1', state: 'installing' }, clock.now());
    expect(first.service.isInstallingOrRestarting('gw-1', clock.now())).toBe(true);
    clock.advance(10 * S);
    first.service.recordStatus('gw-1', { patchId: 'p-1', state: 'installed' }, clock.now());
    beat(first.service, 'installed'); // the agent's heartbeat right after installing: the device is back
    clock.advance(S);
    expect(first.service.isInstallingOrRestarting('gw-1', clock.now())).toBe(false);
    // Reconnect: the heartbeat repeats `installed` (PROTOCOL.md): nothing opens.
    beat(first.service, 'installed');
    expect(first.service.isInstallingOrRestarting('gw-1', clock.now() + S)).toBe(false);
    first.db.close();
    // Daemon restart: a fresh service, the agent repeats `installed` again: still nothing.
    const second = make();
    second.service.start();
    // Issue 12: the store is read for the first repeat after the restart only, not for every heartbeat.
    const reads = { n: 0 };
    const devicePatch = second.repo.devicePatch.bind(second.repo);
    second.repo.devicePatch = (...args: Parameters<PatchRepository['devicePatch']>) => {
      reads.n++;
      return devicePatch(...args);
    };
    beat(second.service, 'installed');
    expect(second.service.isInstallingOrRestarting('gw-1', clock.now() + S)).toBe(false);
    for (let i = 0; i < 5; i++) beat(second.service, 'installed');
    expect(reads.n).toBe(1);
    second.db.close();
    dir.cleanup();
  });
});

describe('PatchService after a daemon restart in the restart window (real SQLite)', () => {
  const setup = () => {
    const { dir, clock, first, make } = patchStore();
    first.db.exec(`INSERT INTO devices (id, type, customer, installer, tier, tags, token_hash, created_at) VALUES ('gw-1', 'gateway', 'c', 'i', 'xcare', '[]', 'x', 0)`);
    first.service.recordStatus('gw-1', { patchId: 'p-1', state: 'installing' }, clock.now());
    clock.advance(10 * S);
    first.service.recordStatus('gw-1', { patchId: 'p-1', state: 'installed' }, clock.now());
    const finalAt = clock.now();
    return { dir, clock, first, make, finalAt };
  };

  it('an install that ended just before the restart keeps its restart grace until restartGraceMs after the status', () => {
    const { dir, clock, first, make, finalAt } = setup();
    first.db.close(); // kill -9 right after the final status: the device is restarting, not heard from since
    clock.advance(20 * S);
    const second = make();
    second.service.start();
    expect(second.service.installGraceUntil('gw-1', clock.now())).toBe(finalAt + settings.restartGraceMs);
    // Its first heartbeat after the status ends the grace, as before the restart.
    second.service.noteHeartbeat('gw-1', clock.now());
    expect(second.service.isInstallingOrRestarting('gw-1', clock.now())).toBe(false);
    second.db.close();
    dir.cleanup();
  });

  it('no grace when the device was heard from after the status, or the status is older than restartGraceMs', () => {
    const { dir, clock, first, make } = setup();
    first.db.exec(`INSERT INTO device_state (device_id, last_seen) VALUES ('gw-1', ${clock.now() + 1000})`);
    first.db.close();
    const second = make();
    second.service.start();
    expect(second.service.isInstallingOrRestarting('gw-1', clock.now() + 2000)).toBe(false);
    second.db.exec('DELETE FROM device_state');
    second.db.close();
    clock.advance(settings.restartGraceMs + S);
    const third = make();
    third.service.start();
    expect(third.service.isInstallingOrRestarting('gw-1', clock.now())).toBe(false);
    third.db.close();
    dir.cleanup();
  });
});
