import { describe, it, expect, afterAll } from 'vitest';
import { join } from 'node:path';
import { startDaemon, eventually, type Daemon } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp-dir.js';
import { SimDevice } from '../helpers/sim-device.js';
import { allTickets, api, provision, readyz } from '../helpers/detection-fixtures.js';
import { PG_URL, pgSchema } from '../helpers/store-engines.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';

if (!PG_URL) {
  if (process.env.CI === 'true') throw new Error('CI=true: XCARE_TEST_DATABASE_URL must be set (.ci/run starts PostgreSQL)');
  process.stderr.write('\n*** SKIPPED: the PostgreSQL outage test needs PostgreSQL (set XCARE_TEST_DATABASE_URL) ***\n\n');
}

/**
 * Issue 13 with RULES.md "Our own outages are not the fleet's": the database behind a daemon on PostgreSQL
 * goes away for longer than the store lease (connections reset, new ones refused) while a gateway dies. The
 * daemon keeps running and says so (/readyz 503 `store unreachable`), opens no ticket for the devices that
 * kept beating, and once the database is back it commits the loss it judged meanwhile: exactly one ticket.
 */
describe.skipIf(!PG_URL)('end to end: PostgreSQL unreachable for a while', () => {
  const dir = tempDir('xcare-e2e-pg-outage-');
  let dropSchema: (() => Promise<void>) | undefined;
  let proxy: TcpProxy;
  let daemon: Daemon | undefined;
  const devices: SimDevice[] = [];

  afterAll(async () => {
    await Promise.all(devices.map((d) => d.stop()));
    await daemon?.stop();
    await proxy?.close();
    await dropSchema?.();
    dir.cleanup();
  });

  it('no daemon exit, no false ticket, /readyz names it, and the loss judged during the outage is ticketed once afterwards', async () => {
    const schema = await pgSchema('outage');
    dropSchema = schema.drop;
    const url = new URL(schema.url);
    proxy = await startTcpProxy(url.hostname, Number(url.port || 5432));
    url.hostname = '127.0.0.1';
    url.port = String(proxy.port);
    // A short lease: the outage below outlasts it, which must not stop a daemon that is the store's only one.
    daemon = await startDaemon(join(dir.path, 'data'), 'health: { missedHeartbeats: 3 }\ncluster: { leaseS: 4, renewS: 1 }\n', undefined, {
      XCARE_DATABASE_URL: url.toString(),
    });
    const ids = ['gw-o1', 'gw-o2', 'gw-o3'];
    const tokens = await provision(daemon, ids.map((id) => ({ id, type: 'gateway', customer: 'acme' })));
    for (const [id, token] of tokens) {
      const d = new SimDevice({ id, token, url: `mqtt://127.0.0.1:${daemon.mqttPort}`, intervalS: 1, reconnect: { minMs: 200, maxMs: 2000 } });
      d.start();
      devices.push(d);
    }
    const d = daemon;
    await eventually(async () => (await api<{ devices: { state: string }[] }>(d, '/api/v1/devices')).devices.filter((x) => x.state === 'online').length === 3, 30_000, 'all online');

    await proxy.cut();
    devices[0]!.kill();
    const down = await eventually(async () => {
      const r = await readyz(d);
      return r.status === 503 ? r : undefined;
    }, 30_000, '/readyz 503');
    expect(down.body.reasons?.join('\n')).toMatch(/store unreachable/);
    // Longer than the lease (4 s) and than the gateway's silence deadline (3 x 1 s).
    await new Promise((r) => setTimeout(r, 10_000));
    expect(d.proc.exitCode).toBeNull();

    await proxy.restore();
    await eventually(async () => (await readyz(d)).status === 200, 60_000, '/readyz 200 again');
    const lost = await eventually(async () => {
      const list = (await allTickets(d)).filter((t) => t.subject === 'gw-o1');
      return list.length > 0 ? list : undefined;
    }, 30_000, 'gw-o1 ticket');
    await new Promise((r) => setTimeout(r, 3000));
    const all = await allTickets(d);
    expect(all.map((t) => `${t.kind}:${t.subject}`)).toEqual(['gateway_loss:gw-o1']);
    expect(lost).toHaveLength(1);
    expect(d.proc.exitCode).toBeNull();
    expect(d.output()).toMatch(/store lease not renewed: store unreachable; carrying on/);
    expect(d.output()).not.toMatch(/store lease lost|exit 3/);
  }, 180_000);
});
