import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { join } from 'node:path';
import { openDatabase, type Database } from '../../src/db/database.js';
import { DeviceRegistry } from '../../src/registry/device-registry.js';
import { parseDeviceInput, parseDeviceCsv } from '../../src/registry/device-input.js';
import { generateToken, hashTokenScrypt, verifyTokenScrypt } from '../../src/registry/device-token.js';
import { ManualClock } from '../../src/clock.js';
import { fiscalYearEnd } from '../../src/subscriptions/fiscal-year.js';
import { silentLogger } from '../../src/log.js';
import { tempDir } from '../helpers/temp-dir.js';


describe('device tokens', () => {
  it('are >= 128 bits of randomness; legacy scrypt hashes (rows stored before issue 12) still verify', async () => {
    const token = generateToken();
    expect(Buffer.from(token, 'base64url').length).toBeGreaterThanOrEqual(16);
    const a = await hashTokenScrypt(token);
    const b = await hashTokenScrypt(token);
    expect(a).toMatch(/^scrypt\$\d+\$\d+\$\d+\$/);
    expect(a).not.toContain(token);
    expect(a).not.toEqual(b); // salted
    expect(await verifyTokenScrypt(token, a)).toBe(true);
    expect(await verifyTokenScrypt(`${token}x`, a)).toBe(false);
    expect(await verifyTokenScrypt('', a)).toBe(false);
    expect(await verifyTokenScrypt(token, 'garbage')).toBe(false);
  });
});

describe('device input', () => {
  it.each([
    [{ id: '-bad', type: 'gateway', customer: 'c', installer: 'i' }, 'id'],
    [{ id: 'a'.repeat(65), type: 'gateway', customer: 'c', installer: 'i' }, 'id'],
    [{ id: 'gw1', type: 'router', customer: 'c', installer: 'i' }, 'type'],
    [{ id: 'gw1', type: 'gateway', customer: 'c', installer: 'i', tier: 'gold' }, 'tier'],
    [{ id: 'gw1', type: 'gateway', customer: 'c', installer: 'i', since: '2026-02-30' }, 'since'],
    [{ id: 'gw1', type: 'gateway', parent: 'gw0', customer: 'c', installer: 'i' }, 'parent'],
    [{ id: 'gw1', type: 'gateway', installer: 'i' }, 'customer'],
    [{ id: 'gw1', type: 'gateway', customer: 'c', installer: 'i', extra: 1 }, 'extra'],
  ])('refuses %j naming %s', (raw, key) => {
    expect(() => parseDeviceInput(raw)).toThrow(new RegExp(key));
  });

  it('parses CSV with quotes, tags and blank lines, naming the bad line', () => {
    const rows = parseDeviceCsv('id,type,parent,customer,installer,tier,since,tags\ngw-1,gateway,,"ACME, Inc",minnovation,xcare,2026-08-01,roof;north\n\nsen-1,sensor,gw-1,"ACME, Inc",minnovation,none,,\n');
    expect(rows.map((r) => r.id)).toEqual(['gw-1', 'sen-1']);
    expect(rows[0]!.customer).toBe('ACME, Inc');
    expect(rows[0]!.tags).toEqual(['roof', 'north']);
    expect(() => parseDeviceCsv('id,type,customer,installer\nok,gateway,c,i\nbad!,gateway,c,i\n')).toThrow(/line 3/);
    expect(() => parseDeviceCsv('id,type\n')).toThrow(/customer/);
  });
});

describe('DeviceRegistry', () => {
  let dir: ReturnType<typeof tempDir>;
  let db: Database;
  let clock: ManualClock;
  let registry: DeviceRegistry;
  const make = () =>
    new DeviceRegistry({ db, clock, log: silentLogger(), fiscalYearEnd, authCacheSize: 10 });

  beforeEach(() => {
    dir = tempDir();
    db = openDatabase(join(dir.path, 'x.db'));
    clock = new ManualClock('2026-11-26T12:00:00Z');
    registry = make();
    registry.start();
  });
  afterEach(() => {
    db.close();
    dir.cleanup();
  });

  it('provisions, indexes and authenticates; the token is never stored', async () => {
    const [gw] = await registry.add([parseDeviceInput({ id: 'gw-1', type: 'gateway', customer: 'acme', installer: 'minnovation', tier: 'xcare' })]);
    await registry.add([parseDeviceInput({ id: 'sen-1', type: 'sensor', parent: 'gw-1', customer: 'acme', installer: 'minnovation' })]);
    expect(gw!.device.subscriptionStart).toBe('2026-11-26');
    expect(gw!.device.subscriptionEnd).toBe('2027-06-30');
    expect(registry.childrenOf('gw-1').map((d) => d.id)).toEqual(['sen-1']);
    expect(registry.gatewaysOf('acme').map((d) => d.id)).toEqual(['gw-1']);
    expect(await registry.authenticate('gw-1', gw!.token)).toBe(true);
    expect(await registry.authenticate('gw-1', gw!.token)).toBe(true); // cached path
    expect(await registry.authenticate('gw-1', 'wrong')).toBe(false);
    expect(await registry.authenticate('nobody', gw!.token)).toBe(false);
    const dump = JSON.stringify(db.prepare('SELECT * FROM devices').all());
    expect(dump).not.toContain(gw!.token);
  });

  it('refuses duplicates and unknown or non-gateway parents, storing nothing', async () => {
    await registry.add([parseDeviceInput({ id: 'gw-1', type: 'gateway', customer: 'a', installer: 'i' })]);
    await expect(registry.add([parseDeviceInput({ id: 'gw-1', type: 'gateway', customer: 'a', installer: 'i' })])).rejects.toThrow(/already exists/);
    await expect(
      registry.add([
        parseDeviceInput({ id: 'ok-1', type: 'gateway', customer: 'a', installer: 'i' }),
        parseDeviceInput({ id: 's-1', type: 'sensor', parent: 'nope', customer: 'a', installer: 'i' }),
      ]),
    ).rejects.toThrow(/not registered/);
    expect(registry.get('ok-1')).toBeUndefined();
    expect((db.prepare('SELECT COUNT(*) n FROM devices').get() as { n: number }).n).toBe(1);
  });

  it('a revoked device is refused even with a cached token, and the index survives a restart', async () => {
    const [gw] = await registry.add([parseDeviceInput({ id: 'gw-1', type: 'gateway', customer: 'a', installer: 'i' })]);
    expect(await registry.authenticate('gw-1', gw!.token)).toBe(true);
    const seen: string[] = [];
    registry.onChange((d) => seen.push(`${d.id}:${d.revokedAt !== null}`));
    registry.revoke('gw-1');
    expect(seen).toEqual(['gw-1:true']);
    expect(await registry.authenticate('gw-1', gw!.token)).toBe(false);
    expect(registry.gatewayCount()).toBe(0);
    const again = make();
    again.start();
    expect(again.get('gw-1')!.revokedAt).not.toBeNull();
    expect(await again.authenticate('gw-1', gw!.token)).toBe(false);
  });
});
