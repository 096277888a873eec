import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { ManualClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import { openDatabase, type Database } from '../../src/db/database.js';
import { Router } from '../../src/http/router.js';
import { HttpServer } from '../../src/http/server.js';
import { registerPatchRoutes } from '../../src/http/routes/patches.js';
import { PatchService } from '../../src/patches/patch-service.js';
import { PatchRepository } from '../../src/patches/patch-repository.js';
import { ArtifactStore } from '../../src/patches/artifact-store.js';
import { createPatchMetrics } from '../../src/patches/patch-metrics.js';
import { createCliContext } from '../../src/cli/cli-context.js';
import { commands } from '../../src/cli/commands/patch.js';
import type { PatchOffer, PatchStatus } from '../../src/protocol/types.js';
import { manifestBytes, type Manifest } from '../../patches/manifest.js';
import { signBytes, loadPinnedKeys } from '../../patches/signing.js';
import { PatchJobRunner } from '../../agent/patch-job.js';
import { PatchJobStore } from '../../agent/patch-job-store.js';
import { parsePatchSettings } from '../../agent/patch-settings.js';
import { silentAgentLogger } from '../../agent/log.js';
import { tempDir } from '../helpers/temp-dir.js';
import { buildArtifact, exampleCommands, makeDevice, makeKey, manifestFor, type BuiltArtifact, type TestKey } from '../helpers/patch-fixtures.js';

const ADMIN = 'admin-secret';
const NOW = '2026-11-26T12:00:00Z';

let tmp: { path: string; cleanup(): void };
let db: Database;
let http: HttpServer;
let url: string;
let service: PatchService;
let metrics: Registry;
let keyA: TestKey;
let keyB: TestKey;
let unpinned: TestKey;
let artifact: BuiltArtifact;
let sent: { deviceId: string; payload: string }[];
let integrity: [string, string][];
let clock: ManualClock;
let onSent: (deviceId: string, payload: string) => void;

async function setup(threshold = 1): Promise<void> {
  clock = new ManualClock(NOW);
  db = openDatabase(join(tmp.path, 'data', 'xcare.db'));
  metrics = new Registry();
  sent = [];
  integrity = [];
  onSent = () => {};
  service = new PatchService({
    repo: new PatchRepository({ db }),
    artifacts: new ArtifactStore({ dir: join(tmp.path, 'data', 'artifacts') }),
    clock,
    log: silentLogger(),
    ...createPatchMetrics(metrics),
    releaseKeys: [keyA.pubPath, keyB.pubPath],
    threshold,
    maxArtifactBytes: 1024 * 1024,
    registerIntegrity: (v, d) => integrity.push([v, d]),
    sendToDevice: (deviceId, payload) => {
      sent.push({ deviceId, payload });
      onSent(deviceId, payload);
    },
  });
  service.start();
  const router = new Router();
  registerPatchRoutes(router, {
    patches: service,
    authenticateDevice: async (id, token) => (id === 'gw-1' && token === 'tok1') || (id === 'gw-2' && token === 'tok2'),
    deviceExists: (id) => id === 'gw-1' || id === 'gw-2',
  });
  http = new HttpServer({ router, log: silentLogger(), host: '127.0.0.1', port: 0, adminToken: ADMIN });
  await http.start();
  url = `http://127.0.0.1:${http.port()}`;
}

beforeEach(() => {
  tmp = tempDir('xcare-patch-daemon-');
  keyA = makeKey(tmp.path, 'a');
  keyB = makeKey(tmp.path, 'b');
  unpinned = makeKey(tmp.path, 'u');
  artifact = buildArtifact(tmp.path);
});

afterEach(async () => {
  await http?.stop();
  db?.close();
  tmp.cleanup();
});

function signed(manifest: Manifest, signers: TestKey[]): { bytes: Buffer; signatures: { keyId: string; signature: string }[] } {
  const bytes = manifestBytes(manifest);
  return { bytes, signatures: signers.map((k) => ({ keyId: k.keyId, signature: signBytes(bytes, k.privateKey).toString('base64') })) };
}

function publishRaw(bytes: Buffer, signatures: unknown[] | undefined, body: Buffer): Promise<Response> {
  const headers: Record<string, string> = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/octet-stream', 'x-xcare-manifest': bytes.toString('base64') };
  if (signatures) headers['x-xcare-signatures'] = Buffer.from(JSON.stringify(signatures)).toString('base64');
  return fetch(`${url}/api/v1/patches`, { method: 'POST', headers, body: new Uint8Array(body) });
}

const withIntegrity = () => manifestFor(artifact, keyA, { integrity: `sha256:${'c'.repeat(64)}`, expiresAt: '2027-02-24T10:00:00Z' });

async function publishGood(): Promise<Manifest> {
  const m = withIntegrity();
  const { bytes, signatures } = signed(m, [keyA]);
  const res = await publishRaw(bytes, signatures, artifact.bytes);
  expect(res.status).toBe(201);
  return m;
}

function artifactFiles(): string[] {
  const dir = join(tmp.path, 'data', 'artifacts');
  return existsSync(dir) ? readdirSync(dir).filter((f) => f !== 'tmp') : [];
}

async function expectRefused(res: Response, message: RegExp): Promise<void> {
  expect(res.status).toBe(400);
  expect(((await res.json()) as { error: string }).error).toMatch(message);
  expect(service.list()).toEqual([]);
  expect(artifactFiles()).toEqual([]);
  expect(integrity).toEqual([]);
  const tmpDir = join(tmp.path, 'data', 'artifacts', 'tmp');
  expect(existsSync(tmpDir) ? readdirSync(tmpDir) : []).toEqual([]); // no half uploads left behind
}

describe('patch publish', () => {
  it('xcarectl patch publish stores the artifact content-addressed and registers the integrity digest', async () => {
    await setup();
    const m = withIntegrity();
    const { bytes, signatures } = signed(m, [keyA]);
    writeFileSync(join(tmp.path, 'p.manifest.json'), bytes);
    writeFileSync(join(tmp.path, 'p.sig'), `${signatures[0]!.signature}\n`);
    const out: string[] = [];
    const ctx = createCliContext({ url, token: ADMIN, json: false, env: {}, cwd: tmp.path, out: (s) => out.push(s) });
    const publish = commands.find((c) => c.name.join(' ') === 'patch publish')!;
    await publish.run(['--manifest', 'p.manifest.json', '--sig', 'p.sig', '--artifact', artifact.path], ctx);
    expect(out.join('')).toMatch(/published: app-1.1.0 1.1.0/);
    expect(artifactFiles()).toEqual([artifact.sha256]);
    expect(readFileSync(join(tmp.path, 'data', 'artifacts', artifact.sha256)).equals(artifact.bytes)).toBe(true);
    expect(integrity).toEqual([['1.1.0', `sha256:${'c'.repeat(64)}`]]);
    const list = commands.find((c) => c.name.join(' ') === 'patch list')!;
    out.length = 0;
    await list.run([], ctx);
    expect(out.join('')).toMatch(/app-1\.1\.0\s+1\.1\.0\s+gateway/);
    // Publishing the same thing again is idempotent.
    await publish.run(['--manifest', 'p.manifest.json', '--sig', 'p.sig', '--artifact', artifact.path], ctx);
    expect(out.join('')).toMatch(/already published/);
    expect(integrity).toHaveLength(1);
  });

  it('refuses an unsigned patch', async () => {
    await setup();
    await expectRefused(await publishRaw(manifestBytes(withIntegrity()), undefined, artifact.bytes), /unsigned/);
  });

  it('refuses a patch signed by a key that is not a release key', async () => {
    await setup();
    const { bytes, signatures } = signed(manifestFor(artifact, unpinned), [unpinned]);
    await expectRefused(await publishRaw(bytes, signatures, artifact.bytes), /signatures: no signature verifies/);
  });

  it('refuses a manifest changed after signing', async () => {
    await setup();
    const { bytes, signatures } = signed(withIntegrity(), [keyA]);
    const changed = Buffer.from(bytes.toString().replace('"types": [\n      "gateway"\n    ]', '"types": [\n      "sensor"\n    ]'));
    expect(changed.equals(bytes)).toBe(false);
    await expectRefused(await publishRaw(changed, signatures, artifact.bytes), /signatures: no signature verifies/);
  });

  it('refuses signatures below the configured threshold (and the same key twice)', async () => {
    await setup(2);
    const { bytes, signatures } = signed(withIntegrity(), [keyA]);
    await expectRefused(await publishRaw(bytes, signatures, artifact.bytes), /only 1 of the 2 required/);
    await expectRefused(await publishRaw(bytes, [signatures[0], signatures[0]], artifact.bytes), /only 1 of the 2 required/);
    const both = signed(withIntegrity(), [keyA, keyB]);
    expect((await publishRaw(both.bytes, both.signatures, artifact.bytes)).status).toBe(201);
  });

  it('refuses an artifact whose size does not match', async () => {
    await setup();
    const { bytes, signatures } = signed(withIntegrity(), [keyA]);
    await expectRefused(await publishRaw(bytes, signatures, artifact.bytes.subarray(1)), /artifact: upload is \d+ bytes, manifest says/);
    await expectRefused(await publishRaw(bytes, signatures, Buffer.concat([artifact.bytes, Buffer.from('x')])), /artifact/);
  });

  it('refuses an artifact whose sha256 does not match', async () => {
    await setup();
    const { bytes, signatures } = signed(withIntegrity(), [keyA]);
    const bad = Buffer.from(artifact.bytes);
    bad[5] = bad[5]! ^ 1;
    await expectRefused(await publishRaw(bytes, signatures, bad), /sha256 [0-9a-f]{64} does not match/);
  });

  it('refuses an expired manifest', async () => {
    await setup();
    clock.set('2027-03-01T00:00:00Z');
    const { bytes, signatures } = signed(withIntegrity(), [keyA]);
    await expectRefused(await publishRaw(bytes, signatures, artifact.bytes), /expired/);
  });

  it('refuses another manifest under an existing patch id (409)', async () => {
    await setup();
    await publishGood();
    const { bytes, signatures } = signed({ ...withIntegrity(), expiresAt: '2027-01-01T00:00:00Z' }, [keyA]);
    expect((await publishRaw(bytes, signatures, artifact.bytes)).status).toBe(409);
  });

  it('requires the admin token', async () => {
    await setup();
    const res = await fetch(`${url}/api/v1/patches`, { method: 'POST', body: 'x' });
    expect(res.status).toBe(401);
  });
});

describe('offers and the artifact route', () => {
  const auth = (id: string, token: string) => ({ authorization: `Basic ${Buffer.from(`${id}:${token}`).toString('base64')}` });
  const offerTo = (device: string, body: unknown) =>
    fetch(`${url}/api/v1/devices/${device}/offer`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });

  it('POST /api/v1/devices/:id/offer publishes the signed PatchOffer through sendToDevice', async () => {
    await setup();
    const m = await publishGood();
    const res = await offerTo('gw-1', { patchId: 'app-1.1.0', rolloutId: 'r-1' });
    expect(res.status).toBe(200);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.deviceId).toBe('gw-1');
    const offer = JSON.parse(sent[0]!.payload) as PatchOffer;
    expect(offer).toEqual({ rolloutId: 'r-1', manifest: manifestBytes(m).toString('base64'), signature: expect.any(String), url: '/patches/app-1.1.0/artifact' });
    expect(service.get('app-1.1.0').deviceStates).toMatchObject([{ deviceId: 'gw-1', state: 'offered', rolloutId: 'r-1' }]);
  });

  it('offer: unknown patch 404, unknown device 404, bad body 400', async () => {
    await setup();
    expect((await offerTo('gw-1', { patchId: 'nope' })).status).toBe(404);
    await publishGood();
    expect((await offerTo('gw-9', { patchId: 'app-1.1.0' })).status).toBe(404);
    expect((await offerTo('gw-1', { patch: 'app-1.1.0' })).status).toBe(400);
    expect(sent).toEqual([]);
  });

  it('artifact: 401 without or with wrong device credentials, 403 without an offer, 200 with one', async () => {
    await setup();
    await publishGood();
    await offerTo('gw-1', { patchId: 'app-1.1.0' });
    const path = `${url}/patches/app-1.1.0/artifact`;
    const none = await fetch(path);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Basic/);
    expect((await fetch(path, { headers: auth('gw-1', 'wrong') })).status).toBe(401);
    expect((await fetch(path, { headers: { authorization: `Bearer ${ADMIN}` } })).status).toBe(401);
    expect((await fetch(path, { headers: auth('gw-2', 'tok2') })).status).toBe(403);
    expect((await fetch(`${url}/patches/other/artifact`, { headers: auth('gw-1', 'tok1') })).status).toBe(403);
    const ok = await fetch(path, { headers: auth('gw-1', 'tok1') });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-length')).toBe(String(artifact.size));
    expect(ok.headers.get('accept-ranges')).toBe('bytes');
    expect(Buffer.from(await ok.arrayBuffer()).equals(artifact.bytes)).toBe(true);
  });

  it('artifact: Range bytes=N- and N-M give 206, past the end gives 416', async () => {
    await setup();
    await publishGood();
    await offerTo('gw-1', { patchId: 'app-1.1.0' });
    const get = (range: string) => fetch(`${url}/patches/app-1.1.0/artifact`, { headers: { ...auth('gw-1', 'tok1'), range } });
    const open = await get('bytes=100-');
    expect(open.status).toBe(206);
    expect(open.headers.get('content-range')).toBe(`bytes 100-${artifact.size - 1}/${artifact.size}`);
    expect(open.headers.get('content-length')).toBe(String(artifact.size - 100));
    expect(Buffer.from(await open.arrayBuffer()).equals(artifact.bytes.subarray(100))).toBe(true);
    const closed = await get('bytes=10-19');
    expect(closed.status).toBe(206);
    expect(Buffer.from(await closed.arrayBuffer()).equals(artifact.bytes.subarray(10, 20))).toBe(true);
    const past = await get(`bytes=${artifact.size}-`);
    expect(past.status).toBe(416);
    expect(past.headers.get('content-range')).toBe(`bytes */${artifact.size}`);
    expect((await get('bytes=5-1')).status).toBe(200); // invalid range: ignored, full body
  });
});

describe('device patch states', () => {
  const st = (state: PatchStatus['state'], detail?: string): PatchStatus => ({ patchId: 'app-1.1.0', state, ...(detail !== undefined ? { detail } : {}) });
  const resultCount = async (result: string) =>
    (await metrics.getSingleMetric('fleet_patch_results_total')!.get()).values.find((v) => v.labels.result === result)?.value ?? 0;

  it('records statuses in order, ignores repeats and stale ones, counts a terminal state once', async () => {
    await setup();
    await publishGood();
    const seen: string[] = [];
    service.onStatus((id, s) => seen.push(`${id}:${s.state}`));
    const t = clock.now();
    // Never offered: a claim, dropped and counted (it would open the install grace and show in `patch list`).
    expect(service.recordStatus('gw-1', st('installing'), t)).toBe(false);
    expect((await metrics.getSingleMetric('fleet_patch_status_dropped_total')!.get()).values[0]!.value).toBe(1);
    expect(service.deviceStates('gw-1')).toEqual([]);
    await service.offer('gw-1', 'app-1.1.0');
    expect(service.recordStatus('gw-1', st('downloading'), t)).toBe(true);
    expect(service.recordStatus('gw-1', st('downloading'), t)).toBe(false);
    expect(service.recordStatus('gw-1', st('installing'), t)).toBe(true);
    expect(service.recordStatus('gw-1', st('verifying'), t)).toBe(false); // late, stale
    expect(service.recordStatus('gw-1', st('installed', 'installed 1.1.0'), t)).toBe(true);
    expect(service.recordStatus('gw-1', st('installed'), t)).toBe(false); // heartbeat repeat
    expect(service.recordStatus('gw-1', st('rejected', 'replay'), t)).toBe(false); // after terminal
    expect(service.recordStatus('gw-1', { patchId: 'unknown', state: 'installed' }, t)).toBe(false);
    expect(seen).toEqual(['gw-1:downloading', 'gw-1:installing', 'gw-1:installed']);
    expect(service.deviceStates('gw-1')).toMatchObject([{ patchId: 'app-1.1.0', state: 'installed', detail: 'installed 1.1.0' }]);
    expect(await resultCount('installed')).toBe(1);
    // One offer per device and patch: a second is refused, and the terminal result stays counted once.
    await expect(service.offer('gw-1', 'app-1.1.0')).rejects.toThrow(/already offered/);
    expect(service.recordStatus('gw-1', st('installed'), t)).toBe(false);
    expect(await resultCount('installed')).toBe(1);
    expect(await resultCount('rejected')).toBe(0);
  });
});

describe('offer redelivery on reconnect', () => {
  it('sends the same offer again while the device has reported nothing, records no new offer, and stops once it reports', async () => {
    await setup();
    await publishGood();
    expect(await service.redeliver('gw-1', 'app-1.1.0', 'r-1')).toBe(false); // never offered
    await service.offer('gw-1', 'app-1.1.0', 'r-1');
    expect(await service.redeliver('gw-1', 'app-1.1.0', 'r-1')).toBe(true);
    expect(sent).toHaveLength(2);
    expect(sent[1]!.payload).toBe(sent[0]!.payload);
    expect(service.get('app-1.1.0').deviceStates).toHaveLength(1);
    service.recordStatus('gw-1', { patchId: 'app-1.1.0', state: 'downloading' }, clock.now());
    expect(await service.redeliver('gw-1', 'app-1.1.0', 'r-1')).toBe(false);
    expect(sent).toHaveLength(2);
  });
});

describe('the whole path: publish, offer, a real agent job downloads from the daemon and installs', () => {
  it('installs 1.1.0 and the daemon records installed', async () => {
    await setup();
    await publishGood();
    const device = makeDevice(tmp.path);
    const settings = parsePatchSettings({ keys: [keyA.pubPath], commandTimeoutS: 20, ...exampleCommands }, device.stateDir);
    const runner = new PatchJobRunner({
      deviceId: 'gw-1', deviceType: 'gateway', token: 'tok1', daemonUrl: url, settings, pinnedKeys: loadPinnedKeys(settings.keys),
      store: new PatchJobStore(device.stateDir), currentVersion: device.version, softwareDir: device.softwareDir,
      softwareVersionFile: device.versionFile, publishStatus: (s) => service.recordStatus('gw-1', s, clock.now()),
      onInstalled: () => {}, log: silentAgentLogger(), now: () => clock.now(),
    });
    let job: Promise<void> = Promise.resolve();
    onSent = (_id, payload) => {
      job = runner.handleOffer(Buffer.from(payload));
    };
    await service.offer('gw-1', 'app-1.1.0', 'r-7');
    await job;
    expect(device.version()).toBe('1.1.0');
    expect(service.get('app-1.1.0').deviceStates).toMatchObject([{ deviceId: 'gw-1', state: 'installed', rolloutId: 'r-7' }]);
  });
});

describe('patch publish with a chunked upload', () => {
  it('answers 400 (not a reset) when a chunked body runs past the manifest size', async () => {
    await setup();
    const { bytes, signatures } = signed(withIntegrity(), [keyA]);
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new Uint8Array(artifact.bytes));
        c.enqueue(new Uint8Array(Buffer.alloc(5000, 1)));
        c.close();
      },
    });
    const res = await fetch(`${url}/api/v1/patches`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'x-xcare-manifest': bytes.toString('base64'), 'x-xcare-signatures': Buffer.from(JSON.stringify(signatures)).toString('base64') },
      body,
      duplex: 'half',
    } as RequestInit);
    await expectRefused(res, /artifact: more than the \d+ bytes/);
  });
});

describe('patch publish and the integrity registry', () => {
  it('is all or nothing: a refused integrity registration leaves no patch behind', async () => {
    await setup();
    const failing = new PatchService({
      ...(service as unknown as { deps: ConstructorParameters<typeof PatchService>[0] }).deps,
      registerIntegrity: () => {
        throw new Error('another digest is registered for 1.1.0');
      },
    });
    const { bytes, signatures } = signed(withIntegrity(), [keyA]);
    const { Readable } = await import('node:stream');
    await expect(failing.publish({ manifestBytes: bytes, signatures, artifact: Readable.from([artifact.bytes]) })).rejects.toThrow(/another digest/);
    expect(failing.list()).toEqual([]);
  });
});
