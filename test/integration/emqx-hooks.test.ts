import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { App } from '../../src/app.js';
import { validateConfig } from '../../src/config/load.js';
import { systemClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { tryConnect } from '../helpers/mqtt-client.js';
import { eventually } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp-dir.js';
import { toolsMissing } from '../helpers/system-tools.js';

/**
 * Issue 13, item 1 (EMQX 5 and brokers with the same HTTP hooks): with `mqtt.broker.credentials: http`
 * the broker asks `POST /mqtt/auth` at each CONNECT and `POST /mqtt/acl` for topics outside a device's
 * list. The daemon runs in-process against a real Mosquitto (anonymous, standing in for the broker's
 * transport; EMQX itself is not packaged for Debian) so its device traffic path is real too.
 */
describe.skipIf(toolsMissing(['mosquitto'], 'mosquitto').length > 0)('EMQX HTTP hooks: POST /mqtt/auth and /mqtt/acl', () => {
  const dir = tempDir('xcare-emqx-');
  const adminToken = 'emqx-test-admin-token-0123';
  let broker: RunningMosquitto;
  let app: App;
  let base: string;
  let token = '';

  const post = (path: string, body: unknown) =>
    fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const metric = async (name: string) => {
    const text = await (await fetch(`${base}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    return line ? Number(line.split(' ')[1]) : NaN;
  };
  const deviceCount = () => (app.db.prepare('SELECT COUNT(*) AS n FROM devices').get() as { n: number }).n;

  beforeAll(async () => {
    broker = await startMosquitto(join(dir.path, 'mosquitto'), { dynsec: false });
    const config = validateConfig({
      dataDir: join(dir.path, 'data'),
      adminToken,
      mqtt: { broker: { url: broker.daemonUrl, credentials: 'http' } },
      http: { host: '127.0.0.1', port: 0 },
      health: { security: { authFailures: 3, windowS: 60 } },
    });
    app = new App(config, { clock: systemClock, log: silentLogger() });
    await app.start();
    base = `http://127.0.0.1:${app.http.port()}`;
    const res = await fetch(`${base}/api/v1/devices`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'gw-emqx', type: 'gateway', customer: 'acme', installer: 'minnovation', tier: 'xcare' }),
    });
    expect(res.status).toBe(201);
    token = ((await res.json()) as { token: string }).token;
  }, 60_000);

  afterAll(async () => {
    await app?.stop();
    await broker?.stop();
    dir.cleanup();
  });

  it('allows the right token with exactly the device\'s own topics as the ACL', async () => {
    const res = await post('/mqtt/auth', { clientid: 'gw-emqx', username: 'gw-emqx', password: token, peerhost: '10.0.0.7' });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      result: 'allow',
      is_superuser: false,
      acl: [
        { permission: 'allow', action: 'publish', topic: 'fleet/v1/gw-emqx/heartbeat' },
        { permission: 'allow', action: 'publish', topic: 'fleet/v1/gw-emqx/state' },
        { permission: 'allow', action: 'publish', topic: 'fleet/v1/gw-emqx/patch/status' },
        { permission: 'allow', action: 'subscribe', topic: 'fleet/v1/gw-emqx/cmd/#' },
      ],
    });
  });

  it.each([
    ['a wrong token', { clientid: 'gw-emqx', username: 'gw-emqx', password: 'wrong-token', peerhost: '10.0.0.8' }],
    ['an unknown device', { clientid: 'gw-nobody', username: 'gw-nobody', password: 'x', peerhost: '10.0.0.8' }],
    ['clientid != username', { clientid: 'gw-other', username: 'gw-emqx', password: 'x', peerhost: '10.0.0.8' }],
    ['no password', { clientid: 'gw-emqx', username: 'gw-emqx', peerhost: '10.0.0.8' }],
    ['an invalid device id', { clientid: '#', username: '#', password: 'x', peerhost: '10.0.0.8' }],
  ])('denies %s with no reason and counts it', async (_what, body) => {
    const before = await metric('fleet_mqtt_auth_failures_total');
    const res = await post('/mqtt/auth', body);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ result: 'deny' });
    expect(await metric('fleet_mqtt_auth_failures_total')).toBe(before + 1);
  });

  it('a burst of refused CONNECTs reported by the hook opens a security_incident ticket', async () => {
    const ticket = await eventually(async () => {
      const res = await fetch(`${base}/api/v1/tickets?status=open`, { headers: { authorization: `Bearer ${adminToken}` } });
      const { tickets } = (await res.json()) as { tickets: { kind: string; subject: string }[] };
      return tickets.find((t) => t.kind === 'security_incident' && t.subject === 'fleet');
    }, 10_000, 'security_incident');
    expect(ticket).toBeDefined();
  });

  it.each([
    ['not JSON', '{nope'],
    ['a JSON array', '[]'],
    ['a JSON string', '"gw-emqx"'],
  ])('answers 400 to a body that is %s and changes nothing', async (_what, body) => {
    const devices = deviceCount();
    const before = await metric('fleet_mqtt_auth_failures_total');
    const res = await post('/mqtt/auth', body);
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: expect.any(String) });
    expect(deviceCount()).toBe(devices);
    expect(await metric('fleet_mqtt_auth_failures_total')).toBe(before);
  });

  it('/mqtt/acl allows a device\'s own topic and denies, counts and reports another device\'s', async () => {
    const own = await post('/mqtt/acl', { clientid: 'gw-emqx', username: 'gw-emqx', topic: 'fleet/v1/gw-emqx/heartbeat', action: 'publish' });
    expect(await own.json()).toEqual({ result: 'allow' });
    const before = await metric('fleet_mqtt_acl_denied_total');
    const other = await post('/mqtt/acl', { clientid: 'gw-emqx', username: 'gw-emqx', topic: 'fleet/v1/gw-x/heartbeat', action: 'publish' });
    expect(await other.json()).toEqual({ result: 'deny' });
    const sub = await post('/mqtt/acl', { clientid: 'gw-emqx', username: 'gw-emqx', topic: 'fleet/v1/+/cmd/#', action: 'subscribe' });
    expect(await sub.json()).toEqual({ result: 'deny' });
    expect(await metric('fleet_mqtt_acl_denied_total')).toBe(before + 2);
    const bad = await post('/mqtt/acl', { clientid: 'gw-emqx', username: 'gw-emqx', topic: 'x', action: 'delete' });
    expect(bad.status).toBe(400);
  });

  it('device traffic through the external broker is ingested from the shared subscription', async () => {
    const c = await tryConnect(`mqtt://127.0.0.1:${broker.port}`, { id: 'gw-emqx', token });
    if (!c.ok) throw c.error;
    await c.client.publishAsync('fleet/v1/gw-emqx/heartbeat', JSON.stringify({ seq: 1, ts: new Date().toISOString(), intervalS: 30, agentVersion: '1.0.0', softwareVersion: '3.1.4' }), { qos: 1 });
    await eventually(async () => {
      const res = await fetch(`${base}/api/v1/devices/gw-emqx`, { headers: { authorization: `Bearer ${adminToken}` } });
      return ((await res.json()) as { softwareVersion: string | null }).softwareVersion === '3.1.4';
    }, 10_000, 'heartbeat stored');
    c.client.end(true);
  });

  describe('bad device input through the external broker: dropped, counted, nothing stored', () => {
    const rejected = async (reason: string) => {
      const text = await (await fetch(`${base}/metrics`)).text();
      return Number(new RegExp(`^fleet_heartbeat_rejected_total\\{reason="${reason}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? NaN);
    };
    const stored = () => app.db.prepare(`SELECT software_version, heartbeats FROM device_state WHERE device_id = 'gw-emqx'`).get();
    const big = JSON.stringify({ seq: 9, ts: new Date().toISOString(), intervalS: 30, agentVersion: '1.0.0', softwareVersion: '6.6.6', pad: 'x'.repeat(20_000) });

    it.each([
      ['json', 'fleet/v1/gw-emqx/heartbeat', '{not json'],
      ['schema', 'fleet/v1/gw-emqx/heartbeat', JSON.stringify({ seq: 'one', softwareVersion: '6.6.6' })],
      ['size', 'fleet/v1/gw-emqx/heartbeat', big],
      ['unknown_device', 'fleet/v1/gw-nobody/heartbeat', JSON.stringify({ seq: 1, ts: new Date().toISOString(), intervalS: 30, agentVersion: '1.0.0', softwareVersion: '6.6.6' })],
      ['json', 'fleet/v1/gw-emqx/state', 'online'],
    ])('reason %s (%s)', async (reason, topic, payload) => {
      const before = await rejected(reason);
      const row = stored();
      const c = await tryConnect(`mqtt://127.0.0.1:${broker.port}`, { id: 'gw-emqx', token });
      if (!c.ok) throw c.error;
      await c.client.publishAsync(topic, payload, { qos: 1 });
      c.client.end(true);
      await eventually(async () => (await rejected(reason)) === before + 1, 10_000, `rejected{reason=${reason}}`);
      expect(stored()).toEqual(row);
    });
  });
});
