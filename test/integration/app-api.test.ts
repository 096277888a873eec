import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { statSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { App } from '../../src/app.js';
import { validateConfig } from '../../src/config/load.js';
import { systemClock } from '../../src/clock.js';
import { createLogger, silentLogger } from '../../src/log.js';
import { tryConnect, connectDevice, closed } from '../helpers/mqtt-client.js';
import { tempDir } from '../helpers/temp-dir.js';

/** The wired daemon in-process (real broker, real SQLite, real HTTP): the API's contract and its bad input. */
describe('daemon HTTP API', () => {
  const dir = tempDir('xcare-app-');
  const adminToken = 'app-test-admin-token-0123';
  let app: App;
  let base: string;
  let mqttUrl: string;

  const call = (method: string, path: string, body?: string | object, headers: Record<string, string> = {}) =>
    fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json', ...headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
  const deviceCount = () => (app.db.prepare('SELECT COUNT(*) AS n FROM devices').get() as { n: number }).n;

  beforeAll(async () => {
    const config = validateConfig({
      dataDir: join(dir.path, 'data'),
      adminToken,
      mqtt: { host: '127.0.0.1', port: 0 },
      http: { host: '127.0.0.1', port: 0 },
    });
    app = new App(config, { clock: systemClock, log: silentLogger() });
    await app.start();
    base = `http://127.0.0.1:${app.http.port()}`;
    mqttUrl = `mqtt://127.0.0.1:${app.broker.ports().mqtt}`;
  });
  afterAll(async () => {
    await app.stop();
    dir.cleanup();
  });

  it('/healthz and /readyz report every component up', async () => {
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const ready = await fetch(`${base}/readyz`);
    const body = (await ready.json()) as { checks: Record<string, boolean> };
    expect(ready.status).toBe(200);
    expect(Object.keys(body.checks)).toEqual(expect.arrayContaining(['store', 'broker', 'health', 'scheduler', 'http']));
  });

  it.each([
    ['no token', {}],
    ['a wrong token', { authorization: 'Bearer not-the-admin-token-at-all' }],
    ['Basic instead of Bearer', { authorization: `Basic ${Buffer.from(`admin:${adminToken}`).toString('base64')}` }],
  ])('the API refuses %s with 401 and a JSON error', async (_what, headers) => {
    const res = await fetch(`${base}/api/v1/devices`, { headers });
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ error: expect.any(String), code: 'unauthorized' });
  });

  it('provisions a device with 201 and shows it', async () => {
    const res = await call('POST', '/api/v1/devices', { id: 'gw-api', type: 'gateway', customer: 'acme', installer: 'minnovation', tier: 'xcare_pro' });
    expect(res.status).toBe(201);
    const body = (await res.json()) as { token: string; device: { id: string } };
    expect(body.token.length).toBeGreaterThanOrEqual(22);
    const shown = (await (await call('GET', '/api/v1/devices/gw-api')).json()) as { id: string; state: string; tier: string };
    expect(shown).toMatchObject({ id: 'gw-api', state: 'unknown', tier: 'xcare_pro' });
    const listed = (await (await call('GET', '/api/v1/devices?tier=xcare_pro')).json()) as { devices: { id: string }[] };
    expect(listed.devices.map((d) => d.id)).toEqual(['gw-api']);
  });

  const bad: [string, string, string, string | object, number, RegExp][] = [
    ['malformed JSON', 'POST', '/api/v1/devices', '{"id": "x",', 400, /not valid JSON/],
    ['a missing field', 'POST', '/api/v1/devices', { id: 'gw-x', customer: 'a', installer: 'i' }, 400, /type/],
    ['a bad id', 'POST', '/api/v1/devices', { id: '../etc', type: 'gateway', customer: 'a', installer: 'i' }, 400, /id/],
    ['a wrong type', 'POST', '/api/v1/devices', { id: 'gw-x', type: 'gateway', customer: 42, installer: 'i' }, 400, /customer/],
    ['a duplicate', 'POST', '/api/v1/devices', { id: 'gw-api', type: 'gateway', customer: 'a', installer: 'i' }, 409, /already exists/],
    ['an unknown parent', 'POST', '/api/v1/devices', { id: 's-x', type: 'sensor', parent: 'nope', customer: 'a', installer: 'i' }, 400, /parent/],
    ['a bad CSV line', 'POST', '/api/v1/devices/import', 'id,type,customer,installer\ngw-y,gateway,a,i\nbad id,gateway,a,i\n', 400, /line 3/],
    ['an unknown route', 'GET', '/api/v1/nothing', '', 404, /no route/],
    ['a wrong method', 'DELETE', '/api/v1/devices', '', 405, /not allowed/],
    ['an unknown device', 'GET', '/api/v1/devices/ghost', '', 404, /not found/],
    ['revoking an unknown device', 'POST', '/api/v1/devices/ghost/revoke', '', 404, /not found/],
  ];
  it.each(bad)('answers %s with a JSON error and stores nothing', async (_what, method, path, body, status, message) => {
    const before = deviceCount();
    const headers: Record<string, string> = typeof body === 'string' && body.startsWith('id,') ? { 'content-type': 'text/csv' } : {};
    const res = await call(method, path, body === '' ? undefined : body, headers);
    expect(res.status).toBe(status);
    const json = (await res.json()) as { error: string };
    expect(json.error).toMatch(message);
    expect(deviceCount()).toBe(before);
  });

  it('refuses an oversize body with 413 and stores nothing', async () => {
    const before = deviceCount();
    const res = await call('POST', '/api/v1/devices', JSON.stringify({ id: 'gw-big', type: 'gateway', customer: 'x'.repeat(2 * 1024 * 1024), installer: 'i' }));
    expect(res.status).toBe(413);
    expect(deviceCount()).toBe(before);
  });

  it('revoking closes the live connection and the next CONNECT is refused', async () => {
    const created = (await (await call('POST', '/api/v1/devices', { id: 'gw-rev', type: 'gateway', customer: 'acme', installer: 'minnovation' })).json()) as {
      token: string;
    };
    const login = { id: 'gw-rev', token: created.token };
    const client = await connectDevice(mqttUrl, login);
    const gone = closed(client);
    expect((await call('POST', '/api/v1/devices/gw-rev/revoke')).status).toBe(200);
    await gone;
    client.end(true);
    const again = await tryConnect(mqttUrl, login);
    expect(again.ok).toBe(false);
    if (!again.ok) expect(again.code).toBe(5);
  });
});

describe('admin token', () => {
  it('is generated on first start into <dataDir>/admin.token (0600); the log names the path, never the token', async () => {
    const dir = tempDir('xcare-token-');
    let logged = '';
    const sink = new Writable({
      write(chunk, _enc, done) {
        logged += chunk.toString();
        done();
      },
    });
    const config = validateConfig({ dataDir: dir.path, mqtt: { host: '127.0.0.1', port: 0 }, http: { port: 0 } });
    const app = new App(config, { clock: systemClock, log: createLogger('info', sink) });
    const file = join(dir.path, 'admin.token');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const token = readFileSync(file, 'utf8').trim();
    expect(token.length).toBeGreaterThanOrEqual(32);
    await app.start();
    await app.stop();
    await new Promise((r) => setTimeout(r, 50));
    expect(logged).toContain(file);
    expect(logged).not.toContain(token);
    // A second start reuses it.
    const again = new App(config, { clock: systemClock, log: silentLogger() });
    expect(again.adminToken).toBe(token);
    again.db.close();
    dir.cleanup();
  });
});
