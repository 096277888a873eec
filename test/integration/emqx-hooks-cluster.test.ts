import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { App } from '../../src/app.js';
import { validateConfig } from '../../src/config/load.js';
import { systemClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { eventually } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp-dir.js';
import { toolsMissing } from '../helpers/system-tools.js';

interface TicketJson {
  kind: string;
  subject: string;
  summary: string;
}

/**
 * Issue 13: with EMQX's HTTP hooks in a cluster, EMQX asks whichever instance its load balancer picks, but
 * only the leader's evaluator judges security signals. Refused CONNECTs and denied topics answered by a
 * follower reach the leader's evaluator through the store (SecurityRelay), so a burst split over the
 * instances opens its `security_incident` on the leader. Two Apps in this process share one data dir
 * (real SQLite), a real Mosquitto carries their device traffic, the hooks are called over real HTTP.
 */
describe.skipIf(toolsMissing(['mosquitto'], 'mosquitto').length > 0)('EMQX hooks in a cluster: a follower relays its security signals to the leader', () => {
  const dir = tempDir('xcare-emqx-cluster-');
  const adminToken = 'emqx-cluster-admin-token-0123';
  let broker: RunningMosquitto;
  let leader: App;
  let follower: App;
  const dataDir = join(dir.path, 'data');

  const base = (app: App) => `http://127.0.0.1:${app.http.port()}`;
  const post = (app: App, path: string, body: unknown) =>
    fetch(`${base(app)}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const securityTickets = async (app: App) =>
    ((await (await fetch(`${base(app)}/api/v1/tickets?status=all`, { headers: { authorization: `Bearer ${adminToken}` } })).json()) as { tickets: TicketJson[] }).tickets.filter(
      (t) => t.kind === 'security_incident',
    );
  const appOf = (instanceId: string) =>
    new App(
      validateConfig({
        dataDir,
        adminToken,
        mqtt: { broker: { url: broker.daemonUrl, credentials: 'http' } },
        http: { host: '127.0.0.1', port: 0 },
        health: { security: { authFailures: 4, aclViolations: 3, windowS: 600 } },
        cluster: { enabled: true, instanceId, leaseS: 3, renewS: 1 },
      }),
      { clock: systemClock, log: silentLogger(), onLeadershipLost: () => {} },
    );

  beforeAll(async () => {
    broker = await startMosquitto(join(dir.path, 'mosquitto'), { dynsec: false });
    leader = appOf('ha');
    await leader.start();
    await eventually(() => leader.cluster!.isLeader(), 15_000, 'ha elected');
    follower = appOf('hb');
    await follower.start();
    const res = await fetch(`${base(leader)}/api/v1/devices`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'gw-h1', type: 'gateway', customer: 'acme', installer: 'minnovation', tier: 'xcare' }),
    });
    expect(res.status).toBe(201);
    await eventually(() => follower.registry.get('gw-h1') !== undefined, 10_000, 'follower knows gw-h1');
  }, 60_000);

  afterAll(async () => {
    await follower?.stop();
    await leader?.stop();
    await broker?.stop();
    dir.cleanup();
  });

  it('refused CONNECTs split over both instances add up to one fleet security_incident on the leader', async () => {
    expect(follower.cluster!.isLeader()).toBe(false);
    // 3 through the follower, 1 through the leader: only together do they reach the threshold (4).
    for (let i = 0; i < 3; i++) {
      const r = await post(follower, '/mqtt/auth', { clientid: 'gw-h1', username: 'gw-h1', password: `wrong-${i}`, peerhost: '10.1.0.9' });
      expect(await r.json()).toEqual({ result: 'deny' });
    }
    const r = await post(leader, '/mqtt/auth', { clientid: 'gw-nobody', username: 'gw-nobody', password: 'x', peerhost: '10.1.0.9' });
    expect(await r.json()).toEqual({ result: 'deny' });
    const tickets = await eventually(async () => {
      const t = (await securityTickets(leader)).filter((x) => x.subject === 'fleet');
      return t.length > 0 && t;
    }, 15_000, 'fleet security_incident on the leader');
    expect(tickets).toHaveLength(1);
    expect(tickets[0]!.summary).toContain('4 failed CONNECTs');
    // Relayed as one aggregated row without the (untrusted) claimed device id.
    const rows = leader.db.prepare(`SELECT device_id, data FROM events WHERE kind = 'security_signal'`).all() as { device_id: string | null; data: string }[];
    // (One row per relay pass: a pass may fall between two of the requests.)
    expect(rows.every((r) => r.device_id === null)).toBe(true);
    expect(rows.map((r) => JSON.parse(r.data) as { kind: string; count: number }).reduce((n, d) => n + (d.kind === 'auth_failure' ? d.count : 0), 0)).toBe(3);
  }, 30_000);

  it("a device's denied topics reported to the follower open that device's security_incident on the leader", async () => {
    for (let i = 0; i < 3; i++) {
      const r = await post(follower, '/mqtt/acl', { clientid: 'gw-h1', username: 'gw-h1', topic: `fleet/v1/gw-other-${i}/heartbeat`, action: 'publish' });
      expect(await r.json()).toEqual({ result: 'deny' });
    }
    const ticket = await eventually(async () => (await securityTickets(leader)).find((t) => t.subject === 'gw-h1'), 15_000, 'gw-h1 security_incident');
    expect(ticket.summary).toContain('3 ACL violations');
  }, 30_000);
});
