import { describe, it, expect } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { openDatabase } from '../../src/db/database.js';
import { silentLogger } from '../../src/log.js';
import { validateConfig } from '../../src/config/load.js';
import { DeviceRegistry } from '../../src/registry/device-registry.js';
import { fiscalYearEnd } from '../../src/subscriptions/fiscal-year.js';
import { IntegrityRegistry } from '../../src/subscriptions/integrity-registry.js';
import { SubscriptionService } from '../../src/subscriptions/subscription-service.js';
import { ConflictError, NotFoundError, ValidationError } from '../../src/errors.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;

function setup(approvedInstallers = ['Acme']) {
  const clock = new ManualClock('2026-11-26T12:00:00Z');
  const db = openDatabase(':memory:');
  const log = silentLogger();
  const insert = db.prepare(
    `INSERT INTO devices (id, type, parent, customer, installer, tier, subscription_start, subscription_end, tags, token_hash, created_at)
     VALUES (?, 'gateway', NULL, 'acme', ?, ?, ?, ?, '[]', 'unused', 0)`,
  );
  insert.run('gw-1', 'acme', 'xcare', '2026-07-01', '2027-06-30');
  insert.run('gw-2', 'minnovation', 'none', null, null);
  db.prepare('INSERT INTO device_state (device_id, software_version, integrity) VALUES (?, ?, ?)').run('gw-1', '2.3.1', DIGEST);
  const registry = new DeviceRegistry({ db, clock, log, fiscalYearEnd, authCacheSize: 0 });
  registry.start();
  const integrity = new IntegrityRegistry({ db, clock });
  const changed: string[] = [];
  const config = validateConfig({ subscriptions: { approvedInstallers } }).subscriptions;
  const service = new SubscriptionService({
    db,
    clock,
    log,
    config,
    directory: registry,
    integrity,
    onDeviceChanged: (id) => {
      changed.push(id);
      registry.reload(id);
    },
  });
  return { clock, db, registry, integrity, service, changed };
}

describe('IntegrityRegistry: the digest expected per software version', () => {
  it('registers, normalises to lower case and answers expected()', () => {
    const { integrity } = setup();
    integrity.register('2.3.1', DIGEST.toUpperCase().replace('SHA256', 'sha256'), 'api');
    expect(integrity.expected('2.3.1')).toBe(DIGEST);
    expect(integrity.expected('9.9.9')).toBeUndefined();
  });
  it('registering the same digest again is idempotent', () => {
    const { integrity } = setup();
    integrity.register('2.3.1', DIGEST, 'api');
    expect(integrity.register('2.3.1', DIGEST, 'patch:gw-2.3.1').source).toBe('api');
  });
  it('a different digest for a registered version is a conflict', () => {
    const { integrity } = setup();
    integrity.register('2.3.1', DIGEST, 'api');
    expect(() => integrity.register('2.3.1', `sha256:${'b'.repeat(64)}`, 'api')).toThrow(ConflictError);
  });
  it('replace overwrites it explicitly', () => {
    const { integrity } = setup();
    integrity.register('2.3.1', DIGEST, 'api');
    integrity.register('2.3.1', `sha256:${'b'.repeat(64)}`, 'api', { replace: true });
    expect(integrity.expected('2.3.1')).toBe(`sha256:${'b'.repeat(64)}`);
  });
  it('refuses a digest without the sha256: prefix', () => {
    expect(() => setup().integrity.register('2.3.1', 'a'.repeat(64), 'api')).toThrow(ValidationError);
  });
  it('refuses a digest of the wrong length', () => {
    expect(() => setup().integrity.register('2.3.1', `sha256:${'a'.repeat(63)}`, 'api')).toThrow(ValidationError);
  });
  it('refuses a version with spaces', () => {
    expect(() => setup().integrity.register('2.3 1', DIGEST, 'api')).toThrow(ValidationError);
  });
  it('refuses an empty version', () => {
    expect(() => setup().integrity.register('', DIGEST, 'api')).toThrow(ValidationError);
  });
});

describe('SubscriptionService', () => {
  it('eligibilityOf joins the registry, the last heartbeat and the registered digests', () => {
    const { service, integrity } = setup();
    expect(service.eligibilityOf('gw-1')).toMatchObject({ eligible: false, reasons: ['no integrity digest registered for version 2.3.1'], state: 'active' });
    integrity.register('2.3.1', DIGEST, 'api');
    expect(service.eligibilityOf('gw-1')).toMatchObject({ eligible: true, reasons: [], tier: 'xcare' });
  });
  it('an approved contractor from config is matched case-insensitively', () => {
    const { service, integrity } = setup(['ACME']);
    integrity.register('2.3.1', DIGEST, 'api');
    expect(service.eligibilityOf('gw-1')!.eligible).toBe(true);
  });
  it('a contractor missing from the list makes the device ineligible', () => {
    const { service, integrity } = setup([]);
    integrity.register('2.3.1', DIGEST, 'api');
    expect(service.eligibilityOf('gw-1')!.reasons).toEqual(['installer "acme" is not on the approved list']);
  });
  it('eligibilityOf an unknown device is undefined', () => {
    expect(setup().service.eligibilityOf('nope')).toBeUndefined();
  });
  it('renew commits the new June 30, logs an event and tells the registry', () => {
    const { service, registry, changed, db } = setup();
    const r = service.renew('gw-1', { to: '2028-06-30' });
    expect(r.device.subscriptionEnd).toBe('2028-06-30');
    expect(registry.get('gw-1')!.subscriptionEnd).toBe('2028-06-30');
    expect(changed).toEqual(['gw-1']);
    expect(db.prepare(`SELECT kind FROM events WHERE device_id = 'gw-1'`).all()).toEqual([{ kind: 'renewed' }]);
  });
  it('renew of a tier none device with a tier starts a pro-rata subscription today', () => {
    const { service } = setup();
    const r = service.renew('gw-2', { tier: 'xcare_pro', to: '2027-06-30' });
    expect(r.device).toMatchObject({ tier: 'xcare_pro', subscriptionStart: '2026-11-26', subscriptionEnd: '2027-06-30' });
    expect(r.quote).toMatchObject({ daysCovered: 217, amount: 178.36 });
  });
  it('renew of an unknown device is not found and changes nothing', () => {
    const { service, changed } = setup();
    expect(() => service.renew('nope', { to: '2028-06-30' })).toThrow(NotFoundError);
    expect(changed).toEqual([]);
  });
  it('renew with an unknown tier is refused and changes nothing', () => {
    const { service, registry } = setup();
    expect(() => service.renew('gw-1', { tier: 'gold', to: '2028-06-30' })).toThrow(ValidationError);
    expect(registry.get('gw-1')!.subscriptionEnd).toBe('2027-06-30');
  });
  // Issue 10 fault 7: a retried `subscription renew` extended (and billed) the subscription twice.
  it('repeating a renewal to the same June 30 changes nothing and charges nothing', () => {
    const { service, registry, changed, db } = setup();
    expect(service.renew('gw-1', { to: '2028-06-30' })).toMatchObject({ renewed: true, charged: 120 });
    const again = service.renew('gw-1', { to: '2028-06-30' });
    expect(again).toMatchObject({ renewed: false, charged: 0, to: '2028-06-30' });
    expect(again.quote).toBeUndefined();
    expect(registry.get('gw-1')!.subscriptionEnd).toBe('2028-06-30');
    expect(changed).toEqual(['gw-1']);
    expect(db.prepare(`SELECT COUNT(*) AS n FROM events WHERE device_id = 'gw-1' AND kind = 'renewed'`).get()).toEqual({ n: 1 });
  });
  it('a renewal without `to` is refused, naming the June 30 it would reach, and changes nothing', () => {
    const { service, registry } = setup();
    expect(() => service.renew('gw-1', {})).toThrow(/to: required.*2028-06-30/);
    expect(registry.get('gw-1')!.subscriptionEnd).toBe('2027-06-30');
  });
  it('a renewal that would skip a year is a conflict naming the right June 30, and changes nothing', () => {
    const { service, registry } = setup();
    expect(() => service.renew('gw-1', { to: '2029-06-30' })).toThrow(ConflictError);
    expect(() => service.renew('gw-1', { to: '2029-06-30' })).toThrow(/runs to 2028-06-30, not 2029-06-30/);
    expect(registry.get('gw-1')!.subscriptionEnd).toBe('2027-06-30');
  });
  it('a `to` that is not a June 30 is refused', () => {
    expect(() => setup().service.renew('gw-1', { to: '2028-07-01' })).toThrow(ValidationError);
  });
  it('a repeat that asks for another tier for a year already renewed is a conflict', () => {
    const { service } = setup();
    service.renew('gw-1', { to: '2028-06-30' });
    expect(() => service.renew('gw-1', { to: '2028-06-30', tier: 'xcare_pro' })).toThrow(ConflictError);
  });
});
