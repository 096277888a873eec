import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { Registry } from 'prom-client';
import { FleetBroker } from '../../broker/fleet-broker.js';
import { configSchema } from '../../src/config/schema.js';
import { openDatabase, type Database } from '../../src/db/database.js';
import { DeviceRegistry } from '../../src/registry/device-registry.js';
import { hashTokenScrypt, loadTokenKey } from '../../src/registry/device-token.js';
import { systemClock } from '../../src/clock.js';
import { fiscalYearEnd } from '../../src/subscriptions/fiscal-year.js';
import { createLogger, silentLogger } from '../../src/log.js';
import { connectPacket } from '../helpers/mqtt-packets.js';
import { tryConnect, endAll } from '../helpers/mqtt-client.js';
import { tempDir } from '../helpers/temp-dir.js';

/**
 * Issue 12 "keep failed CONNECTs cheap and rate-limited per source so a flood of bad passwords cannot
 * starve good devices": the real broker and registry (SQLite file), real mqtt.js devices from 127.0.0.1,
 * and a flood of raw CONNECTs with wrong passwords from 127.0.0.2 (loopback, another source address).
 * The flood aims at devices still stored with a pre-issue-12 scrypt hash, where each unthrottled
 * attempt costs ~6 ms of scrypt: without the per-source limit the good devices queue behind it.
 */
describe('a bad-password flood from one source', () => {
  const dir = tempDir('xcare-flood-');
  let db: Database;
  let registry: DeviceRegistry;
  let broker: FleetBroker;
  let metrics: Registry;
  let url: string;
  const good: Array<{ id: string; token: string }> = [];
  const brokerLog: string[] = [];

  beforeAll(async () => {
    db = openDatabase(join(dir.path, 'x.db'));
    registry = new DeviceRegistry({
      db,
      clock: systemClock,
      log: silentLogger(),
      fiscalYearEnd,
      tokenKey: loadTokenKey(dir.path, silentLogger()),
      authFailures: { burst: 20, perSecond: 5 },
    });
    // Every device still has its pre-issue-12 scrypt hash (the first start after an upgrade): each
    // good device pays one scrypt at its first CONNECT, in the same thread pool the flood would fill.
    const insert = db.prepare(`INSERT INTO devices (id, type, customer, installer, tier, tags, token_hash, created_at) VALUES (?, 'gateway', 'a', 'i', 'none', '[]', ?, 0)`);
    for (let i = 0; i < 40; i++) {
      const token = `good-token-${i}-0123456789abcdefghij`;
      insert.run(`gw-${i}`, await hashTokenScrypt(token));
      good.push({ id: `gw-${i}`, token });
    }
    const legacy = await hashTokenScrypt('the-legacy-token-0123456789abcdef');
    for (let i = 0; i < 50; i++) insert.run(`old-${i}`, legacy);
    registry.start();
    metrics = new Registry();
    broker = new FleetBroker({
      config: configSchema.parse({ mqtt: { host: '127.0.0.1', port: 0 } }).mqtt,
      // Every CONNECT whose token was actually checked and refused is logged: the test counts them.
      log: createLogger('info', { write: (line: string) => void brokerLog.push(line) }),
      metrics,
      authenticate: (id, token, source) => registry.verifyDeviceToken(id, token, source),
      admitSource: (remote) => registry.admitsSource(remote),
    });
    await broker.start();
    url = `mqtt://127.0.0.1:${broker.ports().mqtt}`;
  });
  afterAll(async () => {
    await broker?.stop();
    db?.close();
    dir.cleanup();
  });

  /**
   * Another process keeps `concurrency` raw sockets from 127.0.0.2 sending wrong-password CONNECTs
   * (to devices stored with scrypt) until stopped; it reports how many connections it opened.
   */
  function flood(concurrency: number): { stop(): Promise<number> } {
    const port = broker.ports().mqtt!;
    const script = `
      const { connect } = await import('node:net');
      const packet = Buffer.from(process.argv[1], 'hex');
      let attempts = 0;
      const one = () => {
        const s = connect({ port: ${port}, host: '127.0.0.1', localAddress: '127.0.0.2' }, () => { attempts++; s.write(packet); });
        s.on('data', () => s.destroy());
        s.on('error', () => {});
        s.on('close', () => one());
      };
      for (let i = 0; i < ${concurrency}; i++) one();
      process.on('SIGTERM', () => { process.stdout.write(String(attempts)); process.exit(0); });
    `;
    const packet = connectPacket('old-1', 'old-1', 'wrong-password-0123456789abcdefgh').toString('hex');
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, packet], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    return {
      stop: () =>
        new Promise((resolve) => {
          child.once('exit', () => resolve(Number(out)));
          child.kill('SIGTERM');
        }),
    };
  }

  async function connackTimes(devices: typeof good): Promise<number[]> {
    const times: number[] = [];
    // Ten at a time, as a fleet reconnecting would.
    for (let i = 0; i < devices.length; i += 10) {
      const batch = devices.slice(i, i + 10);
      const outcomes = await Promise.all(
        batch.map(async (d) => {
          const t0 = performance.now();
          const o = await tryConnect(url, d, { connectTimeout: 30_000 });
          times.push(performance.now() - t0);
          return o;
        }),
      );
      for (const o of outcomes) expect(o.ok, o.ok ? '' : `refused: ${o.error.message}`).toBe(true);
      await endAll(...outcomes.map((o) => (o.ok ? o.client : undefined)));
    }
    return times.sort((a, b) => a - b);
  }

  it('costs little: good devices from other sources all get in without long waits, the flooder gets few token checks', async () => {
    const quiet = await connackTimes(good.slice(0, 20));
    const f = flood(64);
    // Let the flood reach full speed (and spend its allowance) before the good devices connect.
    await new Promise((r) => setTimeout(r, 500));
    const floodStarted = performance.now() - 500;
    const loud = await connackTimes(good.slice(20));
    // Keep flooding for at least 3 s so the counts below mean something on a fast box.
    while (performance.now() - floodStarted < 3000) await new Promise((r) => setTimeout(r, 100));
    const attempts = await f.stop();
    const floodS = (performance.now() - floodStarted) / 1000;
    const p95 = (xs: number[]) => xs[Math.floor(xs.length * 0.95)]!;
    const context = `quiet p95 ${p95(quiet).toFixed(0)} ms, loud p95 ${p95(loud).toFixed(0)} ms, flood of ${attempts} connections in ${floodS.toFixed(1)} s`;

    // Every good device got in (connackTimes asserts CONNACK 0), and well inside the 15 s connect
    // timeout whose expiry made a herd flap in issue 12. The bound is loose: on a quiet box the loud
    // p95 is a few hundred ms, on a box with a load of 18 it reached 2.8 s; without the limit the
    // flood's scrypt queue adds its length x 6 ms on top.
    expect(p95(loud), context).toBeLessThan(5000);
    // The flood was a flood, and all but a bounded few of its attempts cost no token check: the
    // source's allowance (burst 20 + 5/s) plus the legacy checks that may run at once (20).
    expect(attempts, context).toBeGreaterThan(150);
    const checked = brokerLog.filter((l) => l.includes('"remote":"127.0.0.2"') && l.includes('CONNECT refused')).length;
    expect(checked, context).toBeLessThanOrEqual(20 + Math.ceil(5 * floodS) + 20);
    const throttled = (await metrics.getSingleMetric('fleet_mqtt_auth_throttled_total')!.get()).values[0]!.value;
    expect(throttled, context).toBeGreaterThan(0);
    // The flooded devices' rows were never migrated (no success); the good devices' were, on their CONNECT.
    const hashOf = (id: string) => (db.prepare(`SELECT token_hash h FROM devices WHERE id = ?`).get(id) as { h: string }).h;
    expect(hashOf('old-0')).toMatch(/^scrypt\$/);
    expect(hashOf('gw-39')).toMatch(/^hmac-sha256\$/);
  });
});
