import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { startDaemon, ctl, eventually, type Daemon } from '../helpers/processes.js';
import { connectDevice, endAll } from '../helpers/mqtt-client.js';
import { tempDir } from '../helpers/temp-dir.js';
import { allTickets } from '../helpers/detection-fixtures.js';

/**
 * Issue 13, from outside: U+0000 in untrusted text. PostgreSQL's text cannot hold it (22021), SQLite can; so
 * a NUL that reached the store made the two engines disagree, and on PostgreSQL one device's heartbeat with a
 * `"\u0000"` escape in a sensor detail failed every health tick (its ticket INSERT in each tick's
 * transaction: no ticket for anyone, /readyz 503) and the ingest batch it travelled in (the other devices'
 * beats lost). It is refused at the door on both engines, like a lone surrogate: counted, nothing stored.
 * Runs on SQLite by default and on PostgreSQL with XCARE_TEST_STORE=postgres.
 */
describe('end to end: U+0000 in untrusted text, either store', () => {
  const dir = tempDir('xcare-e2e-nul-');
  let daemon: Daemon;
  const tokens = new Map<string, string>();
  const show = async (id: string) => JSON.parse((await ctl(daemon, ['device', 'show', id, '--json'])).stdout) as { heartbeats: number; softwareVersion: string | null };
  const metric = async (name: string): Promise<number> => {
    const text = await (await fetch(`${daemon.url}/metrics`)).text();
    return Number(new RegExp(`^${name.replace(/[{}]/g, '\\$&')} (\\d+)`, 'm').exec(text)?.[1] ?? NaN);
  };
  const beat = (seq: number, fields: string) => `{"seq":${seq},"ts":"2026-11-30T06:00:00Z","intervalS":30,"agentVersion":"1.0.0",${fields}}`;

  beforeAll(async () => {
    daemon = await startDaemon(join(dir.path, 'daemon'));
    for (const id of ['gw-nul', 'gw-fine']) {
      const added = await ctl(daemon, ['device', 'add', id, '--type', 'gateway', '--customer', 'acme', '--installer', 'minnovation', '--json']);
      expect(added.code, added.stderr).toBe(0);
      tokens.set(id, (JSON.parse(added.stdout) as { token: string }).token);
    }
  });
  afterAll(async () => {
    await daemon?.stop();
    dir.cleanup();
  });

  it('a heartbeat with U+0000 in a version or a detail is refused as schema; the fleet beside it is stored and ticketed', async () => {
    const url = `mqtt://127.0.0.1:${daemon.mqttPort}`;
    const bad = await connectDevice(url, { id: 'gw-nul', token: tokens.get('gw-nul')! });
    const fine = await connectDevice(url, { id: 'gw-fine', token: tokens.get('gw-fine')! });
    const before = await metric('fleet_heartbeat_rejected_total{reason="schema"}');
    await bad.publishAsync('fleet/v1/gw-nul/heartbeat', beat(1, '"softwareVersion":"1\\u0000x"'), { qos: 1 });
    await bad.publishAsync('fleet/v1/gw-nul/heartbeat', beat(2, '"softwareVersion":"1.0.0","sensors":[{"id":"s-1","ok":false,"detail":"p\\u0000q"}]'), { qos: 1 });
    await bad.publishAsync('fleet/v1/gw-nul/heartbeat', beat(3, '"softwareVersion":"1.0.0","subsystems":[{"name":"d\\u0000b","ok":true}]'), { qos: 1 });
    await fine.publishAsync('fleet/v1/gw-fine/heartbeat', beat(1, '"softwareVersion":"2.0.0","subsystems":[{"name":"db","ok":false,"detail":"disk"}]'), { qos: 1 });
    await eventually(async () => (await metric('fleet_heartbeat_rejected_total{reason="schema"}')) === before + 3, 20_000, 'three schema rejections');
    const stored = await eventually(async () => {
      const d = await show('gw-fine');
      return d.heartbeats === 1 ? d : undefined;
    }, 20_000, "gw-fine's beat stored");
    expect(stored.softwareVersion).toBe('2.0.0');
    // The evaluator keeps committing: the other device's degraded subsystem is ticketed.
    await eventually(async () => (await allTickets(daemon)).some((t) => t.subject === 'gw-fine'), 20_000, 'a ticket for gw-fine');
    expect(await metric('fleet_health_tick_failures_total')).toBe(0);
    const nul = await show('gw-nul');
    expect(nul.heartbeats).toBe(0);
    expect(nul.softwareVersion).toBeNull();
    expect((await fetch(`${daemon.url}/readyz`)).status).toBe(200);
    await endAll(bad, fine);
  }, 90_000);

  it('U+0000 in an HTTP body, a CSV import, a path or a query answers 400 naming it, nothing stored (was 500 on PostgreSQL, stored on SQLite)', async () => {
    const call = async (method: string, path: string, body?: string, type = 'application/json') => {
      const r = await fetch(`${daemon.url}${path}`, { method, headers: { authorization: `Bearer ${daemon.adminToken}`, 'content-type': type }, body });
      return { status: r.status, body: (await r.json()) as { error?: string } };
    };
    const cases = [
      await call('POST', '/api/v1/devices', JSON.stringify({ id: 'gw-n1', type: 'gateway', customer: 'ac\u0000me', installer: 'minnovation' })),
      await call('POST', '/api/v1/devices', JSON.stringify({ id: 'gw-n1', type: 'gateway', customer: 'acme', installer: 'minnovation', tags: ['a\u0000'] })),
      await call('POST', '/api/v1/devices/import', 'id,type,customer,installer\ngw-n1,gateway,ac\u0000me,minnovation\n', 'text/csv'),
      await call('GET', '/api/v1/customers/ac%00me'),
      await call('GET', '/api/v1/devices?customer=ac%00me'),
    ];
    for (const c of cases) {
      expect(c.status, JSON.stringify(c.body)).toBe(400);
      expect(c.body.error).toMatch(/U\+0000/);
    }
    expect((await call('GET', '/api/v1/devices/gw-n1')).status).toBe(404);
    expect(await metric('fleet_http_rejected_total{status="500"}')).toBe(0);
    // The same text without the NUL is stored as sent (quotes, backslashes and placeholders included).
    const odd = "a'b\\c $1 ? @x --";
    const made = await call('POST', '/api/v1/devices', JSON.stringify({ id: 'gw-n2', type: 'gateway', customer: odd, installer: odd, tags: [odd] }));
    expect(made.status).toBe(201);
    const back = (await call('GET', '/api/v1/devices/gw-n2')).body as unknown as { customer: string; tags: string[] };
    expect([back.customer, back.tags]).toEqual([odd, [odd]]);
  }, 60_000);
});
