import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { ctl, eventually, startAgent, type Daemon, type RunningProcess } from '../helpers/processes.js';
import { startExternalDaemon } from '../helpers/external-daemon.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { tempDir } from '../helpers/temp-dir.js';
import { toolsMissing } from '../helpers/system-tools.js';

interface DeviceJson {
  tier: string;
  subscriptionEnd: string | null;
  revokedAt: number | null;
  state: string;
  stateSource?: string;
}

/**
 * Issue 13, item 3: what one instance changes, the others serve within `cluster.renewS` (the `events` log
 * is the change feed), and a follower answers liveness from what the leader stored instead of `unknown`.
 * Two real xcared share one data dir and a real Mosquitto (dynsec); a real agent heartbeats through it.
 */
describe.skipIf(toolsMissing(['mosquitto', 'mosquitto_ctrl'], 'mosquitto').length > 0)('end to end: a follower follows the leader', () => {
  const dir = tempDir('xcare-e2e-follow-');
  const renewS = 1;
  let broker: RunningMosquitto;
  let a: Daemon;
  let b: Daemon;
  let agent: RunningProcess | undefined;
  const tokens: Record<string, string> = {};
  const dataDir = join(dir.path, 'shared-data');
  const yaml = `health: { lastWillGraceS: 2, missedHeartbeats: 3 }\ntickets: { resolveAfterS: 600 }\n`;

  const device = async (d: Daemon, id: string) =>
    (await (await fetch(`${d.url}/api/v1/devices/${id}`, { headers: { authorization: `Bearer ${d.adminToken}` } })).json()) as DeviceJson;
  const artifact = (d: Daemon, id: string, token: string) =>
    fetch(`${d.url}/patches/no-such-patch/artifact`, { headers: { authorization: `Basic ${Buffer.from(`${id}:${token}`).toString('base64')}` } });
  /** Within renewS plus a poll and a loaded CI box's slack. */
  const followWithin = renewS * 1000 + 8000;

  beforeAll(async () => {
    broker = await startMosquitto(join(dir.path, 'mosquitto'));
    const cluster = (id: string) => `${yaml}cluster: { enabled: true, instanceId: ${id}, leaseS: 3, renewS: ${renewS} }\n`;
    a = await startExternalDaemon(dataDir, broker.daemonUrl, cluster('fa'));
    await eventually(async () => ((await (await fetch(`${a.url}/readyz`)).json()) as { cluster?: { leader: boolean } }).cluster?.leader, 15_000, 'fa elected');
    b = await startExternalDaemon(dataDir, broker.daemonUrl, cluster('fb'));
    for (const id of ['gw-f1', 'gw-f2']) {
      const r = await ctl(a, ['device', 'add', id, '--type', 'gateway', '--customer', 'acme', '--installer', 'minnovation', '--tier', 'xcare', '--json']);
      expect(r.code, r.stderr).toBe(0);
      tokens[id] = (JSON.parse(r.stdout) as { token: string }).token;
    }
    await eventually(async () => (await fetch(`${b.url}/api/v1/devices/gw-f2`, { headers: { authorization: `Bearer ${b.adminToken}` } })).ok, followWithin, 'follower knows the devices');
  }, 90_000);

  afterAll(async () => {
    await agent?.stop();
    await a?.stop();
    await b?.stop();
    await broker?.stop();
    dir.cleanup();
  });

  it('a renewal that changes the tier on the leader reaches the follower within renewS', async () => {
    const before = await device(b, 'gw-f1');
    expect(before.tier).toBe('xcare');
    const to = `${Number(before.subscriptionEnd!.slice(0, 4)) + 1}-06-30`;
    const res = await fetch(`${a.url}/api/v1/devices/gw-f1/renew`, {
      method: 'POST',
      headers: { authorization: `Bearer ${a.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ to, tier: 'xcare_pro' }),
    });
    expect(res.status, await res.clone().text()).toBe(200);
    const followed = await eventually(async () => {
      const d = await device(b, 'gw-f1');
      return d.tier === 'xcare_pro' && d;
    }, followWithin, 'follower sees xcare_pro');
    expect(followed.subscriptionEnd).toBe(to);
    // fleet_devices on the follower counts it under its new tier too.
    const metrics = await (await fetch(`${b.url}/metrics`)).text();
    expect(metrics).toMatch(/^fleet_devices\{type="gateway",tier="xcare_pro",state="unknown"\} 1$/m);
  }, 30_000);

  it('a token rotated on the leader: the follower accepts the new token and refuses the old one', async () => {
    // The artifact route authenticates on whichever instance serves it: 401 unauthenticated, 403 no offer.
    expect((await artifact(b, 'gw-f2', tokens['gw-f2']!)).status).toBe(403);
    const r = await ctl(a, ['device', 'rotate-token', 'gw-f2', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const fresh = (JSON.parse(r.stdout) as { token: string }).token;
    await eventually(async () => (await artifact(b, 'gw-f2', fresh)).status === 403, followWithin, 'follower accepts the new token');
    expect((await artifact(b, 'gw-f2', tokens['gw-f2']!)).status).toBe(401);
    tokens['gw-f2'] = fresh;
  }, 30_000);

  it('a device revoked then re-enabled by a rotation on the leader is live again on the follower', async () => {
    expect((await ctl(a, ['device', 'revoke', 'gw-f2'])).code).toBe(0);
    await eventually(async () => (await device(b, 'gw-f2')).revokedAt !== null, followWithin, 'follower sees the revocation');
    expect((await artifact(b, 'gw-f2', tokens['gw-f2']!)).status).toBe(401);
    const r = await ctl(a, ['device', 'rotate-token', 'gw-f2', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const fresh = (JSON.parse(r.stdout) as { token: string }).token;
    const back = await eventually(async () => {
      const d = await device(b, 'gw-f2');
      return d.revokedAt === null && d;
    }, followWithin, 'follower sees the device re-enabled');
    expect(back.state).not.toBe('revoked');
    expect((await artifact(b, 'gw-f2', fresh)).status).toBe(403);
  }, 30_000);

  it("the follower serves the leader's stored liveness, marked as such: online, then lost after a kill -9", async () => {
    expect((await device(b, 'gw-f1')).state).toBe('unknown');
    agent = startAgent({ deviceId: 'gw-f1', token: tokens['gw-f1']!, mqttPort: broker.port, httpUrl: a.url, dir: join(dir.path, 'agent-gw-f1'), intervalS: 1 });
    const online = await eventually(async () => {
      const d = await device(b, 'gw-f1');
      return d.state === 'online' && d;
    }, 30_000, 'follower shows online');
    expect(online.stateSource).toBe('leader-store');
    expect((await device(a, 'gw-f1')).stateSource).toBe('evaluator');
    await agent.kill9();
    agent = undefined;
    // Last Will -> offline within the grace, then lost; the follower follows the leader's view of both.
    await eventually(async () => (await device(b, 'gw-f1')).state === 'lost', 30_000, 'follower shows lost');
    expect((await device(a, 'gw-f1')).state).toBe('lost');
    // Metrics stay the evaluator's own: a follower does not count devices it does not judge.
    expect(await (await fetch(`${b.url}/metrics`)).text()).not.toMatch(/^fleet_devices\{[^}]*state="lost"\} /m);
  }, 60_000);
});
