/**
 * `npm run demo` (issue 10): the real xcared on free ports with a temporary data dir, a simulated fleet of real edge
 * agents, and a scripted day of faults and a patch rollout, with the tickets printed as they open. Ctrl-C (or
 * SIGTERM) stops the agents, then the daemon, removes the temporary files and exits 0.
 *
 *   node dist/src/demo/main.js [--pace SECONDS] [--once] [--keep]
 *     --pace   pause between scenes (default 10), to watch tickets resolve and look around; 0 plays straight through
 *     --once   exit after the day instead of waiting for Ctrl-C (exit 1 if a promised ticket did not open)
 *     --keep   keep the temporary directory (data, logs, keys) and print its path
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { generateKeyPair } from '../../patches/signing.js';
import { DEMO_INTERVAL_S, packageRoot, startDemoDaemon, type DemoDaemon } from './daemon.js';
import { DEMO_CUSTOMERS, DemoFleet, demoDevices, sensorsOf } from './fleet.js';
import { PROMISED_TICKETS, TicketWatcher, playDay, waitFor } from './day.js';

const print = (line: string) => process.stdout.write(`${line}\n`);

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { once: { type: 'boolean' }, keep: { type: 'boolean' }, pace: { type: 'string', default: '10' } }, strict: true });
  const paceS = Number(values.pace);
  if (!Number.isFinite(paceS) || paceS < 0) {
    process.stderr.write(`demo: --pace: expected seconds >= 0, got ${JSON.stringify(values.pace)}\n`);
    return 2;
  }
  const examples = join(packageRoot(), 'patches', 'examples');
  const dir = mkdtempSync(join(tmpdir(), 'xcare-demo-'));
  let stopping = false;
  let daemon: DemoDaemon | undefined;
  let fleet: DemoFleet | undefined;
  let watcher: TicketWatcher | undefined;

  let finish: (code: number) => void = () => {};
  const finished = new Promise<number>((resolve) => (finish = resolve));
  const shutdown = async (code: number, why: string) => {
    if (stopping) return;
    stopping = true;
    print(`\n${why}: stopping the agents and the daemon...`);
    watcher?.stop();
    await fleet?.stopAll();
    const daemonCode = await daemon?.stop();
    if (values.keep) print(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
    print(`stopped (xcared exit ${daemonCode ?? 'n/a'})`);
    finish(code);
  };
  process.once('SIGINT', () => void shutdown(0, 'Ctrl-C'));
  process.once('SIGTERM', () => void shutdown(0, 'SIGTERM'));

  try {
    const keys = generateKeyPair();
    const releasePublicKey = join(dir, 'release-public.pem');
    const releasePrivateKey = join(dir, 'release-private.pem');
    writeFileSync(releasePublicKey, keys.publicPem);
    writeFileSync(releasePrivateKey, keys.privatePem, { mode: 0o600 });

    print('xcare-fleet demo: starting xcared on free ports with a temporary data dir...');
    daemon = await startDemoDaemon(dir, releasePublicKey);
    const d = daemon;
    print('');
    print('What to look at (while the demo runs):');
    print(`  API        ${d.url}/api/v1/tickets?status=open   (header  Authorization: Bearer ${d.adminToken})`);
    print(`  xcarectl   XCARE_URL=${d.url} XCARE_TOKEN=${d.adminToken} npx xcarectl tickets`);
    print(`  metrics    ${d.url}/metrics   (fleet_tickets_open, fleet_devices, fleet_rollout_devices ...)`);
    print(`  broker     ${d.mqttUrl}`);
    print(`  daemon log ${d.logFile}   (JSON lines)`);

    fleet = new DemoFleet({
      dir: join(dir, 'fleet'),
      mqttUrl: d.mqttUrl,
      daemonUrl: d.url,
      examples,
      releasePublicKey,
      intervalS: DEMO_INTERVAL_S,
      failingCheck: new Set(['gw-globex-2']),
    });
    print('\nThe fleet (every gateway a real edge agent on the sample software 1.0.0):');
    const tokens = new Map<string, string>();
    for (const device of demoDevices()) {
      if (stopping) break;
      const res = await d.api<{ token: string }>('POST', '/api/v1/devices', device);
      tokens.set(device.id, res.token);
    }
    for (const c of DEMO_CUSTOMERS) {
      const gws = c.gateways.map((g) => `${g}${c.sensorsPerGateway ? ` (+${sensorsOf(g, c.sensorsPerGateway).join(', ')})` : ''}`);
      print(`  ${c.name.padEnd(9)} ${c.note.padEnd(46)} ${gws.join('  ')}`);
    }
    // The sample software's digest, so devices on 1.0.0 are eligible (patch publishing registers 1.1.0's).
    const integrity = (await d.ctl(['patch', 'digest', join(examples, 'sample-app')])).trim();
    await d.api('POST', '/api/v1/integrity', { version: '1.0.0', digest: integrity });
    for (const c of DEMO_CUSTOMERS) {
      for (const gw of c.gateways) {
        fleet.prepare(gw, tokens.get(gw)!, sensorsOf(gw, c.sensorsPerGateway));
        fleet.start(gw);
      }
    }
    const all = DEMO_CUSTOMERS.flatMap((c) => c.gateways);
    const online = await waitFor(async () => {
      const list = await d.api<{ devices: { id: string; state?: string }[] }>('GET', '/api/v1/devices?type=gateway');
      return list.devices.filter((x) => x.state === 'online').length === all.length;
    }, 60_000);
    print(online ? `  all ${all.length} gateways online` : '  !! not every gateway came online within 60 s');

    watcher = new TicketWatcher(d, print);
    await watcher.poll();
    watcher.start();
    print('\nThe day (tickets print as they open, attach and resolve):');
    const missing = await playDay({
      daemon: d,
      fleet,
      watcher,
      print,
      dir,
      examples,
      releasePrivateKey,
      sceneTimeoutMs: 60_000,
      cancelled: () => stopping,
      paceMs: paceS * 1000,
    });
    if (stopping) return finished;
    await watcher.poll();
    print(`\nThe day is over. Promised tickets: ${PROMISED_TICKETS.length - missing.length} of ${PROMISED_TICKETS.length} opened${missing.length ? ` (missing: ${missing.join('; ')})` : ''}.`);
    print(`Support queue now:  XCARE_URL=${d.url} XCARE_TOKEN=${d.adminToken} npx xcarectl tickets --status all`);
    if (values.once) void shutdown(missing.length ? 1 : 0, 'done (--once)');
    else print('The fleet keeps running; press Ctrl-C to stop.');
  } catch (err) {
    if (!stopping) {
      process.stderr.write(`demo: ${(err as Error).message}\n`);
      void shutdown(1, 'failed');
    }
  }
  return finished;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`demo: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
