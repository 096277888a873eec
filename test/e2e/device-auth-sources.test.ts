import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { startDaemon, ctl, eventually, type Daemon } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp-dir.js';

/**
 * Issue 12, from outside: README "Limits": "failed device authentications per source address (CONNECT and
 * artifact Basic auth): burst 20, then 5/s; source refused unchecked". A real xcared, real HTTP and MQTT.
 */
describe('end to end: one failed-authentication allowance per source, over MQTT and the artifact route', () => {
  const dir = tempDir('xcare-e2e-auth-src-');
  let daemon: Daemon;
  let token: string;

  beforeAll(async () => {
    daemon = await startDaemon(join(dir.path, 'daemon'));
    const added = await ctl(daemon, ['device', 'add', 'gw-src', '--type', 'gateway', '--customer', 'acme', '--installer', 'minnovation', '--json']);
    expect(added.code, added.stderr).toBe(0);
    token = (JSON.parse(added.stdout) as { token: string }).token;
  });
  afterAll(async () => {
    await daemon?.stop();
    dir.cleanup();
  });

  it('wrong Basic auth on the artifact route spends the source allowance (burst 20): the source is throttled', async () => {
    const basic = (t: string) => `Basic ${Buffer.from(`gw-src:${t}`).toString('base64')}`;
    // 60 at once: far beyond the burst of 20 even if the allowance refills (5/s) while they run.
    const statuses = await Promise.all(
      Array.from({ length: 60 }, (_, i) => fetch(`${daemon.url}/patches/p-1/artifact`, { headers: { authorization: basic(`wrong-${i}`) } }).then((r) => r.status)),
    );
    expect(statuses.every((s) => s === 401)).toBe(true);
    // The registry logs once when a source spends its allowance (DeviceRegistry.logThrottled).
    await eventually(() => /too many failed device authentications from one source/.test(daemon.output()), 10_000, 'the source throttled');
    expect(daemon.output()).toMatch(/"remote":"(::ffff:)?127\.0\.0\.1".*too many failed device authentications|too many failed device authentications.*"remote":"(::ffff:)?127\.0\.0\.1"/);
    // The right token still works once the allowance refills: the device is throttled, not locked out.
    await eventually(async () => (await fetch(`${daemon.url}/patches/p-1/artifact`, { headers: { authorization: basic(token) } })).status === 403, 20_000, 'the right token back (403: no offer)');
  });
});
