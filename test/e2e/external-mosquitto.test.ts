import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { ctl, eventually, startAgent, type Daemon, type RunningProcess } from '../helpers/processes.js';
import { startExternalDaemon } from '../helpers/external-daemon.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { tryConnect } from '../helpers/mqtt-client.js';
import { tempDir } from '../helpers/temp-dir.js';
import { toolsMissing } from '../helpers/system-tools.js';

interface TicketJson {
  id: number;
  kind: string;
  subject: string;
  status: string;
}

function dynsec(m: RunningMosquitto, args: string[]): string {
  return execFileSync('mosquitto_ctrl', ['-h', '127.0.0.1', '-p', String(m.port), '-u', m.user, '-P', m.password, 'dynsec', ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
}

/**
 * Issue 13, item 1 end to end: xcared joins a real Mosquitto 2 with the dynamic-security plugin instead
 * of running aedes. Devices are provisioned through xcarectl, their credentials and ACLs appear in
 * dynsec, a real agent heartbeats through Mosquitto, its kill -9 (Last Will) opens exactly one
 * gateway_loss ticket, revocation disconnects and locks out, and a restart reconciles dynsec.
 */
describe.skipIf(toolsMissing(['mosquitto', 'mosquitto_ctrl'], 'mosquitto').length > 0)('end to end: external Mosquitto with dynamic security', () => {
  const dir = tempDir('xcare-e2e-ext-');
  let broker: RunningMosquitto;
  let daemon: Daemon;
  let agent: RunningProcess | undefined;
  const tokens: Record<string, string> = {};
  const yaml = 'health: { lastWillGraceS: 1, missedHeartbeats: 3 }\ntickets: { resolveAfterS: 600 }\n';

  const api = async <T>(path: string): Promise<T> =>
    (await (await fetch(`${daemon.url}${path}`, { headers: { authorization: `Bearer ${daemon.adminToken}` } })).json()) as T;
  const tickets = async (subject: string, kind: string) =>
    (await api<{ tickets: TicketJson[] }>('/api/v1/tickets?status=all')).tickets.filter((t) => t.subject === subject && t.kind === kind);
  const provision = async (id: string) => {
    const r = await ctl(daemon, ['device', 'add', id, '--type', 'gateway', '--customer', 'acme', '--installer', 'minnovation', '--tier', 'xcare', '--json']);
    expect(r.code, r.stderr).toBe(0);
    tokens[id] = (JSON.parse(r.stdout) as { token: string }).token;
  };

  beforeAll(async () => {
    broker = await startMosquitto(join(dir.path, 'mosquitto'));
    daemon = await startExternalDaemon(join(dir.path, 'xcared'), broker.daemonUrl, yaml);
    for (const id of ['gw-ext-1', 'gw-ext-2', 'gw-ext-3']) await provision(id);
  }, 60_000);

  afterAll(async () => {
    await agent?.stop();
    await daemon?.stop();
    await broker?.stop();
    dir.cleanup();
  });

  it('refuses to start with broker credentials the broker rejects, naming mqtt.broker.url', async () => {
    const wrong = broker.daemonUrl.replace(broker.password, 'not-the-password');
    await expect(startExternalDaemon(join(dir.path, 'xcared-wrong'), wrong, yaml)).rejects.toThrow(/xcared exited 1[\s\S]*mqtt\.broker\.url: cannot connect to mqtt:\/\/xcared:\*\*\*@/);
  });

  it('starts no embedded broker and reports the external one in /readyz', async () => {
    const ready = (await (await fetch(`${daemon.url}/readyz`)).json()) as { checks: Record<string, boolean> };
    expect(ready.checks.broker).toBe(true);
    // Nothing listens on the embedded port the config names.
    const outcome = await tryConnect(`mqtt://127.0.0.1:${daemon.mqttPort}`, { id: 'gw-ext-1', token: tokens['gw-ext-1']! }, { connectTimeout: 2000 });
    expect(outcome.ok).toBe(false);
  });

  it('provisioning creates the device in dynsec: its token connects, a wrong one or another id is refused', async () => {
    expect(dynsec(broker, ['listClients'])).toContain('gw-ext-1');
    const good = await tryConnect(`mqtt://127.0.0.1:${broker.port}`, { id: 'gw-ext-1', token: tokens['gw-ext-1']! });
    expect(good.ok).toBe(true);
    if (good.ok) good.client.end(true);
    const wrong = await tryConnect(`mqtt://127.0.0.1:${broker.port}`, { id: 'gw-ext-1', token: 'not-the-token' });
    expect(wrong.ok).toBe(false);
    expect(wrong.ok ? 0 : wrong.code).toBe(5);
    const spoof = await tryConnect(`mqtt://127.0.0.1:${broker.port}`, { id: 'gw-ext-1', clientId: 'gw-ext-2', token: tokens['gw-ext-1']! });
    expect(spoof.ok).toBe(false);
  });

  it('a device publishes only its own topics: a forged heartbeat for another device is not stored', async () => {
    const c = await tryConnect(`mqtt://127.0.0.1:${broker.port}`, { id: 'gw-ext-2', token: tokens['gw-ext-2']! });
    if (!c.ok) throw c.error;
    const hb = (seq: number) => JSON.stringify({ seq, ts: new Date().toISOString(), intervalS: 30, agentVersion: '1.0.0', softwareVersion: '9.9.9' });
    await c.client.publishAsync('fleet/v1/gw-ext-3/heartbeat', hb(1), { qos: 1 });
    await c.client.publishAsync('fleet/v1/gw-ext-2/heartbeat', hb(2), { qos: 1 });
    const own = await eventually(async () => {
      const d = await api<{ softwareVersion: string | null }>('/api/v1/devices/gw-ext-2');
      return d.softwareVersion === '9.9.9' && d;
    }, 15_000, 'own heartbeat stored');
    expect(own.softwareVersion).toBe('9.9.9');
    const other = await api<{ softwareVersion: string | null; lastSeen: string | null }>('/api/v1/devices/gw-ext-3');
    expect(other.lastSeen).toBeNull();
    // SUBACK 0x80: mqtt.js rejects the subscribe.
    await expect(c.client.subscribeAsync('fleet/v1/gw-ext-3/cmd/#', { qos: 1 })).rejects.toThrow(/Subscribe error/);
    c.client.end(true);
  });

  it('a real agent through Mosquitto: heartbeats stored, kill -9 opens exactly one gateway_loss ticket', async () => {
    agent = startAgent({ deviceId: 'gw-ext-1', token: tokens['gw-ext-1']!, mqttPort: broker.port, httpUrl: daemon.url, dir: join(dir.path, 'agent'), intervalS: 1 });
    await eventually(async () => (await api<{ state: string; heartbeats: number }>('/api/v1/devices/gw-ext-1')).heartbeats >= 2, 30_000, 'heartbeats through Mosquitto');
    await eventually(async () => (await api<{ connected: boolean }>('/api/v1/devices/gw-ext-1')).connected, 15_000, 'connected from the retained state');
    await agent.kill9();
    agent = undefined;
    await eventually(async () => (await tickets('gw-ext-1', 'gateway_loss')).length === 1, 30_000, 'gateway_loss ticket');
    // Well past the Last Will grace and three missed intervals: still exactly one.
    await new Promise((r) => setTimeout(r, 4000));
    const loss = await tickets('gw-ext-1', 'gateway_loss');
    expect(loss).toHaveLength(1);
    expect(loss[0]!.status).toBe('open');
  }, 90_000);

  it('revocation deletes the dynsec client, closes the live connection, and the next CONNECT is refused', async () => {
    const c = await tryConnect(`mqtt://127.0.0.1:${broker.port}`, { id: 'gw-ext-3', token: tokens['gw-ext-3']! });
    if (!c.ok) throw c.error;
    const closed = new Promise<void>((resolve) => c.client.once('close', () => resolve()));
    const r = await ctl(daemon, ['device', 'revoke', 'gw-ext-3']);
    expect(r.code, r.stderr).toBe(0);
    await closed;
    expect(dynsec(broker, ['listClients'])).not.toContain('gw-ext-3');
    const again = await tryConnect(`mqtt://127.0.0.1:${broker.port}`, { id: 'gw-ext-3', token: tokens['gw-ext-3']! });
    expect(again.ok ? 0 : again.code).toBe(5);
  }, 30_000);

  it('at start xcared reconciles dynsec: orphans and revoked devices deleted, a lost client reported, the rest untouched', async () => {
    await daemon.stop();
    // An orphan xcared manages (a provisioning that never committed), one it does not, and a lost device client.
    dynsec(broker, ['createClient', 'ghost-1', '-p', 'x']);
    execFileSync('mosquitto_ctrl', ['-h', '127.0.0.1', '-p', String(broker.port), '-u', broker.user, '-P', broker.password, 'dynsec', 'setClientId', 'ghost-1', 'ghost-1'], { stdio: 'ignore' });
    const managed = JSON.stringify({ commands: [{ command: 'modifyClient', username: 'ghost-1', textname: 'xcare-device' }] });
    execFileSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(broker.port), '-u', broker.user, '-P', broker.password, '-t', '$CONTROL/dynamic-security/v1', '-m', managed, '-q', '1']);
    dynsec(broker, ['createClient', 'operator-bob', '-p', 'y']);
    dynsec(broker, ['deleteClient', 'gw-ext-2']);
    daemon = await startExternalDaemon(join(dir.path, 'xcared'), broker.daemonUrl, yaml);
    await eventually(() => daemon.output().includes('broker credentials reconciled'), 15_000, 'reconcile log');
    const clients = dynsec(broker, ['listClients']);
    expect(clients).not.toContain('ghost-1');
    expect(clients).toContain('operator-bob');
    expect(clients).toContain('gw-ext-1');
    const line = daemon.output().split('\n').find((l) => l.includes('broker credentials reconciled'))!;
    expect(JSON.parse(line)).toMatchObject({ deleted: 1, missingCount: 1, missing: ['gw-ext-2'] });
    // The device that kept its credentials still connects.
    const c = await tryConnect(`mqtt://127.0.0.1:${broker.port}`, { id: 'gw-ext-1', token: tokens['gw-ext-1']! });
    expect(c.ok).toBe(true);
    if (c.ok) c.client.end(true);
  }, 60_000);

  it('the broker going away makes /readyz 503; once it is back xcared reconnects, reconciles and ingests again', async () => {
    const reconciles = () => daemon.output().split('\n').filter((l) => l.includes('broker credentials reconciled')).length;
    const before = reconciles();
    await broker.kill9();
    await eventually(async () => {
      const res = await fetch(`${daemon.url}/readyz`);
      return res.status === 503 && ((await res.json()) as { checks: Record<string, boolean> }).checks.broker === false;
    }, 15_000, '/readyz 503');
    // Provisioning needs the broker to take the credentials first: refused with 503, nothing stored.
    const refused = await ctl(daemon, ['device', 'add', 'gw-ext-9', '--type', 'gateway', '--customer', 'acme', '--installer', 'minnovation', '--tier', 'xcare']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/broker/i);
    expect((await fetch(`${daemon.url}/api/v1/devices/gw-ext-9`, { headers: { authorization: `Bearer ${daemon.adminToken}` } })).status).toBe(404);
    await broker.restart();
    await eventually(async () => (await fetch(`${daemon.url}/readyz`)).status === 200, 30_000, '/readyz 200 again');
    await eventually(() => reconciles() > before, 15_000, 'reconcile after reconnect');
    const c = await tryConnect(`mqtt://127.0.0.1:${broker.port}`, { id: 'gw-ext-1', token: tokens['gw-ext-1']! });
    if (!c.ok) throw c.error;
    const hb = JSON.stringify({ seq: 99, ts: new Date().toISOString(), intervalS: 30, agentVersion: '1.0.0', softwareVersion: '7.0.0' });
    await c.client.publishAsync('fleet/v1/gw-ext-1/heartbeat', hb, { qos: 1 });
    await eventually(async () => (await api<{ softwareVersion: string | null }>('/api/v1/devices/gw-ext-1')).softwareVersion === '7.0.0', 15_000, 'ingest after reconnect');
    c.client.end(true);
  }, 90_000);

  it('a leftover broker client of the same id refuses the provisioning with 409 and stores nothing', async () => {
    dynsec(broker, ['createClient', 'gw-ext-8', '-p', 'stale']);
    const r = await ctl(daemon, ['device', 'add', 'gw-ext-8', '--type', 'gateway', '--customer', 'acme', '--installer', 'minnovation', '--tier', 'xcare']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('broker credentials already exist for gw-ext-8');
    expect((await fetch(`${daemon.url}/api/v1/devices/gw-ext-8`, { headers: { authorization: `Bearer ${daemon.adminToken}` } })).status).toBe(404);
  });

  it('token rotation sets the broker password: the old connection is closed, the old token refused, the new one connects', async () => {
    const old = await tryConnect(`mqtt://127.0.0.1:${broker.port}`, { id: 'gw-ext-1', token: tokens['gw-ext-1']! });
    if (!old.ok) throw old.error;
    const closed = new Promise<void>((resolve) => old.client.once('close', () => resolve()));
    const r = await ctl(daemon, ['device', 'rotate-token', 'gw-ext-1', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const fresh = (JSON.parse(r.stdout) as { token: string }).token;
    await closed;
    const refused = await tryConnect(`mqtt://127.0.0.1:${broker.port}`, { id: 'gw-ext-1', token: tokens['gw-ext-1']! });
    expect(refused.ok ? 0 : refused.code).toBe(5);
    const c = await eventually(async () => {
      const o = await tryConnect(`mqtt://127.0.0.1:${broker.port}`, { id: 'gw-ext-1', token: fresh });
      return o.ok && o;
    }, 10_000, 'new token connects');
    c.client.end(true);
  }, 30_000);
});
