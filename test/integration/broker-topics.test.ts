import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { connectDevice, subscribeGrants, endAll, closed, startFleetBroker, type BrokerFixture } from '../helpers/mqtt-client.js';

/** PROTOCOL.md topic ACLs: a device publishes and subscribes only inside its own prefix. */
describe('FleetBroker topic ACLs', () => {
  let fx: BrokerFixture;
  const gw1 = { id: 'gw-001', token: 'token-gw-001' };
  const gw2 = { id: 'gw-002', token: 'token-gw-002' };
  beforeAll(async () => {
    fx = await startFleetBroker({ [gw1.id]: gw1.token, [gw2.id]: gw2.token });
  });
  afterAll(async () => {
    await fx.stop();
  });

  it('delivers own heartbeat, state and patch/status in-process with device id and kind', async () => {
    const client = await connectDevice(fx.url, gw1);
    await client.publishAsync('fleet/v1/gw-001/heartbeat', '{"seq":1}', { qos: 1 });
    await client.publishAsync('fleet/v1/gw-001/state', '{"online":true}', { qos: 1, retain: true });
    await client.publishAsync('fleet/v1/gw-001/patch/status', '{"state":"installed"}', { qos: 1 });
    expect(await fx.waitMessage((m) => m.kind === 'heartbeat' && m.deviceId === 'gw-001')).toEqual({ deviceId: 'gw-001', kind: 'heartbeat', payload: '{"seq":1}' });
    expect(await fx.waitMessage((m) => m.kind === 'state' && m.deviceId === 'gw-001')).toEqual({ deviceId: 'gw-001', kind: 'state', payload: '{"online":true}' });
    expect(await fx.waitMessage((m) => m.kind === 'patch/status')).toEqual({ deviceId: 'gw-001', kind: 'patch/status', payload: '{"state":"installed"}' });
    await endAll(client);
  });

  it('closes the connection of a device publishing to another device\'s topic; the handler never sees it', async () => {
    const aclBefore = await fx.metric('fleet_mqtt_acl_denied_total');
    const intruder = await connectDevice(fx.url, gw1);
    const gone = closed(intruder);
    intruder.publish('fleet/v1/gw-002/heartbeat', '{"forged":true}', { qos: 1 });
    await gone;
    // A legitimate message published after the forged one proves the forged one was not delivered late.
    const honest = await connectDevice(fx.url, gw2);
    await honest.publishAsync('fleet/v1/gw-002/heartbeat', '{"honest":true}', { qos: 1 });
    await fx.waitMessage((m) => m.payload === '{"honest":true}');
    expect(fx.messages.some((m) => m.payload.includes('forged'))).toBe(false);
    expect(await fx.metric('fleet_mqtt_acl_denied_total')).toBe(aclBefore + 1);
    expect(fx.securityEvents.at(-1)).toMatchObject({ kind: 'acl_violation', deviceId: 'gw-001', topic: 'fleet/v1/gw-002/heartbeat' });
    await endAll(intruder, honest);
  });

  it('closes the connection of a device publishing to its own cmd/ topic', async () => {
    const client = await connectDevice(fx.url, gw1);
    const gone = closed(client);
    client.publish('fleet/v1/gw-001/cmd/patch', '{"rolloutId":"forged"}', { qos: 1 });
    await gone;
    expect(fx.securityEvents.at(-1)).toMatchObject({ kind: 'acl_violation', topic: 'fleet/v1/gw-001/cmd/patch' });
    await endAll(client);
  });

  it('closes the connection of a device publishing to $SYS', async () => {
    const client = await connectDevice(fx.url, gw1);
    const gone = closed(client);
    client.publish('$SYS/broker/clients', 'x', { qos: 0 });
    await gone;
    await endAll(client);
  });

  it('closes the connection of a device publishing to an unknown own subtopic', async () => {
    const client = await connectDevice(fx.url, gw1);
    const gone = closed(client);
    client.publish('fleet/v1/gw-001/telemetry', 'x', { qos: 0 });
    await gone;
    expect(fx.messages.some((m) => m.payload === 'x')).toBe(false);
    await endAll(client);
  });

  it('answers SUBACK 0x80 to fleet/v1/+/cmd/# and $SYS/#, grants own cmd/#, and keeps the connection', async () => {
    const aclBefore = await fx.metric('fleet_mqtt_acl_denied_total');
    const client = await connectDevice(fx.url, gw1);
    expect(await subscribeGrants(client, ['fleet/v1/+/cmd/#'])).toEqual([128]);
    expect(await subscribeGrants(client, ['$SYS/#'])).toEqual([128]);
    expect(await subscribeGrants(client, ['#'])).toEqual([128]);
    expect(await subscribeGrants(client, ['fleet/v1/gw-002/cmd/#'])).toEqual([128]);
    expect(await subscribeGrants(client, ['fleet/v1/gw-001/cmd/#'])).toEqual([1]);
    expect(client.connected).toBe(true);
    expect(await fx.metric('fleet_mqtt_acl_denied_total')).toBe(aclBefore + 4);
    await endAll(client);
  });

  it('grants and refuses per filter within one SUBSCRIBE', async () => {
    const client = await connectDevice(fx.url, gw1);
    expect(await subscribeGrants(client, ['fleet/v1/gw-001/cmd/#', '$SYS/#'])).toEqual([1, 128]);
    await endAll(client);
  });

  it('publishToDevice delivers a QoS 1 message on the device\'s cmd/patch topic only', async () => {
    const target = await connectDevice(fx.url, gw1);
    const other = await connectDevice(fx.url, gw2);
    await subscribeGrants(target, ['fleet/v1/gw-001/cmd/#']);
    await subscribeGrants(other, ['fleet/v1/gw-002/cmd/#']);
    const otherGot: string[] = [];
    other.on('message', (topic) => otherGot.push(topic));
    const received = new Promise<{ topic: string; payload: string; qos: number }>((resolve) =>
      target.once('message', (topic, payload, packet) => resolve({ topic, payload: payload.toString(), qos: packet.qos })),
    );
    await fx.broker.publishToDevice('gw-001', '{"rolloutId":"r-1"}');
    expect(await received).toEqual({ topic: 'fleet/v1/gw-001/cmd/patch', payload: '{"rolloutId":"r-1"}', qos: 1 });
    // The daemon's own publish is not a device message.
    expect(fx.messages.some((m) => m.kind === 'cmd/patch')).toBe(false);
    // A round trip on `other` after the offer shows it received nothing.
    await other.publishAsync('fleet/v1/gw-002/heartbeat', '{"after":true}', { qos: 1 });
    await fx.waitMessage((m) => m.payload === '{"after":true}');
    expect(otherGot).toEqual([]);
    await endAll(target, other);
  });
});
