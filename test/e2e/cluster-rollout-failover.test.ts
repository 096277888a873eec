import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { connectAsync, type MqttClient } from 'mqtt';
import { ctl, eventually, type Daemon, type RunningProcess } from '../helpers/processes.js';
import { startExternalDaemon } from '../helpers/external-daemon.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { keygen, buildSignPublish, provisionSampleAgent, registerSampleIntegrity } from '../helpers/sample-patch.js';
import { tempDir } from '../helpers/temp-dir.js';
import { toolsMissing } from '../helpers/system-tools.js';

/**
 * Issue 13, failover of the rollout scheduler: a two-wave rollout over real agents through Mosquitto;
 * the leader is killed -9 right after the first wave's offer went out; the follower takes over,
 * finishes the rollout, and no device is offered the patch twice (counted on the broker itself).
 */
describe.skipIf(toolsMissing(['mosquitto', 'mosquitto_ctrl'], 'mosquitto').length > 0)('end to end: rollout across a leader failover', () => {
  const dir = tempDir('xcare-e2e-cluster-rollout-');
  const ids = ['gw-ro1', 'gw-ro2', 'gw-ro3', 'gw-ro4'];
  let broker: RunningMosquitto;
  let a: Daemon;
  let b: Daemon;
  let monitor: MqttClient;
  const agents: RunningProcess[] = [];
  const offers = new Map<string, number>();

  beforeAll(async () => {
    const keys = await keygen(join(dir.path, 'keys'));
    broker = await startMosquitto(join(dir.path, 'mosquitto'));
    const yaml = (id: string) =>
      `patches: { releaseKeys: [${keys.publicKey}] }\nrollouts: { tickMs: 100 }\nhealth: { tickMs: 100, lastWillGraceS: 2 }\ncluster: { enabled: true, instanceId: ${id}, leaseS: 3, renewS: 1 }\n`;
    const dataDir = join(dir.path, 'shared-data');
    a = await startExternalDaemon(dataDir, broker.daemonUrl, yaml('ra'));
    await eventually(async () => ((await (await fetch(`${a.url}/readyz`)).json()) as { cluster: { leader: boolean } }).cluster.leader, 15_000, 'ra leads');
    b = await startExternalDaemon(dataDir, broker.daemonUrl, yaml('rb'));
    await registerSampleIntegrity(a);
    await buildSignPublish(a, keys.privateKey, join(dir.path, 'patch'), '1.1.0', '>=1.0.0 <1.1.0');
    monitor = await connectAsync(`mqtt://127.0.0.1:${broker.port}`, { username: broker.user, password: broker.password, clientId: 'offer-monitor' });
    monitor.on('message', (topic) => {
      const id = topic.split('/')[2]!;
      offers.set(id, (offers.get(id) ?? 0) + 1);
    });
    await monitor.subscribeAsync('fleet/v1/+/cmd/patch', { qos: 1 });
    // Agents download from the follower: it serves artifacts from the shared store and outlives the leader.
    for (const id of ids) agents.push(await provisionSampleAgent({ ...b, mqttPort: broker.port, url: b.url }, id, dir.path, keys.publicKey));
    await eventually(
      async () => {
        const list = JSON.parse((await ctl(a, ['device', 'list', '--json'])).stdout) as { state: string }[];
        return list.filter((d) => d.state === 'online').length === ids.length;
      },
      30_000,
      'all agents online',
    );
  }, 120_000);

  afterAll(async () => {
    await monitor?.endAsync();
    await Promise.all(agents.map((p) => p.stop()));
    await a?.stop();
    await b?.stop();
    await broker?.stop();
    dir.cleanup();
  });

  it('the follower finishes the rollout after the leader dies, and every device was offered the patch once', async () => {
    const created = await ctl(a, [
      'rollout', 'create', '--patch', 'sample-app-1.1.0', '--types', 'gateway', '--software', '>=1.0.0 <1.1.0',
      '--wave', '1', '--wave', '100%', '--soak', '3s', '--window', '* * * * *', '--duration', '1h', '--tz', 'UTC',
      '--abort-threshold', '0.5', '--jitter', '0s', '--json',
    ]);
    expect(created.code, created.stderr).toBe(0);
    const parsed = JSON.parse(created.stdout) as { id?: string; rollout?: { id: string } };
    const id = parsed.id ?? parsed.rollout!.id;
    await eventually(() => [...offers.values()].reduce((x, y) => x + y, 0) >= 1, 30_000, 'first offer');
    await a.kill9();
    await eventually(async () => ((await (await fetch(`${b.url}/readyz`)).json()) as { cluster: { leader: boolean } }).cluster.leader, 15_000, 'rb leads');
    const view = await eventually(
      async () => {
        const v = JSON.parse((await ctl(b, ['rollout', 'show', id, '--json'])).stdout) as { state: string; reason?: string; counts: Record<string, number> };
        if (v.state === 'aborted') throw new Error(`aborted: ${v.reason}`);
        return v.state === 'completed' ? v : undefined;
      },
      90_000,
      'rollout completed by the new leader',
    );
    expect(view.counts.done).toBe(ids.length);
    for (const d of ids) expect(offers.get(d), d).toBe(1);
    const tickets = JSON.parse((await ctl(b, ['tickets', '--status', 'all', '--json'])).stdout);
    expect(JSON.stringify(tickets)).not.toMatch(/gateway_loss/);
  }, 150_000);
});
