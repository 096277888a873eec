import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { connectDevice, tryConnect, endAll, closed, startFleetBroker, type BrokerFixture } from '../helpers/mqtt-client.js';

/** PROTOCOL.md "CONNECT": clientId == username == device id, token checked; refusals are CONNACK 5. */
describe('FleetBroker CONNECT', () => {
  let fx: BrokerFixture;
  beforeAll(async () => {
    fx = await startFleetBroker({ 'gw-001': 'token-gw-001', 'gw-002': 'token-gw-002', 'sen-9': 'token-sen-9' });
  });
  afterAll(async () => {
    await fx.stop();
  });

  it('accepts a device with its own id as clientId and username and the right token', async () => {
    const client = await connectDevice(fx.url, { id: 'gw-001', token: 'token-gw-001' });
    expect(fx.broker.isConnected('gw-001')).toBe(true);
    expect(fx.broker.connectedCount()).toBe(1);
    expect(fx.connected).toContain('gw-001');
    expect(await fx.metric('fleet_mqtt_clients_connected')).toBe(1);
    await client.endAsync();
    await expect.poll(() => fx.broker.isConnected('gw-001')).toBe(false);
    expect(fx.disconnected).toContain('gw-001');
  });

  it('refuses a wrong token with CONNACK 5', async () => {
    const outcome = await tryConnect(fx.url, { id: 'gw-001', token: 'wrong' });
    expect(outcome).toMatchObject({ ok: false, code: 5 });
  });

  it('refuses an unknown device with CONNACK 5', async () => {
    const outcome = await tryConnect(fx.url, { id: 'gw-404', token: 'token-gw-001' });
    expect(outcome).toMatchObject({ ok: false, code: 5 });
  });

  it('refuses a revoked device (authenticate false) with CONNACK 5', async () => {
    fx.devices.delete('sen-9');
    const outcome = await tryConnect(fx.url, { id: 'sen-9', token: 'token-sen-9' });
    expect(outcome).toMatchObject({ ok: false, code: 5 });
  });

  it('refuses clientId spoofing (clientId != username) with CONNACK 5, even with a valid token', async () => {
    const outcome = await tryConnect(fx.url, { id: 'gw-001', token: 'token-gw-001', clientId: 'gw-002' });
    expect(outcome).toMatchObject({ ok: false, code: 5 });
    expect(fx.broker.isConnected('gw-002')).toBe(false);
  });

  it('refuses an empty clientId (broker-generated id) with CONNACK 5', async () => {
    const outcome = await tryConnect(fx.url, { id: 'gw-001', token: 'token-gw-001', clientId: '' });
    expect(outcome).toMatchObject({ ok: false, code: 5 });
  });

  it('refuses a username that is not a valid device id with CONNACK 5', async () => {
    const outcome = await tryConnect(fx.url, { id: 'bad/id#', token: 'x' });
    expect(outcome).toMatchObject({ ok: false, code: 5 });
  });

  it('refuses a CONNECT without password with CONNACK 5', async () => {
    const outcome = await tryConnect(fx.url, { id: 'gw-001', token: '' });
    expect(outcome).toMatchObject({ ok: false, code: 5 });
  });

  it('refuses an MQTT 5 CONNECT with CONNACK 1 (unacceptable protocol version)', async () => {
    const outcome = await tryConnect(fx.url, { id: 'gw-001', token: 'token-gw-001', protocolVersion: 5 });
    expect(outcome).toMatchObject({ ok: false, code: 1 });
  });

  it('counts refusals in fleet_mqtt_auth_failures_total and reports them as security events', async () => {
    const before = await fx.metric('fleet_mqtt_auth_failures_total');
    const eventsBefore = fx.securityEvents.length;
    await tryConnect(fx.url, { id: 'gw-002', token: 'nope' });
    expect(await fx.metric('fleet_mqtt_auth_failures_total')).toBe(before + 1);
    expect(fx.securityEvents.slice(eventsBefore)).toEqual([{ kind: 'auth_failure', deviceId: 'gw-002', remote: expect.stringContaining('127.0.0.1') }]);
  });

  it('refuses a Last Will on another device\'s topic with CONNACK 5 and counts an ACL denial', async () => {
    const before = await fx.metric('fleet_mqtt_acl_denied_total');
    const outcome = await tryConnect(fx.url, {
      id: 'gw-001',
      token: 'token-gw-001',
      will: { topic: 'fleet/v1/gw-002/state', payload: Buffer.from('{"online":false}'), qos: 1, retain: true },
    });
    expect(outcome).toMatchObject({ ok: false, code: 5 });
    expect(await fx.metric('fleet_mqtt_acl_denied_total')).toBe(before + 1);
    expect(fx.securityEvents.at(-1)).toMatchObject({ kind: 'acl_violation', deviceId: 'gw-001', topic: 'fleet/v1/gw-002/state' });
  });

  it('refuses a Last Will on the device\'s own heartbeat topic (only state is allowed)', async () => {
    const outcome = await tryConnect(fx.url, {
      id: 'gw-001',
      token: 'token-gw-001',
      will: { topic: 'fleet/v1/gw-001/heartbeat', payload: Buffer.from('{}'), qos: 1, retain: false },
    });
    expect(outcome).toMatchObject({ ok: false, code: 5 });
  });

  it('accepts a Last Will on the own state topic and delivers it in-process when the link drops', async () => {
    const client = await connectDevice(fx.url, {
      id: 'gw-002',
      token: 'token-gw-002',
      will: { topic: 'fleet/v1/gw-002/state', payload: Buffer.from('{"online":false}'), qos: 1, retain: true },
    });
    const gone = closed(client);
    client.stream.destroy(); // no DISCONNECT: the broker must publish the will
    await gone;
    const will = await fx.waitMessage((m) => m.deviceId === 'gw-002' && m.kind === 'state');
    expect(will.payload).toBe('{"online":false}');
  });

  it('lets a second connection with the same clientId take over and closes the first', async () => {
    const first = await connectDevice(fx.url, { id: 'gw-001', token: 'token-gw-001' });
    const firstClosed = closed(first);
    const disconnectsBefore = fx.disconnected.filter((id) => id === 'gw-001').length;
    const second = await connectDevice(fx.url, { id: 'gw-001', token: 'token-gw-001' });
    await firstClosed;
    expect(second.connected).toBe(true);
    expect(fx.broker.isConnected('gw-001')).toBe(true);
    expect(fx.broker.connectedCount()).toBe(1);
    expect(fx.disconnected.filter((id) => id === 'gw-001').length).toBe(disconnectsBefore + 1);
    // The survivor still works end to end.
    await second.publishAsync('fleet/v1/gw-001/heartbeat', '{"takeover":true}', { qos: 1 });
    await fx.waitMessage((m) => m.payload === '{"takeover":true}');
    await endAll(first, second);
  });
});
