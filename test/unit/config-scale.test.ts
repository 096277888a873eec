import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
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

  it('a PostgreSQL store is refused with what is and is not ported, not half-run on SQLite', () => {
    expect(error({ store: { url: 'postgres://u:p@127.0.0.1/x' } })).toMatch(/store\.url: PostgreSQL is not supported yet.*only the schema, the cluster lease, customers, API tokens, console sessions and the audit log are ported; devices, device state, tickets, outbox, patches and rollouts are SQLite-only/);
  });

  it('xcared with XCARE_DATABASE_URL exits 2 before touching anything', () => {
    const r = spawnSync(process.execPath, [join(ROOT, 'bin/xcared.js'), '--check'], {
      env: { ...process.env, XCARE_DATABASE_URL: 'postgres://xcare:xcare@127.0.0.1:5432/none', XCARE_DATA_DIR: '/nonexistent/never-created' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('store.url: PostgreSQL is not supported yet');
  });
});
