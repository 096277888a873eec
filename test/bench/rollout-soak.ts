import { join } from 'node:path';
import { connect, type MqttClient } from 'mqtt';
import { startDaemon, ctl, eventually, type Daemon } from '../helpers/processes.js';
import { keygen, buildSignPublish } from '../helpers/sample-patch.js';
import { tempDir } from '../helpers/temp-dir.js';
import { topics } from '../../src/protocol/topics.js';
import type { Heartbeat, PatchStatus } from '../../src/protocol/types.js';

/**
 * Rollout soak (issue 9, `BENCH=rollout-soak`): the real daemon process, 50 simulated agents on real MQTT
 * connections (clean sessions, cmd/# subscribed after CONNACK with a random delay, online state after SUBACK,
 * as the real agent does), random reconnects and daemon kill -9s (restarted on the same ports and data dir)
 * during a three-wave rollout with bake time. A few devices fail their check and roll back. Prints:
 * - lost offers: devices the daemon recorded as offered that never received the offer (must be 0);
 * - double offers: more than one offer record for a device and patch, or more than one try without retries (0);
 * - devices wrongly done: counted done while not running the new version, or after rolling back (0).
 *
 * `SOAK_DEVICES` (default 50), `SOAK_KILLS` (default 3).
 */
interface SimDevice {
  id: string;
  token: string;
  version: string;
  failCheck: boolean;
  client?: MqttClient;
  seq: number;
  offersReceived: Set<string>;
  job?: { patchId: string; rolloutId?: string; state: PatchStatus['state'] };
  rolledBack: boolean;
  installs: number;
}

const VERSION_OLD = '1.0.0';
const VERSION_NEW = '1.1.0';
const DIGEST_OLD = `sha256:${'1'.repeat(64)}`;

export async function runRolloutSoak(): Promise<Record<string, number>> {
  const count = Number(process.env.SOAK_DEVICES ?? 50);
  const kills = Number(process.env.SOAK_KILLS ?? 3);
  const dir = tempDir('xcare-rollout-soak-');
  const keys = await keygen(join(dir.path, 'keys'));
  const dataDir = join(dir.path, 'daemon');
  const extra = `patches: { releaseKeys: [${keys.publicKey}] }\nrollouts: { tickMs: 200 }\nhealth: { tickMs: 500 }\n`;
  let daemon: Daemon = await startDaemon(dataDir, extra);
  const ports = { mqtt: daemon.mqttPort, http: daemon.httpPort };
  const ok = async (args: string[]) => {
    const r = await ctl(daemon, args);
    if (r.code !== 0) throw new Error(`xcarectl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  await ok(['integrity', 'register', '--version', VERSION_OLD, '--digest', DIGEST_OLD]);
  const patchId = await buildSignPublish(daemon, keys.privateKey, join(dir.path, 'patch'), VERSION_NEW, '>=1.0.0 <1.1.0');
  const listed = JSON.parse(await ok(['patch', 'list', '--json'])) as { id: string; integrity: string }[] | { patches: { id: string; integrity: string }[] };
  const digestNew = (Array.isArray(listed) ? listed : listed.patches).find((p) => p.id === patchId)!.integrity;

  const devices: SimDevice[] = [];
  for (let i = 0; i < count; i++) {
    const id = `soak-${String(i).padStart(3, '0')}`;
    const { token } = JSON.parse(await ok(['device', 'add', id, '--type', 'gateway', '--customer', 'acme', '--installer', 'minnovation', '--tier', 'xcare', '--json'])) as { token: string };
    devices.push({ id, token, version: VERSION_OLD, failCheck: i % 17 === 5, seq: 0, offersReceived: new Set(), rolledBack: false, installs: 0 });
  }

  let stopping = false;
  const url = `mqtt://127.0.0.1:${ports.mqtt}`;
  const publish = (d: SimDevice, topic: string, payload: unknown) => {
    if (d.client?.connected) d.client.publish(topic, JSON.stringify(payload), { qos: 1 });
  };
  const heartbeat = (d: SimDevice) => {
    const hb: Heartbeat = {
      seq: d.seq++, ts: new Date().toISOString(), intervalS: 2, agentVersion: 'soak', softwareVersion: d.version,
      integrity: d.version === VERSION_NEW ? digestNew : DIGEST_OLD,
      ...(d.job ? { patch: { patchId: d.job.patchId, state: d.job.state, ...(d.job.rolloutId ? { rolloutId: d.job.rolloutId } : {}) } } : {}),
    };
    publish(d, topics.heartbeat(d.id), hb);
  };
  const status = (d: SimDevice, state: PatchStatus['state'], detail = '') => {
    d.job = { ...d.job!, state };
    publish(d, topics.patchStatus(d.id), { patchId: d.job.patchId, ...(d.job.rolloutId ? { rolloutId: d.job.rolloutId } : {}), state, detail });
  };
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  /** The simulated job: download, install, check (some fail and roll back), as the agent reports it. */
  const runJob = async (d: SimDevice) => {
    d.installs++;
    status(d, 'downloading');
    await sleep(200 + Math.random() * 300);
    status(d, 'installing');
    await sleep(300 + Math.random() * 500);
    d.version = VERSION_NEW;
    heartbeat(d); // heartbeats carry the new version while the check still runs (issue 9 fault 2)
    await sleep(500);
    if (d.failCheck) {
      d.version = VERSION_OLD;
      d.rolledBack = true;
      status(d, 'rolled_back', 'check exited 1');
    } else status(d, 'installed');
    heartbeat(d);
  };
  const onMessage = (d: SimDevice, payload: Buffer) => {
    const o = JSON.parse(payload.toString()) as { rolloutId?: string; manifest?: string; action?: string };
    if (o.action) return;
    const id = (JSON.parse(Buffer.from(o.manifest!, 'base64').toString()) as { id: string }).id;
    d.offersReceived.add(id);
    if (d.job?.patchId === id) {
      // A repeated offer (re-sent on reconnect): repeat the state, run nothing (as the agent does).
      if (['installed', 'rolled_back', 'failed'].includes(d.job.state)) status(d, d.job.state);
      return;
    }
    d.job = { patchId: id, ...(o.rolloutId ? { rolloutId: o.rolloutId } : {}), state: 'downloading' };
    void runJob(d);
  };
  const connectDevice = (d: SimDevice) => {
    const client = connect(url, {
      clientId: d.id, username: d.id, password: d.token, clean: true, reconnectPeriod: 300 + Math.floor(Math.random() * 700), connectTimeout: 5000,
      will: { topic: topics.state(d.id), payload: Buffer.from('{"online":false}'), qos: 1, retain: true },
    });
    d.client = client;
    client.on('connect', () => {
      // A random delay between CONNACK and SUBSCRIBE (a slow device): the window where old daemons lost offers.
      setTimeout(() => {
        client.subscribe(topics.cmdFilter(d.id), { qos: 1 }, () => {
          client.publish(topics.state(d.id), '{"online":true}', { qos: 1, retain: true });
          heartbeat(d);
        });
      }, Math.floor(Math.random() * 50));
    });
    client.on('message', (_t, payload) => onMessage(d, payload));
    client.on('error', () => {});
  };
  for (const d of devices) connectDevice(d);
  const beats = setInterval(() => devices.forEach(heartbeat), 2000);
  await eventually(async () => {
    const list = JSON.parse(await ok(['device', 'list', '--json'])) as { softwareVersion: string | null }[];
    return list.filter((x) => x.softwareVersion === VERSION_OLD).length === count;
  }, 60_000, 'all simulated devices heard');

  // Random reconnects: every 250 ms, each device drops its connection with a small probability.
  let reconnects = 0;
  const churn = setInterval(() => {
    for (const d of devices) {
      if (Math.random() < 0.01 && d.client?.connected) {
        reconnects++;
        d.client.stream.destroy(); // abrupt: the broker fires the will; mqtt.js reconnects after reconnectPeriod
      }
    }
  }, 250);

  const created = JSON.parse(
    await ok(['rollout', 'create', '--patch', patchId, '--wave', '10%', '--wave', '30%', '--wave', '100%', '--soak', '5s', '--window', '* * * * *',
      '--duration', '1h', '--tz', 'UTC', '--abort-threshold', '0.5', '--progress-timeout', '60s', '--json']),
  ) as { id: string };
  const started = Date.now();

  // Daemon kill -9s at random moments while the rollout runs; restarted on the same ports and data dir.
  let killed = 0;
  const killer = (async () => {
    for (let k = 0; k < kills && !stopping; k++) {
      await sleep(2000 + Math.random() * 4000);
      if (stopping) break;
      await daemon.kill9();
      killed++;
      await sleep(500 + Math.random() * 1500);
      daemon = await startDaemon(dataDir, extra, ports);
    }
  })();

  let final: { state: string; counts: Record<string, number> } | undefined;
  try {
    final = await eventually(async () => {
      const r = await ctl(daemon, ['rollout', 'show', created.id, '--json']);
      if (r.code !== 0) return undefined;
      const v = JSON.parse(r.stdout) as { state: string; counts: Record<string, number> };
      return ['completed', 'aborted', 'failed'].includes(v.state) ? v : undefined;
    }, 240_000, 'rollout ended');
  } finally {
    stopping = true;
    await killer;
  }
  const seconds = (Date.now() - started) / 1000;
  clearInterval(churn);
  clearInterval(beats);

  // Judge from the daemon's own records.
  const records = new Map<string, number>();
  const rows = JSON.parse((await ctl(daemon, ['rollout', 'show', created.id, '--json'])).stdout) as { failed: { deviceId: string }[] };
  const byDevice = await Promise.all(devices.map(async (d) => {
    const shown = JSON.parse(await ok(['device', 'show', d.id, '--json'])) as { patches: { patchId: string; state: string }[] };
    return { d, patch: shown.patches.find((p) => p.patchId === patchId) };
  }));
  const { default: Database } = await import('better-sqlite3');
  const db = new Database(join(dataDir, 'xcare.db'), { readonly: true });
  for (const r of db.prepare('SELECT device_id, COUNT(*) AS n FROM patch_offers WHERE patch_id = ? GROUP BY device_id').all(patchId) as { device_id: string; n: number }[]) records.set(r.device_id, r.n);
  const rollout = db.prepare('SELECT device_id, state, attempts FROM rollout_devices WHERE rollout_id = ?').all(created.id) as { device_id: string; state: string; attempts: number }[];
  db.close();

  let lost = 0;
  let doubles = 0;
  let wronglyDone = 0;
  for (const r of rollout) {
    const d = devices.find((x) => x.id === r.device_id)!;
    if (records.has(r.device_id) && !d.offersReceived.has(patchId)) lost++;
    if ((records.get(r.device_id) ?? 0) > 1 || r.attempts > 1 || d.installs > 1) doubles++;
    if (r.state === 'done' && (d.version !== VERSION_NEW || d.rolledBack)) wronglyDone++;
  }
  const result = {
    devices: count,
    seconds: Math.round(seconds),
    daemonKills: killed,
    reconnects,
    done: final.counts.done ?? 0,
    failed: final.counts.failed ?? 0,
    expectedFailures: devices.filter((d) => d.failCheck).length,
    lostOffers: lost,
    doubleOffers: doubles,
    wronglyDone,
    failedListed: rows.failed.length,
    patchStatesKnown: byDevice.filter((x) => x.patch).length,
  };
  process.stdout.write(
    `rollout ${created.id} ${final.state} in ${result.seconds} s: ${result.done} done, ${result.failed} failed (${result.expectedFailures} set to fail), ` +
      `${killed} daemon kill -9s, ${reconnects} random reconnects\n` +
      `lost offers: ${lost}\ndouble offers: ${doubles}\ndevices wrongly done: ${wronglyDone}\n`,
  );
  for (const d of devices) d.client?.end(true);
  await daemon.stop();
  dir.cleanup();
  return result;
}
