import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { startDaemon, ctl, type Daemon } from '../helpers/processes.js';
import { tempDir } from '../helpers/temp-dir.js';

/** `xcarectl token create|list|revoke` and `xcarectl audit` against the real daemon (PROTOCOL.md "Command line"). */
describe('xcarectl token and audit', () => {
  const dir = tempDir('xcare-e2e-access-');
  let daemon: Daemon;
  beforeAll(async () => {
    daemon = await startDaemon(join(dir.path, 'daemon'));
  }, 60_000);
  afterAll(async () => {
    await daemon?.stop();
    dir.cleanup();
  });

  it('creates a token shown once, lists it without the secret, acts with it, revokes it, and the audit shows all of it', async () => {
    const created = await ctl(daemon, ['token', 'create', '--role', 'operator', '--name', 'olga']);
    expect(created.code, created.stderr).toBe(0);
    const secret = /token: (xct_\S+)/.exec(created.stdout)![1]!;
    const listed = await ctl(daemon, ['token', 'list']);
    expect(listed.stdout).toMatch(/olga\s+operator/);
    expect(listed.stdout).not.toContain(secret);

    const asOlga = { url: daemon.url, adminToken: secret };
    const opened = await ctl(asOlga, ['ticket', 'open', '--subject', 'fleet', '--classification', 'consultative', '--summary', 'asks about renewals', '--json']);
    expect(opened.code, opened.stderr).toBe(0);
    const refused = await ctl(asOlga, ['device', 'add', 'gw-x', '--type', 'gateway', '--customer', 'c', '--installer', 'minnovation', '--tier', 'xcare']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/olga \(role operator\) may not POST \/api\/v1\/devices: needs role admin \(HTTP 403\)/);

    expect((await ctl(daemon, ['token', 'revoke', 'olga'])).stdout).toContain('token olga revoked');
    const after = await ctl(asOlga, ['tickets']);
    expect(after.code).toBe(1);
    expect(after.stderr).toContain('HTTP 401');

    const text = await ctl(daemon, ['audit']);
    expect(text.stdout).toMatch(/admin\s+admin\s+token\.revoke\s+token:olga/);
    expect(text.stdout).toMatch(/olga\s+operator\s+denied/);
    expect(text.stdout).toMatch(/olga\s+operator\s+ticket\.open\s+ticket:1/);
    const json = JSON.parse((await ctl(daemon, ['audit', '--json', '--actor', 'olga'])).stdout) as { entries: { action: string; remote: string }[] };
    expect(json.entries.map((e) => e.action)).toEqual(['denied', 'ticket.open']);
    expect(json.entries.every((e) => e.remote === '127.0.0.1')).toBe(true);
    expect((await ctl(daemon, ['token', 'create', '--role', 'root', '--name', 'x'])).code).toBe(2);
  }, 90_000);
});
