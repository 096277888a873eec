import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { App } from '../../src/app.js';
import { validateConfig } from '../../src/config/load.js';
import { ManualClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import { parseDeviceInput } from '../../src/registry/device-input.js';
import type { Heartbeat } from '../../src/protocol/types.js';
import { connectDevice, closed } from '../helpers/mqtt-client.js';
import { tempDir } from '../helpers/temp-dir.js';

/**
 * Issue 3 through the whole daemon: real broker on loopback, real mqtt clients as devices, real
 * SQLite, the real evaluator and ticket service; only time is driven by a ManualClock.
 */
describe('automatic tickets from real MQTT devices', () => {
  const dir = tempDir('xcare-health-mqtt-');
  const clock = new ManualClock(Date.now());
  let app: App;
  let url: string;
  const tokens = new Map<string, string>();
  const clients = new Map<string, MqttClient>();
  let seq = 0;

  interface TicketJson {
    id: number;
    kind: string;
    subject: string;
    severity: string;
    status: string;
    parentId: number | null;
    covers: string[];
    reopenCount: number;
    children: TicketJson[];
  }
  const tickets = (status: 'open' | 'all' = 'all'): TicketJson[] => app.tickets.queue({ status }) as unknown as TicketJson[];
  const flat = (status: 'open' | 'all' = 'all') => tickets(status).flatMap((t) => [t, ...(t.children ?? [])]);
  const ticketOf = (kind: string, subject: string) => flat().find((t) => t.kind === kind && t.subject === subject);

  /** Advance the daemon's clock in steps of one evaluator tick, so every timer fires in order. */
  const advance = (ms: number) => {
    for (let done = 0; done < ms; done += 1000) clock.advance(Math.min(1000, ms - done));
  };

  async function connect(id: string): Promise<MqttClient> {
    const client = await connectDevice(url, {
      id,
      token: tokens.get(id)!,
      will: { topic: `fleet/v1/${id}/state`, payload: Buffer.from('{"online":false}'), qos: 1, retain: true },
    });
    await client.publishAsync(`fleet/v1/${id}/state`, '{"online":true}', { qos: 1, retain: true });
    clients.set(id, client);
    return client;
  }

  async function beat(id: string, extra: Partial<Heartbeat> = {}): Promise<void> {
    const hb: Heartbeat = { seq: ++seq, ts: new Date().toISOString(), intervalS: 10, agentVersion: '1.0.0', softwareVersion: '1.0.0', ...extra };
    const before = await heartbeatsCounted();
    await clients.get(id)!.publishAsync(`fleet/v1/${id}/heartbeat`, JSON.stringify(hb), { qos: 1 });
    // The PUBACK can precede the in-process handler by a tick: wait until ingest counted it.
    for (let i = 0; i < 200 && (await heartbeatsCounted()) === before; i++) await new Promise((r) => setTimeout(r, 2));
  }

  const heartbeatsCounted = async () => (await app.metrics.getSingleMetric('fleet_heartbeats_total')!.get()).values[0]?.value ?? 0;

  /** Drop the TCP connection without DISCONNECT: the broker publishes the Last Will. */
  async function crash(id: string): Promise<void> {
    const client = clients.get(id)!;
    const gone = closed(client);
    client.stream.destroy();
    await gone;
    client.end(true);
    clients.delete(id);
    for (let i = 0; i < 200 && app.broker.isConnected(id); i++) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 20));
  }

  beforeAll(async () => {
    const config = validateConfig({
      dataDir: join(dir.path, 'data'),
      adminToken: 'health-mqtt-admin-token-01',
      mqtt: { host: '127.0.0.1', port: 0 },
      http: { host: '127.0.0.1', port: 0 },
      health: { tickMs: 1000, lastWillGraceS: 30, missedHeartbeats: 3 },
      tickets: { resolveAfterS: 300, reopenWindowS: 3600 },
    });
    app = new App(config, { clock, log: silentLogger() });
    await app.start();
    url = `mqtt://127.0.0.1:${app.broker.ports().mqtt}`;
    const devices = [
      { id: 'gw-a1', type: 'gateway', customer: 'acme' },
      { id: 'gw-a2', type: 'gateway', customer: 'acme' },
      // 14 gateways: three lost stay under the 30 % fleet share of major_outage.
      ...Array.from({ length: 12 }, (_, i) => ({ id: `gw-b${i + 1}`, type: 'gateway', customer: 'beta' })),
      { id: 's-b1', type: 'sensor', parent: 'gw-b1', customer: 'beta' },
      { id: 's-b2', type: 'sensor', parent: 'gw-b2', customer: 'beta' },
    ];
    const created = await app.registry.add(devices.map((d) => parseDeviceInput({ ...d, installer: 'minnovation', tier: 'xcare' })));
    for (const c of created) tokens.set(c.device.id, c.token);
    for (const id of ['gw-a1', 'gw-a2', 'gw-b1', 'gw-b2', 'gw-b3', 'gw-b4']) {
      await connect(id);
      await beat(id, id === 'gw-b1' ? { sensors: [{ id: 's-b1', ok: true }] } : id === 'gw-b2' ? { sensors: [{ id: 's-b2', ok: true }] } : {});
    }
    advance(1000);
  });
  afterAll(async () => {
    for (const c of clients.values()) c.end(true);
    await app.stop();
    dir.cleanup();
  });

  it('a silent gateway opens gateway_loss (medium) exactly after 3 intervals; its sensor opens nothing', async () => {
    await crashQuietly('gw-b1');
    // Keep the others alive while time passes.
    for (let t = 0; t < 28; t += 7) {
      for (const id of ['gw-a1', 'gw-a2', 'gw-b2', 'gw-b3', 'gw-b4']) await beat(id, id === 'gw-b2' ? { sensors: [{ id: 's-b2', ok: true }] } : {});
      advance(7000);
    }
    expect(ticketOf('gateway_loss', 'gw-b1')).toBeUndefined();
    advance(4000);
    const ticket = ticketOf('gateway_loss', 'gw-b1');
    expect(ticket).toMatchObject({ severity: 'medium', status: 'open' });
    expect(ticket!.covers).toContain('s-b1');
    expect(flat().some((t) => t.subject === 's-b1')).toBe(false);
  });

  it('a sensor reported ok:false by its gateway opens sensor_issue (low)', async () => {
    await beat('gw-b2', { sensors: [{ id: 's-b2', ok: false, detail: 'no reading for 120 s' }] });
    advance(1000);
    expect(ticketOf('sensor_issue', 's-b2')).toMatchObject({ severity: 'low', status: 'open' });
  });

  it('every gateway of a customer lost opens cloud_loss_complete (high) with the gateway tickets as children', async () => {
    await crash('gw-a1');
    await crash('gw-a2');
    for (let t = 0; t < 32; t += 8) {
      for (const id of ['gw-b2', 'gw-b3', 'gw-b4']) await beat(id);
      advance(8000);
    }
    const parent = ticketOf('cloud_loss_complete', 'customer:acme');
    expect(parent).toMatchObject({ severity: 'high', status: 'open' });
    const open = tickets('open');
    const listed = open.find((t) => t.id === parent!.id)!;
    expect(listed.children.map((c) => c.subject).sort()).toEqual(['gw-a1', 'gw-a2']);
    expect(open.some((t) => t.subject === 'gw-a1')).toBe(false); // children do not count in the queue
  });

  it('a flapping device opens one flapping ticket', async () => {
    for (let i = 0; i < 4; i++) {
      await crash('gw-b3');
      advance(2000);
      await connect('gw-b3');
      await beat('gw-b3');
      advance(2000);
    }
    const flapping = flat().filter((t) => t.kind === 'flapping' && t.subject === 'gw-b3');
    expect(flapping).toHaveLength(1);
    expect(flapping[0]).toMatchObject({ severity: 'low' });
    expect(ticketOf('gateway_loss', 'gw-b3')).toBeUndefined(); // back within the grace each time
  });

  it('a gateway back resolves its ticket after resolveAfter; a recurrence reopens the same ticket', async () => {
    const id = ticketOf('gateway_loss', 'gw-b1')!.id;
    await connect('gw-b1');
    await beat('gw-b1', { sensors: [{ id: 's-b1', ok: true }] });
    advance(1000);
    for (let t = 0; t < 290; t += 10) {
      await beat('gw-b1', { sensors: [{ id: 's-b1', ok: true }] });
      advance(10_000);
    }
    expect(ticketOf('gateway_loss', 'gw-b1')!.status).not.toBe('resolved');
    for (let t = 0; t < 20; t += 10) {
      await beat('gw-b1', { sensors: [{ id: 's-b1', ok: true }] });
      advance(10_000);
    }
    expect(ticketOf('gateway_loss', 'gw-b1')).toMatchObject({ id, status: 'resolved' });

    await crashQuietly('gw-b1');
    advance(31_000);
    const again = ticketOf('gateway_loss', 'gw-b1')!;
    expect(again.id).toBe(id);
    expect(again.status).toBe('open');
    expect(again.reopenCount).toBe(1);
  });

  /** Silence without a will: close the client cleanly after clearing the retained state (no Last Will). */
  async function crashQuietly(id: string): Promise<void> {
    const client = clients.get(id)!;
    await client.endAsync();
    clients.delete(id);
    await new Promise((r) => setTimeout(r, 20));
  }
});
