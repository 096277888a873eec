import { join } from 'node:path';
import { connect, type MqttClient } from 'mqtt';
import { startDaemon, ctl, type Daemon } from './processes.js';
import { keygen, buildSignPublish, registerSampleIntegrity, EXAMPLES } from './sample-patch.js';

/**
 * A small demo-like fleet on a real xcared for the console's screenshots: three customers on the three tiers,
 * gateways with sensors that heartbeat over real MQTT (with subsystems and sensor reports), some lost (Last Will),
 * a failing subsystem, tickets opened by the health evaluator and by people, API tokens with each role, a signed
 * patch and a running rollout. Everything goes through the daemon's public interfaces.
 */
export interface DemoFleet {
  daemon: Daemon;
  tokens: { operator: string; viewer: string };
  rolloutId: string;
  stop(): Promise<void>;
}

interface SimDevice {
  id: string;
  type: 'gateway' | 'sensor';
  parent?: string;
  customer: string;
  tier: 'none' | 'xcare' | 'xcare_pro';
  installer: string;
  sensors?: string[];
  failing?: string;
}

const FLEET: SimDevice[] = [];
for (const [customer, tier, n] of [
  ['acme', 'xcare_pro', 5],
  ['globex', 'xcare', 4],
  ['initech', 'xcare', 2],
  ['umbrella', 'none', 2],
] as const) {
  for (let i = 1; i <= n; i++) {
    const gw = `gw-${customer}-${String(i).padStart(2, '0')}`;
    const sensors = [1, 2, 3].map((s) => `sen-${customer}-${i}${s}`);
    FLEET.push({ id: gw, type: 'gateway', customer, tier, installer: customer === 'umbrella' ? 'cheapwire' : 'minnovation', sensors });
    for (const s of sensors) FLEET.push({ id: s, type: 'sensor', parent: gw, customer, tier, installer: 'minnovation' });
  }
}
FLEET.find((d) => d.id === 'gw-acme-02')!.failing = 'modbus';

async function must(daemon: Daemon, args: string[]): Promise<string> {
  const r = await ctl(daemon, args);
  if (r.code !== 0) throw new Error(`xcarectl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function api<T>(daemon: Daemon, method: string, path: string, body?: unknown, token = daemon.adminToken): Promise<T> {
  const res = await fetch(`${daemon.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = (await res.json()) as T;
  if (!res.ok) throw new Error(`${method} ${path}: ${JSON.stringify(data)}`);
  return data;
}

export async function startDemoFleet(dir: string): Promise<DemoFleet> {
  const keys = await keygen(join(dir, 'keys'));
  const daemon = await startDaemon(
    join(dir, 'daemon'),
    `health: { lastWillGraceS: 1, tickMs: 100, missedHeartbeats: 3 }\npatches: { releaseKeys: [${keys.publicKey}] }\n`,
  );
  await registerSampleIntegrity(daemon);
  const digest = (await must(daemon, ['patch', 'digest', join(EXAMPLES, 'sample-app')])).trim();
  await buildSignPublish(daemon, keys.privateKey, join(dir, 'patch'), '1.1.0', '>=1.0.0 <1.1.0');

  const created = await api<{ devices: { id: string; token: string }[] }>(daemon, 'POST', '/api/v1/devices/import', {
    devices: FLEET.map((d) => ({ id: d.id, type: d.type, parent: d.parent, customer: d.customer, installer: d.installer, tier: d.tier, tags: d.type === 'gateway' ? ['site-a'] : [] })),
  });
  const tokenOf = new Map(created.devices.map((d) => [d.id, d.token]));

  // Gateways heartbeat for themselves and report their sensors; a few never come up at all.
  const clients = new Map<string, MqttClient>();
  const silent = new Set(['gw-umbrella-02']);
  let seq = 0;
  const beat = (d: SimDevice, client: MqttClient) => {
    const payload = {
      seq: ++seq,
      ts: new Date().toISOString(),
      intervalS: 2,
      uptimeS: 3600 + seq,
      agentVersion: '1.0.0',
      softwareVersion: '1.0.0',
      integrity: digest,
      health: { cpu: 0.1 + (seq % 7) / 20, memUsed: 0.42, diskUsed: 0.37, load1: 0.25 },
      subsystems: [
        { name: 'uplink', ok: true, detail: 'lte -71 dBm' },
        { name: 'modbus', ok: d.failing !== 'modbus', detail: d.failing === 'modbus' ? 'no answer from slave 3 <timeout>' : '' },
      ],
      sensors: (d.sensors ?? []).map((s, i) => ({ id: s, ok: !(d.id === 'gw-acme-03' && i === 0), detail: d.id === 'gw-acme-03' && i === 0 ? 'no reading for 120 s' : '' })),
    };
    client.publish(`fleet/v1/${d.id}/heartbeat`, JSON.stringify(payload), { qos: 1 });
  };
  const gateways = FLEET.filter((d) => d.type === 'gateway' && !silent.has(d.id));
  await Promise.all(
    gateways.map(
      (d) =>
        new Promise<void>((resolve, reject) => {
          const client = connect(`mqtt://127.0.0.1:${daemon.mqttPort}`, {
            clientId: d.id,
            username: d.id,
            password: tokenOf.get(d.id)!,
            reconnectPeriod: 0,
            will: { topic: `fleet/v1/${d.id}/state`, payload: Buffer.from('{"online":false}'), qos: 1, retain: true },
          });
          client.once('connect', () => {
            clients.set(d.id, client);
            client.publish(`fleet/v1/${d.id}/state`, '{"online":true}', { qos: 1, retain: true });
            beat(d, client);
            resolve();
          });
          client.once('error', reject);
        }),
    ),
  );
  const timer = setInterval(() => {
    for (const d of gateways) {
      const c = clients.get(d.id);
      if (c?.connected) beat(d, c);
    }
  }, 1000);

  // Deaths: both initech gateways (a customer-wide loss with its gateway tickets as children) and one globex one.
  for (const id of ['gw-initech-01', 'gw-initech-02', 'gw-globex-04']) {
    (clients.get(id) as unknown as { stream: { destroy(): void } }).stream.destroy();
    clients.delete(id);
  }
  const operator = (await api<{ token: string }>(daemon, 'POST', '/api/v1/tokens', { name: 'olga.ops', role: 'operator' })).token;
  const viewer = (await api<{ token: string }>(daemon, 'POST', '/api/v1/tokens', { name: 'vera.view', role: 'viewer' })).token;
  await api(daemon, 'POST', '/api/v1/tokens', { name: 'ci-pipeline', role: 'admin' });

  // Wait for the evaluator's tickets, then act on some as people would.
  const deadline = Date.now() + 30_000;
  let tickets: { id: number; kind: string; subject: string }[] = [];
  while (Date.now() < deadline) {
    tickets = (await api<{ tickets: { id: number; kind: string; subject: string }[] }>(daemon, 'GET', '/api/v1/tickets')).tickets;
    if (tickets.some((t) => t.kind === 'cloud_loss_complete') && tickets.some((t) => t.subject === 'gw-globex-04')) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  const globex = tickets.find((t) => t.subject === 'gw-globex-04');
  if (globex) await api(daemon, 'POST', `/api/v1/tickets/${globex.id}/ack`, {}, operator);
  const initech = tickets.find((t) => t.kind === 'cloud_loss_complete');
  if (initech) await api(daemon, 'POST', `/api/v1/tickets/${initech.id}/ack`, {}, operator);
  await api(daemon, 'POST', '/api/v1/tickets', { subject: 'gw-acme-01', classification: 'consultative', severity: 'low', summary: 'Customer asks for a second uplink' }, operator);

  // Two more for the list: one paused by an operator, one aborted by an admin (made first, so the running one is the newest).
  for (const [customer, act] of [['acme', 'abort'], ['globex', 'pause']] as const) {
    try {
      const r = await api<{ id: string }>(daemon, 'POST', '/api/v1/rollouts', {
        patchId: 'sample-app-1.1.0',
        target: { customers: [customer] },
        waves: ['100%'],
        window: { cron: '0 2 * * *', duration: '4h', timezone: 'Europe/Berlin' },
      });
      await api(daemon, 'POST', `/api/v1/rollouts/${r.id}/${act}`, act === 'abort' ? { reason: 'wrong maintenance window' } : {}, act === 'pause' ? operator : daemon.adminToken);
    } catch (err) {
      // A target the planner refuses just leaves the list shorter; say so, the pictures are for people.
      process.stderr.write(`demo fleet: no ${act}ed rollout: ${(err as Error).message}\n`);
    }
  }

  const rollout = await api<{ id: string }>(daemon, 'POST', '/api/v1/rollouts', {
    patchId: 'sample-app-1.1.0',
    target: { types: ['gateway'], software: '>=1.0.0 <1.1.0' },
    waves: [2, '50%', '100%'],
    soak: '30m',
    window: { cron: '* * * * *', duration: '1h', timezone: 'Europe/Berlin' },
    jitter: '0s',
  });
  return {
    daemon,
    tokens: { operator, viewer },
    rolloutId: rollout.id,
    async stop() {
      clearInterval(timer);
      for (const c of clients.values()) c.end(true);
      await daemon.stop();
    },
  };
}
