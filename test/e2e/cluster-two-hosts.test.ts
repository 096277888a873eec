import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ctl, eventually, startDaemon, type Daemon, type RunningProcess } from '../helpers/processes.js';
import { startMosquitto, type RunningMosquitto } from '../helpers/mosquitto.js';
import { keygen, buildSignPublish, provisionSampleAgent, registerSampleIntegrity } from '../helpers/sample-patch.js';
import { tempDir } from '../helpers/temp-dir.js';
import { toolsMissing } from '../helpers/system-tools.js';
import { PG_URL, pgSchema } from '../helpers/store-engines.js';

const missing = [...toolsMissing(['mosquitto', 'mosquitto_ctrl'], 'mosquitto')];
if (!PG_URL) {
  if (process.env.CI === 'true') throw new Error('CI=true: XCARE_TEST_DATABASE_URL must be set (.ci/run starts PostgreSQL)');
  process.stderr.write('\n*** SKIPPED: the two-hosts cluster test needs PostgreSQL (set XCARE_TEST_DATABASE_URL) ***\n\n');
}

/**
 * Issue 13: instances of one cluster on different hosts share PostgreSQL and the broker, not a data dir.
 * Two real xcared with data dirs of their own, one PostgreSQL schema, a real Mosquitto (dynsec):
 * - an instance whose device-token key differs from the store's refuses to start, naming the fix;
 * - with the key copied it joins; a patch published through the leader is downloaded by a real agent
 *   from the other instance, whose data dir never had the artifact (it comes from the store);
 * - a third daemon pointed at the same store without cluster mode refuses to start (STORE_IN_USE).
 */
describe.skipIf(missing.length > 0 || !PG_URL)('end to end: a cluster on two hosts (own data dirs, one PostgreSQL)', () => {
  const dir = tempDir('xcare-e2e-two-hosts-');
  let storeUrl: string;
  let dropSchema: (() => Promise<void>) | undefined;
  let broker: RunningMosquitto;
  let a: Daemon;
  let b: Daemon | undefined;
  let agent: RunningProcess | undefined;
  let keys: { publicKey: string; privateKey: string };
  const dirA = join(dir.path, 'host-a');
  const dirB = join(dir.path, 'host-b');
  const yaml = (id: string) =>
    `patches: { releaseKeys: [${keys.publicKey}] }\nrollouts: { tickMs: 100 }\nhealth: { tickMs: 100, lastWillGraceS: 2 }\ncluster: { enabled: true, instanceId: ${id}, leaseS: 3, renewS: 1 }\n`;
  const env = () => ({ XCARE_MQTT_BROKER_URL: broker.daemonUrl, XCARE_DATABASE_URL: storeUrl });

  beforeAll(async () => {
    const schema = await pgSchema('two_hosts');
    storeUrl = schema.url;
    dropSchema = schema.drop;
    keys = await keygen(join(dir.path, 'keys'));
    broker = await startMosquitto(join(dir.path, 'mosquitto'));
    a = await startDaemon(dirA, yaml('ha'), undefined, env());
    await eventually(async () => ((await (await fetch(`${a.url}/readyz`)).json()) as { cluster: { leader: boolean } }).cluster.leader, 15_000, 'ha leads');
  }, 90_000);

  afterAll(async () => {
    await agent?.stop();
    await b?.stop();
    await a?.stop();
    await broker?.stop();
    await dropSchema?.();
    dir.cleanup();
  });

  it('an instance with its own device-token key refuses to start and names the key file; with the key copied it joins', async () => {
    // No key file: refused before one is generated (the data dir gets none).
    await expect(startDaemon(dirB, yaml('hb'), undefined, env())).rejects.toThrow(/device-token\.key does not exist, but this store's devices were provisioned with device-token key/);
    expect(existsSync(join(dirB, 'device-token.key'))).toBe(false);
    // Another key: refused, naming the file.
    writeFileSync(join(dirB, 'device-token.key'), `${'ab'.repeat(32)}\n`, { mode: 0o600 });
    await expect(startDaemon(dirB, yaml('hb'), undefined, env())).rejects.toThrow(/device-token\.key is not the device-token key this store's devices were provisioned with/);
    copyFileSync(join(dirA, 'device-token.key'), join(dirB, 'device-token.key'));
    b = await startDaemon(dirB, yaml('hb'), undefined, env());
    // Ready before its first election attempt has read the lease: wait for it (a loaded CI box is slow).
    const b0 = b;
    const cluster = await eventually(async () => {
      const ready = (await (await fetch(`${b0.url}/readyz`)).json()) as { cluster: { leader: boolean; holder: string | null } };
      return ready.cluster.holder !== null ? ready.cluster : undefined;
    }, 15_000, 'hb has read the lease');
    expect(cluster).toMatchObject({ leader: false, holder: 'ha' });
  }, 60_000);

  it('an agent downloads a patch from the instance whose data dir never had the artifact, and installs it', async () => {
    expect(b).toBeDefined();
    await registerSampleIntegrity(a);
    await buildSignPublish(a, keys.privateKey, join(dir.path, 'patch'), '1.1.0', '>=1.0.0 <1.1.0');
    expect(existsSync(join(dirB, 'artifacts')) ? readdirSync(join(dirB, 'artifacts')).filter((f) => /^[0-9a-f]{64}$/.test(f)) : []).toEqual([]);
    // The agent's HTTP base is host B; its MQTT goes to the shared broker.
    agent = await provisionSampleAgent({ ...b!, mqttPort: broker.port, url: b!.url }, 'gw-h1', dir.path, keys.publicKey);
    await eventually(async () => JSON.parse((await ctl(a, ['device', 'show', 'gw-h1', '--json'])).stdout).state === 'online', 30_000, 'gw-h1 online');
    const offered = await ctl(a, ['patch', 'offer', 'gw-h1', '--patch', 'sample-app-1.1.0']);
    expect(offered.code, offered.stderr).toBe(0);
    await eventually(
      async () => {
        const d = JSON.parse((await ctl(a, ['device', 'show', 'gw-h1', '--json'])).stdout) as { softwareVersion?: string };
        return d.softwareVersion === '1.1.0';
      },
      60_000,
      'gw-h1 runs 1.1.0',
    );
    expect(readdirSync(join(dirB, 'artifacts')).filter((f) => /^[0-9a-f]{64}$/.test(f))).toHaveLength(1);
  }, 120_000);

  it('a daemon without cluster mode on the same store refuses to start once a lease has passed (STORE_IN_USE)', async () => {
    const dirC = join(dir.path, 'host-c');
    mkdirSync(dirC, { recursive: true });
    copyFileSync(join(dirA, 'device-token.key'), join(dirC, 'device-token.key'));
    const started = Date.now();
    await expect(startDaemon(dirC, '', undefined, { XCARE_DATABASE_URL: storeUrl })).rejects.toThrow(/another xcared \(ha\) keeps this store's lease/);
    // It waited for a lease to pass (a crashed predecessor's would have expired), not forever.
    expect(Date.now() - started).toBeLessThan(20_000);
  }, 60_000);

  it('a second process with an instance id already renewing the lease refuses to start (INSTANCE_ID_IN_USE)', async () => {
    const dirD = join(dir.path, 'host-d');
    mkdirSync(dirD, { recursive: true });
    copyFileSync(join(dirA, 'device-token.key'), join(dirD, 'device-token.key'));
    await expect(startDaemon(dirD, 'cluster: { instanceId: ha, leaseS: 3, renewS: 1 }\n', undefined, { XCARE_DATABASE_URL: storeUrl })).rejects.toThrow(
      /another xcared runs with the instance id ha/,
    );
    // The leader it would have doubled is untouched.
    const ready = (await (await fetch(`${a.url}/readyz`)).json()) as { cluster: { leader: boolean } };
    expect(ready.cluster.leader).toBe(true);
  }, 60_000);
});
