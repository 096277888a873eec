import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import type { MqttClient } from 'mqtt';
import { systemClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import { openDatabase, type Database } from '../../src/db/database.js';
import { PatchService } from '../../src/patches/patch-service.js';
import { PatchRepository } from '../../src/patches/patch-repository.js';
import { ArtifactStore } from '../../src/patches/artifact-store.js';
import { createPatchMetrics } from '../../src/patches/patch-metrics.js';
import { manifestBytes } from '../../patches/manifest.js';
import { topics } from '../../src/protocol/topics.js';
import { connectDevice, startFleetBroker, type BrokerFixture } from '../helpers/mqtt-client.js';
import { makeKey, manifestFor } from '../helpers/patch-fixtures.js';
import { tempDir } from '../helpers/temp-dir.js';

/**
 * Issue 9 fault 1, as a class: every daemon -> device command (offer, re-sent offer, cancel) reaches a device
 * that reconnects with a clean session, whatever the moment it was issued (before CONNECT, between CONNECT
 * and CONNACK, between CONNACK and SUBSCRIBE, after). Real FleetBroker (aedes) on loopback, real mqtt
 * clients, real SQLite file. Before the fix the daemon published when the broker registered the connection
 * (before the device's SUBSCRIBE) and recorded it as offered: those offers were lost.
 */
describe('daemon -> device commands are delivered once the device has subscribed', () => {
  const dir = tempDir('xcare-delivery-');
  const ROUNDS = 200;
  const device = { id: 'gw-del-1', token: 'tok-del-1' };
  let fx: BrokerFixture;
  let db: Database;
  let service: PatchService;
  /** Rollouts that have ended (the scheduler's isActive answers false for them). */
  const endedRollouts = new Set<string>();

  beforeAll(async () => {
    fx = await startFleetBroker({ [device.id]: device.token });
    db = openDatabase(join(dir.path, 'xcare.db'));
    const repo = new PatchRepository({ db });
    const key = makeKey(dir.path, 'k');
    // One published patch per round (an offer of the same patch to the same device is recorded only once).
    for (let i = 0; i < ROUNDS + 1; i++) {
      const m = manifestFor({ sha256: 'a'.repeat(64), size: 10 }, key, { id: `p-${i}`, version: `1.1.${i}` });
      repo.insert({ id: m.id, version: m.version, manifest: manifestBytes(m), signatures: JSON.stringify([{ keyId: key.keyId, signature: 'c2ln' }]), sha256: 'a'.repeat(64), size: 10, integrity: null, created_at: 0, expires_at: Date.parse('2099-01-01T00:00:00Z') });
    }
    service = new PatchService({
      repo,
      artifacts: new ArtifactStore({ dir: join(dir.path, 'artifacts') }),
      clock: systemClock,
      log: silentLogger(),
      results: createPatchMetrics(new Registry()).results,
      releaseKeys: [],
      threshold: 1,
      maxArtifactBytes: 1024,
      registerIntegrity: () => {},
      sendToDevice: (id, payload) => fx.broker.publishToDevice(id, payload),
      canReceive: (id) => fx.broker.isReady(id),
      rolloutActive: (id) => !endedRollouts.has(id),
    });
    // The wiring of src/app.ts deviceReady(): the broker's ready signal sends what is owed.
    fx.broker.onDeviceReady((id) => void service.onDeviceReady(id));
  });
  afterAll(async () => {
    await fx.broker.stop();
    db.close();
    dir.cleanup();
  });

  const patchOf = (payload: Buffer) => {
    const o = JSON.parse(payload.toString()) as { manifest?: string; action?: string; patchId?: string };
    if (o.action === 'cancel') return `cancel:${o.patchId}`;
    return (JSON.parse(Buffer.from(o.manifest!, 'base64').toString()) as { id: string }).id;
  };
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it(`over ${ROUNDS} reconnects at random moments, not one offer is lost`, async () => {
    const lost: string[] = [];
    let previous: MqttClient | undefined;
    for (let i = 0; i < ROUNDS; i++) {
      const patchId = `p-${i}`;
      const moment = i % 4; // 0: while offline, 1: during CONNECT, 2: after CONNACK before SUBSCRIBE, 3: right after SUBSCRIBE
      // The previous connection ends abruptly half the time (no DISCONNECT), cleanly otherwise.
      if (previous) {
        if (i % 2 === 0) previous.stream.destroy();
        else await previous.endAsync();
        previous = undefined;
      }
      const got: string[] = [];
      const offer = () => service.offer(device.id, patchId).catch((err: unknown) => lost.push(`${patchId}: ${String(err)}`));
      if (moment === 0) await offer();
      const connecting = connectDevice(fx.url, device, { manualConnect: false });
      if (moment === 1) await offer();
      const client = await connecting;
      client.on('message', (_topic, payload) => got.push(patchOf(payload)));
      if (moment === 2) await offer();
      // A random delay between CONNACK and SUBSCRIBE, as on a slow device.
      await sleep(Math.floor(Math.random() * 15));
      await client.subscribeAsync(topics.cmdFilter(device.id), { qos: 1 });
      if (moment === 3) await offer();
      const deadline = Date.now() + 3000;
      while (!got.includes(patchId) && Date.now() < deadline) await sleep(5);
      if (!got.includes(patchId)) lost.push(`${patchId} (moment ${moment})`);
      previous = client;
    }
    await previous?.endAsync();
    expect(lost).toEqual([]);
    // one record of "offered" per device and patch
    expect(db.prepare('SELECT COUNT(*) AS n FROM patch_offers').get()).toEqual({ n: ROUNDS });
  }, 180_000);

  it('an offer not acted on is re-sent on every reconnect; a cancel owed is re-sent until the job ends', async () => {
    await service.offer(device.id, `p-${ROUNDS}`);
    for (let k = 0; k < 2; k++) {
      const client = await connectDevice(fx.url, device);
      const got: string[] = [];
      client.on('message', (_t, payload) => got.push(patchOf(payload)));
      await client.subscribeAsync(topics.cmdFilter(device.id), { qos: 1 });
      const deadline = Date.now() + 3000;
      while (!got.includes(`p-${ROUNDS}`) && Date.now() < deadline) await sleep(5);
      expect(got).toContain(`p-${ROUNDS}`);
      await client.endAsync();
    }
    // The device starts the job; then the daemon asks to cancel while it is offline.
    service.recordStatus(device.id, { patchId: `p-${ROUNDS}`, state: 'downloading' }, Date.now());
    expect(await service.cancel(device.id, `p-${ROUNDS}`)).toBe(true);
    const client = await connectDevice(fx.url, device);
    const got: string[] = [];
    client.on('message', (_t, payload) => got.push(patchOf(payload)));
    await client.subscribeAsync(topics.cmdFilter(device.id), { qos: 1 });
    const deadline = Date.now() + 3000;
    while (!got.includes(`cancel:p-${ROUNDS}`) && Date.now() < deadline) await sleep(5);
    expect(got).toContain(`cancel:p-${ROUNDS}`);
    expect(got).not.toContain(`p-${ROUNDS}`); // the device is past the offer: only the cancel is owed
    await client.endAsync();
    // Once the job ended, no cancel is owed any more (the first test's offers, never acted on, still are).
    service.recordStatus(device.id, { patchId: `p-${ROUNDS}`, state: 'cancelled' }, Date.now());
    expect(await service.onDeviceReady(device.id)).toBe(ROUNDS);
  });

  it('an offer of a rollout that has ended is not re-sent', async () => {
    const before = await service.onDeviceReady(device.id);
    // p-0 was offered by a rollout that has since been aborted: its offer, never acted on, is not re-sent.
    db.prepare(`UPDATE device_patches SET rollout_id = 'r-gone' WHERE device_id = ? AND patch_id = 'p-0'`).run(device.id);
    endedRollouts.add('r-gone');
    expect(await service.onDeviceReady(device.id)).toBe(before - 1);
  });
});
