import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { applyEnv, validateConfig } from '../../src/config/load.js';
import { ROOT } from '../helpers/processes.js';

/** Config of issue 13 (`mqtt.broker.*`, `store.*`, `cluster.*`): each bad value named by its key. */
describe('scale-out configuration', () => {
  const error = (raw: unknown) => {
    try {
      validateConfig(raw);
    } catch (err) {
      return (err as Error).message;
    }
    return '';
  };

  it('defaults: embedded broker, SQLite, no cluster', () => {
    const c = validateConfig({});
    expect(c.mqtt.broker.url).toBeNull();
    expect(c.store.url).toBeNull();
    expect(c.cluster).toMatchObject({ enabled: false, leaseS: 10, renewS: 2 });
    expect(c.cluster.leaseS).toBeLessThanOrEqual(10);
  });

  it('XCARE_MQTT_BROKER_URL and XCARE_DATABASE_URL override the file', () => {
    const raw = applyEnv({}, { XCARE_MQTT_BROKER_URL: 'mqtts://broker:8883', XCARE_DATABASE_URL: 'postgres://u:p@db/x' });
    expect(raw).toEqual({ mqtt: { broker: { url: 'mqtts://broker:8883' } }, store: { url: 'postgres://u:p@db/x' } });
  });

  it.each([
    ['mqtt.broker.url', { mqtt: { broker: { url: 'http://broker' } } }, 'mqtt.broker.url: expected mqtt://'],
    ['mqtt.broker.credentials', { mqtt: { broker: { url: 'mqtt://b', credentials: 'ldap' } } }, 'mqtt.broker.credentials'],
    ['mqtt.broker.sharedGroup', { mqtt: { broker: { sharedGroup: 'a/b' } } }, 'mqtt.broker.sharedGroup'],
    ['mqtt.broker.key without cert', { mqtt: { broker: { key: '/k.pem' } } }, 'mqtt.broker.cert: mqtt.broker.cert and mqtt.broker.key go together'],
    ['store.url scheme', { store: { url: 'mysql://x' } }, 'store.url: expected postgres://'],
    ['cluster without an external broker', { cluster: { enabled: true } }, 'cluster.enabled: needs mqtt.broker.url'],
    ['cluster.renewS above half the lease', { cluster: { leaseS: 4, renewS: 3 } }, 'cluster.renewS: must be at most half of cluster.leaseS'],
    ['cluster.leaseS not positive', { cluster: { leaseS: 0 } }, 'cluster.leaseS'],
    ['an unknown cluster key', { cluster: { leader: true } }, 'cluster.leader: unknown key'],
  ])('%s is refused, naming the key', (_what, raw, message) => {
    expect(error(raw)).toContain(message);
  });

  it('a PostgreSQL store.url is accepted', () => {
    expect(validateConfig({ store: { url: 'postgres://u:p@127.0.0.1/x' } }).store.url).toBe('postgres://u:p@127.0.0.1/x');
    expect(validateConfig({ store: { url: 'postgresql://db.internal:5432/xcare?sslmode=require' } }).store.url).toMatch(/^postgresql:/);
  });

  it('xcared with an unreachable XCARE_DATABASE_URL fails to start naming the store, never its password, and writes nothing into the data dir', () => {
    const dataDir = join(tmpdir(), `xcare-never-${process.pid}-${Date.now()}`);
    const r = spawnSync(process.execPath, [join(ROOT, 'bin/xcared.js')], {
      env: { ...process.env, XCARE_DATABASE_URL: 'postgres://xcare:secretpw@127.0.0.1:1/none', XCARE_DATA_DIR: dataDir },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/cannot open the PostgreSQL store postgres:\/\/xcare:\*\*\*@127\.0\.0\.1:1\/none: .*ECONNREFUSED/);
    expect(r.stdout + r.stderr).not.toContain('secretpw');
    // The data-dir lock may have made the directory; nothing is written into it.
    expect(existsSync(dataDir) ? readdirSync(dataDir) : []).toEqual([]);
  });

  it.each([
    ['in the query (libpq and pg read ?password=)', 'postgres://xcare@127.0.0.1:1/none?password=secretpw&sslmode=disable', /postgres:\/\/xcare@127\.0\.0\.1:1\/none\?password=\*\*\*&sslmode=disable/],
    ['with an @ in it (percent-encoded or not)', 'postgres://xcare:top@secretpw@127.0.0.1:1/none', /postgres:\/\/xcare:\*\*\*@127\.0\.0\.1:1\/none/],
  ])('the password %s is never printed either', (_what, url, shown) => {
    const dataDir = join(tmpdir(), `xcare-never-${process.pid}-${Date.now()}`);
    const r = spawnSync(process.execPath, [join(ROOT, 'bin/xcared.js')], { env: { ...process.env, XCARE_DATABASE_URL: url, XCARE_DATA_DIR: dataDir }, encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(shown);
    expect(r.stdout + r.stderr).not.toContain('secretpw');
  });
});
