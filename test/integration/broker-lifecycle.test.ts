import { describe, it, expect } from 'vitest';
import { connectDevice, tryConnect, closed, endAll, startFleetBroker } from '../helpers/mqtt-client.js';

const gw1 = { id: 'gw-001', token: 'token-gw-001' };

describe('FleetBroker lifecycle, revocation and metrics', () => {
  it('disconnectDevice closes the live connection; once revoked the device is refused', async () => {
    const fx = await startFleetBroker({ [gw1.id]: gw1.token });
    try {
      const client = await connectDevice(fx.url, gw1);
      const gone = closed(client);
      fx.devices.delete(gw1.id); // the registry marks it revoked...
      fx.broker.disconnectDevice(gw1.id); // ...and the daemon closes its live link
      await gone;
      expect(fx.broker.isConnected(gw1.id)).toBe(false);
      expect(fx.disconnected).toEqual([gw1.id]);
      expect(await tryConnect(fx.url, gw1)).toMatchObject({ ok: false, code: 5 });
      await endAll(client);
    } finally {
      await fx.stop();
    }
  });

  it('disconnectDevice of a device that is not connected does nothing', async () => {
    const fx = await startFleetBroker({ [gw1.id]: gw1.token });
    try {
      expect(() => fx.broker.disconnectDevice('gw-404')).not.toThrow();
    } finally {
      await fx.stop();
    }
  });

  it('exports the broker families on the given registry, the gauge computed at scrape time', async () => {
    const fx = await startFleetBroker({ [gw1.id]: gw1.token, 'gw-002': 't2' });
    try {
      const a = await connectDevice(fx.url, gw1);
      const b = await connectDevice(fx.url, { id: 'gw-002', token: 't2' });
      await tryConnect(fx.url, { id: 'gw-002', token: 'bad' });
      const text = await fx.metrics.metrics();
      expect(text).toMatch(/^fleet_mqtt_clients_connected 2$/m);
      expect(text).toMatch(/^fleet_mqtt_auth_failures_total 1$/m);
      expect(text).toMatch(/^fleet_mqtt_acl_denied_total 0$/m);
      expect(text).toMatch(/^fleet_mqtt_oversize_packets_total 0$/m);
      await endAll(a, b);
      await expect.poll(() => fx.broker.connectedCount()).toBe(0);
      expect(await fx.metrics.metrics()).toMatch(/^fleet_mqtt_clients_connected 0$/m);
    } finally {
      await fx.stop();
    }
  });

  it('a throwing message handler does not break delivery to the other handlers or the broker', async () => {
    const fx = await startFleetBroker({ [gw1.id]: gw1.token });
    try {
      fx.broker.onDeviceMessage(() => {
        throw new Error('handler bug');
      });
      const client = await connectDevice(fx.url, gw1);
      await client.publishAsync('fleet/v1/gw-001/heartbeat', '1', { qos: 1 });
      await client.publishAsync('fleet/v1/gw-001/heartbeat', '2', { qos: 1 });
      await fx.waitMessage((m) => m.payload === '2');
      expect(client.connected).toBe(true);
      await endAll(client);
    } finally {
      await fx.stop();
    }
  });

  it('stop() closes connected clients, frees the port, is idempotent, and refuses publishToDevice after', async () => {
    const fx = await startFleetBroker({ [gw1.id]: gw1.token });
    const client = await connectDevice(fx.url, gw1);
    const gone = closed(client);
    await Promise.all([fx.stop(), fx.stop()]);
    await gone;
    await fx.stop();
    expect(await tryConnect(fx.url, gw1)).toMatchObject({ ok: false });
    await expect(fx.broker.publishToDevice(gw1.id, '{}')).rejects.toThrow(/not running/);
    await endAll(client);
  });

  it('start() rejects when the port is taken, and leaves nothing listening', async () => {
    const first = await startFleetBroker({});
    const port = first.broker.ports().mqtt!;
    try {
      await expect(startFleetBroker({}, { port })).rejects.toThrow(/EADDRINUSE/);
    } finally {
      await first.stop();
    }
  });

  it('does not report Last Wills as device state when the broker itself shuts down', async () => {
    const fx = await startFleetBroker({ [gw1.id]: gw1.token });
    const client = await connectDevice(fx.url, {
      ...gw1,
      will: { topic: 'fleet/v1/gw-001/state', payload: Buffer.from('{"online":false}'), qos: 1, retain: true },
    });
    await fx.stop();
    expect(fx.messages.filter((m) => m.kind === 'state')).toEqual([]);
    await endAll(client);
  });
});
