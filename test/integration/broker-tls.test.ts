import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as netConnect } from 'node:net';
import { once } from 'node:events';
import { Registry } from 'prom-client';
import { FleetBroker } from '../../broker/fleet-broker.js';
import { configSchema } from '../../src/config/schema.js';
import { silentLogger } from '../../src/log.js';
import { tempDir } from '../helpers/temp-dir.js';
import { selfSignedCert, type SelfSignedCert } from '../helpers/tls-cert.js';
import { toolsMissing } from '../helpers/system-tools.js';
import { connectDevice, tryConnect, endAll, startFleetBroker } from '../helpers/mqtt-client.js';

const device = { id: 'gw-001', token: 'token-gw-001' };

function brokerWith(tls: Record<string, string | number | null>): FleetBroker {
  // The config schema already refuses a lone cert or key; build past it so the broker's own check is tested too.
  const config = configSchema.parse({ mqtt: { host: '127.0.0.1', port: 0, tls: { port: 0 } } });
  const mqtt = { ...config.mqtt, tls: { ...config.mqtt.tls, ...tls } } as typeof config.mqtt;
  return new FleetBroker({ config: mqtt, log: silentLogger(), metrics: new Registry(), authenticate: async () => true });
}

// The certificates are made with the openssl CLI: without it these skip loudly (never under CI=true).
describe.skipIf(toolsMissing(['openssl'], 'openssl').length > 0)('FleetBroker TLS listener', () => {
  const dir = tempDir('xcare-broker-tls-');
  let cert: SelfSignedCert;
  beforeAll(async () => {
    cert = await selfSignedCert(dir.path);
  });
  afterAll(() => dir.cleanup());

  it('serves mqtts with the configured certificate; the plain listener is off', async () => {
    const fx = await startFleetBroker({ [device.id]: device.token }, { tls: { cert: cert.certPath, key: cert.keyPath } });
    try {
      const ports = fx.broker.ports();
      expect(ports.mqtt).toBeUndefined();
      expect(ports.mqtts).toBeGreaterThan(0);
      const client = await connectDevice(`mqtts://127.0.0.1:${ports.mqtts}`, { ...device, ca: cert.cert });
      await client.publishAsync('fleet/v1/gw-001/heartbeat', '{"tls":true}', { qos: 1 });
      await fx.waitMessage((m) => m.payload === '{"tls":true}');
      await endAll(client);
    } finally {
      await fx.stop();
    }
  });

  it('applies the same auth over TLS: a wrong token gets CONNACK 5', async () => {
    const fx = await startFleetBroker({ [device.id]: device.token }, { tls: { cert: cert.certPath, key: cert.keyPath } });
    try {
      const outcome = await tryConnect(`mqtts://127.0.0.1:${fx.broker.ports().mqtts}`, { ...device, token: 'wrong', ca: cert.cert });
      expect(outcome).toMatchObject({ ok: false, code: 5 });
    } finally {
      await fx.stop();
    }
  });

  it('a client that does not trust the certificate cannot connect', async () => {
    const fx = await startFleetBroker({ [device.id]: device.token }, { tls: { cert: cert.certPath, key: cert.keyPath } });
    try {
      const outcome = await tryConnect(`mqtts://127.0.0.1:${fx.broker.ports().mqtts}`, device, { rejectUnauthorized: true });
      expect(outcome.ok).toBe(false);
      expect(fx.broker.isConnected(device.id)).toBe(false);
    } finally {
      await fx.stop();
    }
  });

  it('keeps the plain listener next to TLS when mqtt.plainWithTls is set', async () => {
    const fx = await startFleetBroker({ [device.id]: device.token }, { plainWithTls: true, tls: { cert: cert.certPath, key: cert.keyPath } });
    try {
      const ports = fx.broker.ports();
      expect(ports.mqtt).toBeGreaterThan(0);
      expect(ports.mqtts).toBeGreaterThan(0);
      const plain = await connectDevice(`mqtt://127.0.0.1:${ports.mqtt}`, device);
      await endAll(plain);
    } finally {
      await fx.stop();
    }
  });

  it('stop() does not wait for a TCP client that never completes the TLS handshake', async () => {
    const fx = await startFleetBroker({ [device.id]: device.token }, { tls: { cert: cert.certPath, key: cert.keyPath } });
    const idle = netConnect(fx.broker.ports().mqtts!, '127.0.0.1');
    idle.on('error', () => {});
    await once(idle, 'connect');
    const started = performance.now();
    await fx.stop();
    expect(performance.now() - started).toBeLessThan(1000);
    idle.destroy();
  });

  it('fails to start with an error naming mqtt.tls.cert when the certificate file is missing', async () => {
    const broker = brokerWith({ cert: join(dir.path, 'missing.pem'), key: cert.keyPath });
    await expect(broker.start()).rejects.toThrow(/^mqtt\.tls\.cert: cannot read .*missing\.pem: ENOENT/);
    await broker.stop();
  });

  it('fails to start with an error naming mqtt.tls.key when the key file is missing', async () => {
    const broker = brokerWith({ cert: cert.certPath, key: join(dir.path, 'nokey.pem') });
    await expect(broker.start()).rejects.toThrow(/^mqtt\.tls\.key: cannot read/);
  });

  it('fails to start naming mqtt.tls.cert/mqtt.tls.key when the files are not a usable pair', async () => {
    const garbage = join(dir.path, 'garbage.pem');
    writeFileSync(garbage, 'not a pem file\n');
    const broker = brokerWith({ cert: cert.certPath, key: garbage });
    await expect(broker.start()).rejects.toThrow(/^mqtt\.tls\.cert\/mqtt\.tls\.key: not a usable certificate and private key/);
  });

  it('fails to start when only one of cert and key is set', async () => {
    expect(() => configSchema.parse({ mqtt: { tls: { cert: cert.certPath } } })).toThrow(/mqtt\.tls\.cert and mqtt\.tls\.key go together/);
    await expect(brokerWith({ cert: cert.certPath }).start()).rejects.toThrow(/^mqtt\.tls\.key: required when mqtt\.tls\.cert is set/);
    await expect(brokerWith({ key: cert.keyPath }).start()).rejects.toThrow(/^mqtt\.tls\.cert: required when mqtt\.tls\.key is set/);
  });
});
