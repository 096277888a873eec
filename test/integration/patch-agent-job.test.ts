import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PatchStatus } from '../../src/protocol/types.js';
import { computeTreeDigest } from '../../patches/tree-digest.js';
import { manifestBytes, type Manifest } from '../../patches/manifest.js';
import { loadPinnedKeys } from '../../patches/signing.js';
import { PatchJobRunner } from '../../agent/patch-job.js';
import { PatchJobStore } from '../../agent/patch-job-store.js';
import { parsePatchSettings } from '../../agent/patch-settings.js';
import { createPatchPort } from '../../agent/patch-port-impl.js';
import { silentAgentLogger } from '../../agent/log.js';
import { tempDir } from '../helpers/temp-dir.js';
import {
  ArtifactServer, buildArtifact, exampleCommands, makeDevice, makeKey, makeOffer, manifestFor, statusesOf, TERMINAL,
  type BuiltArtifact, type TestKey,
} from '../helpers/patch-fixtures.js';

const NOW = Date.parse('2026-11-26T12:00:00Z');

let tmp: { path: string; cleanup(): void };
let keyA: TestKey;
let keyB: TestKey;
let unpinned: TestKey;
let artifact: BuiltArtifact;
let device: ReturnType<typeof makeDevice>;
let server: ArtifactServer;
let baseUrl: string;
let files: Map<string, Buffer>;
let originalDigest: string;

beforeEach(async () => {
  tmp = tempDir('xcare-patch-job-');
  keyA = makeKey(tmp.path, 'a');
  keyB = makeKey(tmp.path, 'b');
  unpinned = makeKey(tmp.path, 'u');
  artifact = buildArtifact(tmp.path);
  device = makeDevice(tmp.path);
  files = new Map([['/patches/app-1.1.0/artifact', artifact.bytes]]);
  server = new ArtifactServer(files);
  baseUrl = await server.start();
  originalDigest = await computeTreeDigest(device.softwareDir);
});

afterEach(async () => {
  await server.stop();
  tmp.cleanup();
});

interface Harness {
  runner: PatchJobRunner;
  statuses: PatchStatus[];
  installed: { count: number };
  store: PatchJobStore;
}

function harness(opts: { pinned?: TestKey[]; threshold?: number; deviceType?: 'gateway' | 'sensor'; now?: number; deadlineS?: number; env?: string } = {}): Harness {
  const statuses: PatchStatus[] = [];
  const installed = { count: 0 };
  const prefix = opts.env ? `${opts.env} ` : '';
  const settings = parsePatchSettings(
    {
      keys: (opts.pinned ?? [keyA, keyB]).map((k) => k.pubPath),
      threshold: opts.threshold ?? 1,
      downloadDeadlineS: opts.deadlineS ?? 20,
      commandTimeoutS: 20,
      install: prefix + exampleCommands.install,
      check: prefix + exampleCommands.check,
      rollback: exampleCommands.rollback,
    },
    device.stateDir,
  );
  const store = new PatchJobStore(device.stateDir);
  const runner = new PatchJobRunner({
    deviceId: 'gw-1',
    deviceType: opts.deviceType ?? 'gateway',
    token: 'device-token',
    daemonUrl: baseUrl,
    settings,
    pinnedKeys: loadPinnedKeys(settings.keys),
    store,
    currentVersion: device.version,
    softwareDir: device.softwareDir,
    softwareVersionFile: device.versionFile,
    publishStatus: (s) => statuses.push(s),
    onInstalled: () => installed.count++,
    log: silentAgentLogger(),
    now: () => opts.now ?? NOW,
  });
  return { runner, statuses, installed, store };
}

const payload = (o: object) => Buffer.from(JSON.stringify(o));

async function expectRejected(h: Harness, reason: RegExp, opts: { downloaded?: boolean } = {}): Promise<void> {
  const terminal = h.statuses.filter((s) => TERMINAL.includes(s.state));
  expect(terminal).toHaveLength(1);
  expect(terminal[0]!.state).toBe('rejected');
  expect(terminal[0]!.detail).toMatch(reason);
  expect(h.installed.count).toBe(0);
  expect(device.version()).toBe('1.0.0');
  expect(await computeTreeDigest(device.softwareDir)).toBe(originalDigest);
  expect(statusesOf(h.statuses)).not.toContain('installing');
  if (!opts.downloaded) expect(server.requests).toHaveLength(0);
}

describe('agent patch job: install path', () => {
  it('downloads with device Basic auth, verifies, installs, checks and reports installed', async () => {
    const h = harness();
    await h.runner.handleOffer(payload(makeOffer(manifestFor(artifact, keyA), [keyA], { rolloutId: 'r-1' })));
    expect(statusesOf(h.statuses)).toEqual(['downloading', 'verifying', 'installing', 'installed']);
    expect(h.statuses.every((s) => s.rolloutId === 'r-1' && s.patchId === 'app-1.1.0')).toBe(true);
    expect(device.version()).toBe('1.1.0');
    expect(await computeTreeDigest(device.softwareDir)).toBe(await computeTreeDigest(artifact.tree));
    expect(h.installed.count).toBe(1);
    expect(server.requests[0]!.auth).toBe(`Basic ${Buffer.from('gw-1:device-token').toString('base64')}`);
    expect(h.runner.latest()).toEqual({ rolloutId: 'r-1', patchId: 'app-1.1.0', state: 'installed' });
    expect(existsSync(join(device.stateDir, 'staging', 'app-1.1.0'))).toBe(false);
    expect(h.store.load().highestInstalled).toBe('1.1.0');
  });

  it('a failed check runs rollback and reports rolled_back on the old version', async () => {
    const h = harness({ env: 'XCARE_EXAMPLE_FAIL_CHECK=1' });
    await h.runner.handleOffer(payload(makeOffer(manifestFor(artifact, keyA), [keyA])));
    expect(statusesOf(h.statuses)).toEqual(['downloading', 'verifying', 'installing', 'rolled_back']);
    expect(h.statuses.at(-1)!.detail).toMatch(/check exited 1/);
    expect(device.version()).toBe('1.0.0');
    expect(await computeTreeDigest(device.softwareDir)).toBe(originalDigest);
    expect(h.installed.count).toBe(0);
  });

  it('a failed install runs rollback and reports failed on the old version', async () => {
    const h = harness({ env: 'XCARE_EXAMPLE_FAIL_INSTALL=1' });
    await h.runner.handleOffer(payload(makeOffer(manifestFor(artifact, keyA), [keyA])));
    expect(statusesOf(h.statuses)).toEqual(['downloading', 'verifying', 'installing', 'failed']);
    expect(h.statuses.at(-1)!.detail).toMatch(/install exited 1/);
    expect(device.version()).toBe('1.0.0');
    expect(await computeTreeDigest(device.softwareDir)).toBe(originalDigest);
  });

  it('threshold 2 is met by two distinct pinned keys', async () => {
    const h = harness({ threshold: 2 });
    await h.runner.handleOffer(payload(makeOffer(manifestFor(artifact, keyA), [keyA, keyB])));
    expect(statusesOf(h.statuses).at(-1)).toBe('installed');
  });

  it('resumes an interrupted transfer with Range and installs', async () => {
    server.mode = 'cut-once';
    const h = harness();
    await h.runner.handleOffer(payload(makeOffer(manifestFor(artifact, keyA), [keyA])));
    expect(statusesOf(h.statuses).at(-1)).toBe('installed');
    expect(server.requests.length).toBeGreaterThanOrEqual(2);
    expect(server.requests[0]!.range).toBeUndefined();
    expect(server.requests[1]!.range).toMatch(/^bytes=[1-9]\d*-$/);
  });

  it('accepts createdAt in the future within the clock-skew allowance', async () => {
    const h = harness({ now: Date.parse('2026-11-26T09:57:00Z') }); // 3 min before createdAt, skew 5 min
    await h.runner.handleOffer(payload(makeOffer(manifestFor(artifact, keyA), [keyA])));
    expect(statusesOf(h.statuses).at(-1)).toBe('installed');
  });

  it('a repeated delivery of an installed offer repeats the result and installs nothing', async () => {
    const h = harness();
    const offer = payload(makeOffer(manifestFor(artifact, keyA), [keyA]));
    await h.runner.handleOffer(offer);
    const requests = server.requests.length;
    await h.runner.handleOffer(offer);
    expect(statusesOf(h.statuses)).toEqual(['downloading', 'verifying', 'installing', 'installed', 'installed']);
    expect(server.requests.length).toBe(requests);
    expect(h.installed.count).toBe(1);
  });

  it('drops an offer that is not JSON without reporting anything', async () => {
    const h = harness();
    await h.runner.handleOffer(Buffer.from('{nope'));
    expect(h.statuses).toEqual([]);
  });
});

describe('agent patch job: rejected, never installed', () => {
  it('artifact with one byte changed', async () => {
    const bad = Buffer.from(artifact.bytes);
    bad[100] = bad[100]! ^ 0xff;
    files.set('/patches/app-1.1.0/artifact', bad);
    const h = harness();
    await h.runner.handleOffer(payload(makeOffer(manifestFor(artifact, keyA), [keyA])));
    await expectRejected(h, /sha256/, { downloaded: true });
    expect(statusesOf(h.statuses)).toEqual(['downloading', 'verifying', 'rejected']);
  });

  it('manifest changed after signing', async () => {
    const manifest = manifestFor(artifact, keyA);
    const offer = makeOffer(manifest, [keyA]);
    const tampered = Buffer.from(manifestBytes(manifest).toString('utf8').replace('"software": ">=1.0.0 <1.1.0"', '"software": "*"'));
    offer.manifest = tampered.toString('base64');
    const h = harness();
    await h.runner.handleOffer(payload(offer));
    await expectRejected(h, /signature: no signature verifies/);
  });

  it('signed by an unpinned key', async () => {
    const h = harness();
    await h.runner.handleOffer(payload(makeOffer(manifestFor(artifact, unpinned), [unpinned])));
    await expectRejected(h, /signature: no signature verifies with a pinned key/);
  });

  it('keyId naming an unpinned key, even with a valid pinned signature', async () => {
    const h = harness();
    await h.runner.handleOffer(payload(makeOffer(manifestFor(artifact, unpinned), [keyA])));
    await expectRejected(h, /keyId [0-9a-f]{16} is not a pinned key/);
  });

  it('below threshold: 2 required, 1 given', async () => {
    const h = harness({ threshold: 2 });
    await h.runner.handleOffer(payload(makeOffer(manifestFor(artifact, keyA), [keyA])));
    await expectRejected(h, /only 1 of the 2 required/);
  });

  it('below threshold: the same key twice counts once', async () => {
    const manifest = manifestFor(artifact, keyA);
    const once = makeOffer(manifest, [keyA]);
    const h = harness({ threshold: 2 });
    await h.runner.handleOffer(
      payload({ ...once, signatures: [{ keyId: keyA.keyId, signature: once.signature }, { keyId: keyA.keyId, signature: once.signature }] }),
    );
    await expectRejected(h, /only 1 of the 2 required/);
  });

  it('below threshold: a pinned key plus an unpinned one', async () => {
    const h = harness({ threshold: 2 });
    await h.runner.handleOffer(payload(makeOffer(manifestFor(artifact, keyA), [keyA, unpinned])));
    await expectRejected(h, /only 1 of the 2 required/);
  });

  it('expired (beyond the skew allowance)', async () => {
    const h = harness({ now: Date.parse('2027-02-24T10:06:00Z') });
    await h.runner.handleOffer(payload(makeOffer(manifestFor(artifact, keyA), [keyA])));
    await expectRejected(h, /expired at 2027-02-24T10:00:00Z/);
  });

  it('createdAt in the future beyond the skew allowance', async () => {
    const h = harness({ now: Date.parse('2026-11-26T09:54:00Z') }); // 6 min early, skew 5 min
    await h.runner.handleOffer(payload(makeOffer(manifestFor(artifact, keyA), [keyA])));
    await expectRejected(h, /createdAt .* is in the future/);
  });

  it('wrong device type', async () => {
    const h = harness({ deviceType: 'sensor' });
    await h.runner.handleOffer(payload(makeOffer(manifestFor(artifact, keyA), [keyA])));
    await expectRejected(h, /type sensor not in appliesTo.types \[gateway\]/);
  });

  it('current version outside appliesTo', async () => {
    writeFileSync(device.versionFile, '0.9.0\n');
    originalDigest = await computeTreeDigest(device.softwareDir);
    const h = harness();
    await h.runner.handleOffer(payload(makeOffer(manifestFor(artifact, keyA), [keyA])));
    expect(h.statuses.at(-1)!.detail).toMatch(/current version 0.9.0 outside appliesTo.software '>=1.0.0 <1.1.0'/);
    expect(device.version()).toBe('0.9.0');
    expect(server.requests).toHaveLength(0);
  });

  it('downgrade: version not greater than the running one', async () => {
    const h = harness();
    const m = manifestFor(artifact, keyA, { id: 'app-0.9.0', version: '0.9.0', appliesTo: { types: ['gateway'], software: '*' } });
    await h.runner.handleOffer(payload(makeOffer(m, [keyA])));
    await expectRejected(h, /downgrade: version 0.9.0 is not greater than current 1.0.0/);
  });

  it('same version as the running one', async () => {
    const h = harness();
    const m = manifestFor(artifact, keyA, { id: 'app-1.0.0', version: '1.0.0', appliesTo: { types: ['gateway'], software: '*' } });
    await h.runner.handleOffer(payload(makeOffer(m, [keyA])));
    await expectRejected(h, /downgrade/);
  });

  it('replay of an old offer after upgrading, by a new job instance after a restart', async () => {
    const a = manifestFor(artifact, keyA, { appliesTo: { types: ['gateway'], software: '>=1.0.0' } });
    const offerA = payload(makeOffer(a, [keyA]));
    const first = harness();
    await first.runner.handleOffer(offerA);
    expect(device.version()).toBe('1.1.0');
    const artifact12 = buildArtifact(join(tmp.path, 'v12'), '1.2.0');
    files.set('/patches/app-1.2.0/artifact', artifact12.bytes);
    const b = manifestFor(artifact12, keyA, { id: 'app-1.2.0', version: '1.2.0', appliesTo: { types: ['gateway'], software: '>=1.1.0' }, artifact: { name: 'sample-app-1.2.0.tar.gz', sha256: artifact12.sha256, size: artifact12.size } });
    await first.runner.handleOffer(payload(makeOffer(b, [keyA])));
    expect(device.version()).toBe('1.2.0');
    // Someone puts the old version file back: the persisted history still refuses 1.1.0.
    writeFileSync(device.versionFile, '1.0.0\n');
    const requests = server.requests.length;
    const second = harness(); // fresh store + runner, as after a restart
    await second.runner.handleOffer(offerA);
    expect(second.statuses.map((s) => [s.state, s.detail])).toEqual([['rejected', 'replay: version 1.1.0 is not greater than 1.2.0, installed before']]);
    expect(server.requests.length).toBe(requests);
    expect(device.version()).toBe('1.0.0');
  });

  it('artifact served with size + 1 bytes: the download stops past size', async () => {
    server.mode = 'extra-byte';
    const h = harness();
    await h.runner.handleOffer(payload(makeOffer(manifestFor(artifact, keyA), [keyA])));
    await expectRejected(h, /more than the \d+ bytes/, { downloaded: true });
    expect(statusesOf(h.statuses)).toEqual(['downloading', 'rejected']);
  });

  it('a server that trickles 1 byte/s hits the download deadline (slow retrieval)', async () => {
    server.mode = 'trickle';
    const h = harness({ deadlineS: 1 });
    const started = Date.now();
    await h.runner.handleOffer(payload(makeOffer(manifestFor(artifact, keyA), [keyA])));
    expect(Date.now() - started).toBeLessThan(5000);
    expect(statusesOf(h.statuses)).toEqual(['downloading', 'failed']);
    expect(h.statuses.at(-1)!.detail).toMatch(/slow retrieval/);
    expect(device.version()).toBe('1.0.0');
    expect(h.installed.count).toBe(0);
  });

  it('a download that times out is failed retryable, and the same offer runs again (retries, issue 9)', async () => {
    server.mode = 'trickle';
    const h = harness({ deadlineS: 1 });
    const offer = payload(makeOffer(manifestFor(artifact, keyA), [keyA], { rolloutId: 'r-1' }));
    await h.runner.handleOffer(offer);
    expect(h.statuses.at(-1)).toMatchObject({ state: 'failed', retryable: true });
    expect(h.store.load().finished).not.toContain('app-1.1.0');
    server.mode = 'normal';
    await h.runner.handleOffer(offer);
    expect(h.statuses.at(-1)).toMatchObject({ state: 'installed' });
    expect(device.version()).toBe('1.1.0');
  });

  it('PatchCancel during a download stops it and reports cancelled; the patch may be offered again', async () => {
    server.mode = 'trickle';
    const h = harness({ deadlineS: 30 });
    const running = h.runner.handleOffer(payload(makeOffer(manifestFor(artifact, keyA), [keyA], { rolloutId: 'r-1' })));
    await new Promise((r) => setTimeout(r, 300));
    const started = Date.now();
    h.runner.cancel('app-1.1.0', 'r-1');
    await running;
    expect(Date.now() - started).toBeLessThan(5000);
    expect(statusesOf(h.statuses)).toEqual(['downloading', 'cancelled']);
    expect(h.store.load().finished).not.toContain('app-1.1.0');
    expect(device.version()).toBe('1.0.0');
    // A cancel for another patch, or after the end, changes nothing and repeats the final state.
    h.runner.cancel('other-1.0.0');
    h.runner.cancel('app-1.1.0');
    expect(statusesOf(h.statuses)).toEqual(['downloading', 'cancelled', 'cancelled']);
  });

  it('PatchCancel during install kills the install, rolls back and reports cancelled', async () => {
    const pause = join(device.stateDir, 'pause.pid');
    const h = harness({ env: `XCARE_EXAMPLE_PAUSE_FILE=${pause} XCARE_EXAMPLE_PAUSE_S=20` });
    const running = h.runner.handleOffer(payload(makeOffer(manifestFor(artifact, keyA), [keyA])));
    const deadline = Date.now() + 15_000;
    while (!existsSync(pause) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    h.runner.cancel('app-1.1.0');
    await running;
    expect(statusesOf(h.statuses)).toEqual(['downloading', 'verifying', 'installing', 'cancelled']);
    expect(device.version()).toBe('1.0.0');
    expect(await computeTreeDigest(device.softwareDir)).toBe(originalDigest);
    expect(h.store.job()).toMatchObject({ state: 'cancelled', command: null });
  }, 30_000);

  it('a download URL for another patch', async () => {
    files.set('/patches/other/artifact', artifact.bytes);
    const h = harness();
    await h.runner.handleOffer(payload(makeOffer(manifestFor(artifact, keyA), [keyA], { url: '/patches/other/artifact' })));
    await expectRejected(h, /url '\/patches\/other\/artifact' is not \/patches\/app-1.1.0\/artifact/);
  });
});

describe('agent patch port', () => {
  it('installs through createPatchPort and reports the latest state for the heartbeat', async () => {
    const statuses: PatchStatus[] = [];
    let installed = 0;
    const port = createPatchPort({
      deviceId: 'gw-1', deviceType: 'gateway', token: 'device-token', daemonUrl: baseUrl, stateDir: device.stateDir,
      settings: { keys: [keyA.pubPath], ...exampleCommands, commandTimeoutS: 20 },
      currentVersion: device.version, softwareDir: device.softwareDir, softwareVersionFile: device.versionFile,
      publishStatus: (s) => statuses.push(s), onInstalled: () => installed++, log: silentAgentLogger(),
    });
    port.onConnected();
    const m = manifestFor(artifact, keyA, { createdAt: new Date(Date.now() - 60_000).toISOString().replace(/\.\d+Z$/, 'Z'), expiresAt: '2099-01-01T00:00:00Z' });
    port.handleOffer(payload(makeOffer(m, [keyA])));
    for (let i = 0; i < 200 && installed === 0; i++) await new Promise((r) => setTimeout(r, 25));
    await port.stop();
    expect(statusesOf(statuses)).toEqual(['downloading', 'verifying', 'installing', 'installed']);
    expect(port.heartbeatField()).toEqual({ patchId: 'app-1.1.0', state: 'installed' });
    expect(device.version()).toBe('1.1.0');
  });

  it('with invalid patches settings reports every offer rejected with the key path', async () => {
    const statuses: PatchStatus[] = [];
    const port = createPatchPort({
      deviceId: 'gw-1', deviceType: 'gateway', token: 't', daemonUrl: baseUrl, stateDir: device.stateDir,
      settings: { keys: [keyA.pubPath], threshold: 0, install: 5 },
      currentVersion: device.version, softwareDir: device.softwareDir, softwareVersionFile: device.versionFile,
      publishStatus: (s) => statuses.push(s), onInstalled: () => {}, log: silentAgentLogger(),
    });
    port.handleOffer(payload(makeOffer(manifestFor(artifact, keyA), [keyA])));
    for (let i = 0; i < 100 && statuses.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    await port.stop();
    expect(statuses).toHaveLength(1);
    expect(statuses[0]!.state).toBe('rejected');
    expect(statuses[0]!.detail).toMatch(/patches.threshold: must be an integer >= 1; patches.install: must be a shell command/);
    expect(server.requests).toHaveLength(0);
  });
});
