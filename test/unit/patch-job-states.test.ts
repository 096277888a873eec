import { describe, it, expect } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JOB_STATES, TRANSITIONS, assertTransition, canTransition, wireState, type JobState } from '../../agent/patch-job-states.js';
import { PatchJobStore } from '../../agent/patch-job-store.js';
import { parsePatchSettings } from '../../agent/patch-settings.js';

const ALLOWED: [JobState, JobState][] = [
  ['offered', 'downloading'], ['offered', 'rejected'], ['offered', 'failed'], ['offered', 'cancelled'],
  ['downloading', 'verifying'], ['downloading', 'rejected'], ['downloading', 'failed'], ['downloading', 'cancelled'],
  ['verifying', 'installing'], ['verifying', 'rejected'], ['verifying', 'failed'], ['verifying', 'cancelled'],
  ['installing', 'health-check'], ['installing', 'failed'], ['installing', 'cancelled'], ['installing', 'rebooting'],
  ['rebooting', 'health-check'], ['rebooting', 'failed'],
  ['health-check', 'installed'], ['health-check', 'rolled_back'], ['health-check', 'failed'],
];

describe('patch job state table', () => {
  it('allows exactly the listed transitions and throws on every other pair', () => {
    const allowed = new Set(ALLOWED.map(([a, b]) => `${a}>${b}`));
    for (const from of JOB_STATES) {
      for (const to of JOB_STATES) {
        const ok = allowed.has(`${from}>${to}`);
        expect(canTransition(from, to), `${from} -> ${to}`).toBe(ok);
        if (ok) expect(() => assertTransition(from, to)).not.toThrow();
        else expect(() => assertTransition(from, to)).toThrow(/illegal patch job transition/);
      }
    }
  });

  it('terminal states have no way out; installing can never be skipped on the way to installed', () => {
    for (const t of ['installed', 'failed', 'rolled_back', 'rejected'] as const) expect(TRANSITIONS[t]).toEqual([]);
    expect(canTransition('verifying', 'installed')).toBe(false);
    expect(canTransition('installing', 'installed')).toBe(false);
  });

  it('maps job states to PatchStatus states (offered is silent, health-check is still installing)', () => {
    expect(JOB_STATES.map((s) => wireState(s))).toEqual([
      undefined, 'downloading', 'verifying', 'installing', 'installing', 'installed', 'failed', 'rolled_back', 'rejected', 'cancelled', 'installing',
    ]);
  });
});

describe('patch job store', () => {
  const offer = { manifest: 'e30=', signature: 'AA==', url: '/patches/p/artifact' };

  it('persists each transition durably, with the replay history in the same write', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xcare-store-'));
    try {
      const store = new PatchJobStore(dir);
      store.begin({ patchId: 'p', version: '1.1.0', offer }, 0);
      for (const s of ['downloading', 'verifying', 'installing', 'health-check', 'installed'] as const) {
        store.transition(s, '', 0);
        // A fresh store (a restarted agent) reads exactly what was written.
        expect(new PatchJobStore(dir).job()!.state).toBe(s);
      }
      const reread = new PatchJobStore(dir).load();
      expect(reread.highestInstalled).toBe('1.1.0');
      expect(reread.finished).toEqual(['p']);
      expect(() => store.transition('downloading', '', 0)).toThrow(/illegal patch job transition installed -> downloading/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a rejected offer does not enter the finished set (it never ran)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xcare-store-'));
    try {
      const store = new PatchJobStore(dir);
      store.begin({ patchId: 'p', version: '0.0.0', offer }, 0);
      store.transition('rejected', 'expired', 0);
      expect(new PatchJobStore(dir).load().finished).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a corrupt state file instead of forgetting the history', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xcare-store-'));
    try {
      mkdirSync(join(dir, 'patch'));
      writeFileSync(join(dir, 'patch', 'state.json'), '{"version":1,"job":null,"highestInstalled":"x","finished":[]}');
      expect(() => new PatchJobStore(dir).load()).toThrow(/highestInstalled: invalid/);
      writeFileSync(join(dir, 'patch', 'state.json'), '{trunc');
      expect(() => new PatchJobStore(dir).load()).toThrow(/not JSON/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('leaves no temp file behind', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xcare-store-'));
    try {
      new PatchJobStore(dir).begin({ patchId: 'p', version: '1.0.0', offer }, 0);
      expect(JSON.parse(readFileSync(join(dir, 'patch', 'state.json'), 'utf8')).job.state).toBe('offered');
      expect(readdirSync(join(dir, 'patch'))).toEqual(['state.json']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('patches: settings', () => {
  it('fills defaults', () => {
    const s = parsePatchSettings({ keys: ['/k.pem'] }, '/state');
    expect(s).toEqual({ keys: ['/k.pem'], threshold: 1, clockSkewS: 300, downloadDeadlineS: 600, commandTimeoutS: 300, stagingDir: '/state/staging', bootIdFile: '/proc/sys/kernel/random/boot_id' });
  });

  it.each([
    [{ keys: 'k.pem' }, 'patches.keys: must be a list of PEM public key paths'],
    [{ keys: [''] }, 'patches.keys.0: must be a file path'],
    [{ threshold: 1.5 }, 'patches.threshold: must be an integer >= 1'],
    [{ keys: ['/a'], threshold: 2 }, 'patches.threshold: is 2 but only 1 keys are pinned'],
    [{ clockSkewS: -1 }, 'patches.clockSkewS: must be a number >= 0'],
    [{ downloadDeadlineS: 'soon' }, 'patches.downloadDeadlineS: must be a number'],
    [{ install: '' }, 'patches.install: must be a shell command'],
    [{ stagingDir: 3 }, 'patches.stagingDir: must be a directory path'],
    [{ keyz: [] }, 'patches.keyz: unknown key'],
  ])('rejects %j', (raw, message) => {
    expect(() => parsePatchSettings(raw as Record<string, unknown>, '/state')).toThrow(message);
  });
});
